"""Fixtures of the pure tests: the source tree laid out as the wheel installs it.

The repository keeps the short folder names (proto/, core/, master/, kubelet/, ctl/) and the wheel installs
them as `kybernetes.<folder>`; the editable install maps the names with an import hook, which static tools
(grimp, mypy) cannot follow. They read a copy laid out as the wheel lays it out instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = ("proto", "core", "master", "kubelet", "ctl")
NOT_INSTALLED = ("harness", "bench", "tests")


@pytest.fixture(scope="session")
def wheel_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding kybernetes/<folder> for each installed folder, the harness, bench and tests
    packages beside it, and pyproject.toml (whose [tool.mypy] the type checker reads)."""
    root = tmp_path_factory.mktemp("layout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in INSTALLED:
        shutil.copytree(ROOT / folder, root / "kybernetes" / folder, ignore=ignore)
    for folder in NOT_INSTALLED:
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def relative_to_repository(output: str, layout: Path) -> str:
    """Tool output with the copy's paths turned back into the repository's (kybernetes/master/x -> master/x)."""
    return output.replace(f"{layout}/kybernetes/", "").replace(f"{layout}/", "").replace("kybernetes/", "")
