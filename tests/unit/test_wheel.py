"""The wheel installs only `kybernetes.*` import names, and pyproject's package list names every package.

Every import name the wheel installs must be unique to this project: a top-level `proto` (the import name of
Google's proto-plus) or `master` would break whatever else an environment holds. pyproject.toml maps the
repository's folders to `kybernetes.<folder>` and lists the packages by hand (setuptools cannot discover
remapped packages), so a new package folder that is not listed would silently miss the wheel.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"proto": "kybernetes.proto", "core": "kybernetes.core", "master": "kybernetes.master",
           "kubelet": "kybernetes.kubelet", "ctl": "kybernetes.ctl"}


def _tool() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_dir_maps_every_installed_folder_under_kybernetes():
    assert _tool()["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


def test_package_list_names_every_package_folder():
    found = {FOLDERS[folder] + "".join("." + part for part in init.parent.relative_to(ROOT / folder).parts)
             for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")
             if "__pycache__" not in init.parts}
    listed = set(_tool()["packages"])
    assert found - listed == set(), f"package folders missing from pyproject's [tool.setuptools] packages: " \
                                    f"{sorted(found - listed)}"
    assert listed - found == set(), f"listed packages with no folder: {sorted(listed - found)}"


def test_built_wheel_holds_only_kybernetes_import_names(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("kybernetes-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"kybernetes"}, sorted(top)
    for module in ("kybernetes/proto/objects_pb2.py", "kybernetes/core/api/errors.py",
                   "kybernetes/master/main.py", "kybernetes/kubelet/main.py", "kybernetes/ctl/client/client.py",
                   "kybernetes/ctl/cli/main.py", "kybernetes/proto/objects.proto"):
        assert module in names, f"{module} missing from the wheel"
    assert not any(name.startswith(("kybernetes/tests", "kybernetes/bench", "kybernetes/harness")) for name in names)
