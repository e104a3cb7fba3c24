"""The environment is exactly the lock, the two lock files agree, and pyproject's ranges fit the stubs.

`./deploy/test.sh` installs requirements-test.lock (made by `./deploy/lock.sh`); these tests fail when what is
installed is not what the lock pins, when the runtime lock and the test lock disagree on a version, or when
pyproject.toml would let someone install a grpcio or protobuf older than the committed stubs check for.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^ ;\\]+)\s*(?:;(?P<marker>[^\\]+))?")


def _pins(lock: Path) -> dict[str, tuple[Version, Marker | None]]:
    pins: dict[str, tuple[Version, Marker | None]] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            marker = Marker(match["marker"].strip()) if match["marker"] else None
            pins[canonicalize_name(match["name"])] = (Version(match["version"]), marker)
    return pins


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def test_installed_versions_are_exactly_the_test_lock():
    pins = _pins(ROOT / "requirements-test.lock")
    assert len(pins) > 10, "requirements-test.lock lists no pins"
    wrong = []
    for name, (version, marker) in sorted(pins.items()):
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed, lock pins {version}")
            continue
        if installed != version:
            wrong.append(f"{name}: {installed} installed, lock pins {version}")
    assert not wrong, "environment differs from requirements-test.lock (run ./deploy/test.sh): " + "; ".join(wrong)


def test_runtime_lock_is_the_test_lock_without_test_tools():
    runtime, test = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-test.lock")
    assert runtime, "requirements.lock lists no pins"
    differ = {name: (pin[0], test.get(name, (None,))[0]) for name, pin in runtime.items()
              if test.get(name, (None,))[0] != pin[0]}
    assert not differ, f"requirements.lock and requirements-test.lock disagree (run ./deploy/lock.sh): {differ}"
    assert "grpcio-tools" not in runtime and "pytest" not in runtime


def test_every_pin_is_inside_pyproject_ranges():
    pins = _pins(ROOT / "requirements-test.lock")
    outside = [f"{name} {pins[name][0]} not in {req.specifier}" for name, req in _requirements().items()
               if not req.specifier.contains(pins[name][0], prereleases=True)]
    assert not outside, f"lock pins outside pyproject.toml's ranges (run ./deploy/lock.sh): {outside}"


def _lower_bound(req: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def test_pyproject_lower_bounds_are_what_the_stubs_need():
    reqs = _requirements()
    grpc_stub = (ROOT / "proto" / "api_pb2_grpc.py").read_text()
    grpc_needed = Version(re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", grpc_stub)[1])
    pb_stub = (ROOT / "proto" / "objects_pb2.py").read_text()
    pb_needed = Version(re.search(r"# Protobuf Python Version: (\S+)", pb_stub)[1])

    grpc_floor = _lower_bound(reqs["grpcio"])
    assert grpc_floor is not None and grpc_floor >= grpc_needed, \
        f"pyproject.toml: grpcio must be >= {grpc_needed} (the stubs' GRPC_GENERATED_VERSION), has {reqs['grpcio']}"
    pb_floor = _lower_bound(reqs["protobuf"])
    assert pb_floor is not None and pb_floor >= pb_needed, \
        f"pyproject.toml: protobuf must be >= {pb_needed} (the stubs' gencode version), has {reqs['protobuf']}"
    # protobuf's runtime refuses gencode of another major version.
    assert not reqs["protobuf"].specifier.contains(Version(f"{pb_needed.major + 1}.0")), \
        f"pyproject.toml: protobuf must be < {pb_needed.major + 1} (the stubs' major), has {reqs['protobuf']}"
    tools = reqs["grpcio-tools"].specifier
    assert str(tools) == f"=={grpc_needed}", \
        f"pyproject.toml: grpcio-tools must be =={grpc_needed}, the version that made the stubs, has {tools}"
