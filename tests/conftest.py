"""Shared fixtures live in tests/fixtures/*.py; importing them here makes them visible to every test."""

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
from tests.fixtures.lab import lab  # noqa: F401
from tests.fixtures.master import client, master  # noqa: F401
