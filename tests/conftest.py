"""Shared fixtures live in tests/fixtures/*.py; importing them here makes them visible to every test.

Fast and slow tests: tests/unit/ holds the pure ones (no root, no child process, no etcd, containerd or
network namespace; the whole folder runs in seconds: `./deploy/test.sh --fast`). Every test outside it is
marked `slow`, and also by what its fixtures start: `etcd`, `process` (a kyb-master or kubelet process),
`containerd` (containerd, runc, CNI, a registry), `root` (host routes or iptables), `lab` (network
namespaces), `vagrant` (the VM lab's VMs), so `-m containerd` or `-m "slow and not lab"` select them. A test
in tests/unit/ that asks for one of those fixtures is an error at collection.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures.containerd import (  # noqa: F401
    containerd,
    containerd_daemon,
    host_route_guard,
    pushed_test_images,
    registry,
    restartable_containerd,
    test_images,
)
from tests.fixtures.etcd import etcd, etcd_cluster  # noqa: F401
from tests.fixtures.kubelet import cluster_master, kubelets, node, restartable_node  # noqa: F401
from tests.fixtures.lab import ha_lab, lab  # noqa: F401
from tests.fixtures.master import client, master  # noqa: F401

UNIT_DIR = Path(__file__).resolve().parent / "unit"
# Fixture -> the marker of what it starts (fixtures that depend on these inherit them through fixturenames).
NEEDS = {
    "etcd": "etcd", "etcd_cluster": "etcd", "cluster": "etcd",
    "master": "process", "client": "process", "cluster_master": "process", "kubelets": "process",
    "containerd": "containerd", "containerd_daemon": "containerd", "restartable_containerd": "containerd",
    "registry": "containerd", "test_images": "containerd", "pushed_test_images": "containerd",
    "node": "containerd", "restartable_node": "containerd",
    "host_route_guard": "root",
    "lab": "lab", "ha_lab": "lab",
    "vm_lab": "vagrant",
    "fuzz_api": "process",
}

# Hypothesis' profiles, registered here because pytest reads this file before it parses
# --hypothesis-profile. "short" (the default) is what the suite runs: derandomized, so every run tries the
# same cases; "long" (`--hypothesis-profile=long`) tries ten times as many, new ones on every run, and prints
# the blob that replays a failure. max_examples is per test; tests/fuzz has five, so short is 2,100 cases and
# long 21,000. No example database: nothing is written into the repository.
_FUZZ_SETTINGS = dict(
    deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.large_base_example],
)
settings.register_profile("short", max_examples=420, derandomize=True, **_FUZZ_SETTINGS)
settings.register_profile("long", max_examples=4200, derandomize=False, **_FUZZ_SETTINGS)
settings.load_profile("short")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        needs = sorted({NEEDS[name] for name in getattr(item, "fixturenames", ()) if name in NEEDS})
        if UNIT_DIR in item.path.parents:
            if needs:
                raise pytest.UsageError(f"{item.nodeid}: tests/unit/ holds pure tests, but this one starts "
                                        f"{', '.join(needs)}: move it out of tests/unit/")
            continue
        item.add_marker(pytest.mark.slow)
        for marker in needs:
            item.add_marker(getattr(pytest.mark, marker))
