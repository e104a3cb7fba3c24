"""The type checker passes: mypy, with the settings of pyproject.toml's [tool.mypy], on every installed
package, the harness and the benchmarks (the generated protobuf code is read through its .pyi stubs and
not checked itself; the tests are not type-checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.conftest import relative_to_repository

PACKAGES = ("kybernetes.proto", "kybernetes.core", "kybernetes.master", "kybernetes.kubelet", "kybernetes.ctl",
            "harness", "bench")


def test_mypy_passes(wheel_layout: Path):
    args = [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(wheel_layout / ".mypy_cache")]
    for package in PACKAGES:
        args += ["-p", package]
    result = subprocess.run(args, cwd=wheel_layout, capture_output=True, text=True, timeout=600)
    output = relative_to_repository(result.stdout + result.stderr, wheel_layout)
    assert result.returncode == 0, output
    assert "Success: no issues found" in output, output
