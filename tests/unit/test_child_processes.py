"""Children of processes that run gRPC are started without Python between fork and exec.

A Python pre-exec hook (subprocess's preexec argument) makes CPython fork() instead of vfork(); a child
forked while gRPC's threads run in the parent can abort in gRPC's fork handlers before it execs
(tests/test_embedded_etcd.py starts etcd 30 times beside live gRPC traffic to prove the real path).
This test keeps the pattern out of the tree.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_no_pre_exec_hook_anywhere() -> None:
    """No process that runs gRPC may start a child with a Python pre-exec hook (CPython then forks, not vforks)."""
    needle = "preexec" + "_fn="
    offenders = [f"{path.relative_to(REPO_ROOT)}:{number}"
                 for folder in ("core", "master", "kubelet", "ctl", "proto", "tests", "harness", "bench", "deploy")
                 for path in sorted((REPO_ROOT / folder).rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert not offenders, f"{needle} used (start children with setpriv --pdeathsig instead): {offenders}"
