"""Full disruption without a cluster: the rule, its announcements, the flag, and one controller pass on fakes."""

from __future__ import annotations

from typing import Any

import click
import pytest

from kybernetes.core.api.objects import copy_of
from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.app import MasterConfig
from kybernetes.master.controllers.manager import ControllerSettings
from kybernetes.master.controllers.nodelifecycle.disruption import (
    FULL_DISRUPTION,
    FULL_DISRUPTION_ENDED,
    announcement,
    is_full_disruption,
)
from kybernetes.master.controllers.nodelifecycle.monitor import NodeLifecycleController
from kybernetes.master.main import main
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.proto import objects_pb2 as pb

UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.mark.parametrize(("not_ready", "total", "threshold", "expected"), [
    (0, 0, 0.55, False),   # no Nodes
    (1, 1, 0.55, False),   # one lost Node is an ordinary failure, even the only one
    (1, 2, 0.55, False),
    (2, 2, 0.55, True),
    (1, 3, 0.55, False),
    (2, 3, 0.55, True),    # 67 %
    (2, 4, 0.55, False),   # 50 %
    (3, 4, 0.55, True),
    (3, 5, 0.55, True),    # 60 %
    (11, 20, 0.55, True),  # exactly the threshold counts (Kubernetes compares with >=)
    (10, 20, 0.55, False),
    (2, 3, 0.7, False),    # a higher threshold
    (3, 3, 0.7, True),
    (2, 3, 1.0, False),    # 1: only when every Node is not Ready
    (3, 3, 1.0, True),
    (1, 1, 1.0, False),    # ... and still at least 2
])
def test_full_disruption_rule(not_ready: int, total: int, threshold: float, expected: bool):
    assert is_full_disruption(not_ready=not_ready, total=total, threshold=threshold) is expected


def test_announcements_name_the_counts_and_the_threshold():
    entered = announcement(disrupted=True, not_ready=2, total=3, threshold=0.55)
    assert (entered.type, entered.reason) == ("Warning", FULL_DISRUPTION)
    assert entered.message.startswith("2 of 3 Nodes not Ready (67%; threshold 55%): full disruption")
    ended = announcement(disrupted=False, not_ready=1, total=3, threshold=0.55)
    assert (ended.type, ended.reason) == ("Normal", FULL_DISRUPTION_ENDED)
    assert ended.message.startswith("1 of 3 Nodes not Ready (33%; threshold 55%): full disruption over")


def test_the_flag_reaches_the_controller_settings():
    params = main.make_context("kyb-master", ["--unhealthy-zone-threshold", "0.7"]).params
    assert params["unhealthy_zone_threshold"] == 0.7
    assert main.make_context("kyb-master", []).params["unhealthy_zone_threshold"] == 0.55
    assert MasterConfig().unhealthy_zone_threshold == 0.55
    assert ControllerSettings.from_config(MasterConfig(unhealthy_zone_threshold=0.7)).unhealthy_zone_threshold == 0.7
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(click.BadParameter):
            main.make_context("kyb-master", ["--unhealthy-zone-threshold", bad])


class _Client:
    """Takes every write and returns it, as the API would; remembers the spec updates."""

    def __init__(self) -> None:
        self.updates: list[pb.Node] = []

    async def update_status(self, obj: Any) -> Any:
        return copy_of(obj)

    async def update(self, obj: Any) -> Any:
        self.updates.append(copy_of(obj))
        return copy_of(obj)


class _Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def record_nowait(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        self.reasons.append(reason)


def _node(name: str, *, ready: str = "True", taint_added: int | None = None) -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    node.metadata.resource_version = "1"
    node.status.conditions.add(type="Ready", status=ready)
    if taint_added is not None:
        node.spec.taints.add(key=UNREACHABLE, effect="NoExecute").time_added.seconds = taint_added
    return node


def _controller(nodes: list[pb.Node], *, lost: list[str]) -> tuple[NodeLifecycleController, _Client, _Recorder]:
    client, recorder = _Client(), _Recorder()
    liveness = NodeLiveness(clock=lambda: 1000.0)
    for node in nodes:
        liveness.connected(node.metadata.name)
    for name in lost:
        liveness.disconnected(name)  # a broken stream: lost at once
    controller = NodeLifecycleController(client=client, informers=InformerFactory(client=client),  # type: ignore[arg-type]
                                         recorder=recorder, liveness=liveness,  # type: ignore[arg-type]
                                         node_monitor_grace_period=1.0, clock=lambda: 5000.0)
    controller.node_informer.replace(nodes, "1")
    controller.pod_informer.replace([], "1")
    return controller, client, recorder


def _added_taints(client: _Client) -> dict[str, int]:
    return {n.metadata.name: t.time_added.seconds for n in client.updates for t in n.spec.taints
            if t.effect == "NoExecute"}


async def test_a_pass_in_full_disruption_taints_nothing_and_takes_taints_off():
    nodes = [_node("n1", ready="Unknown", taint_added=4000), _node("n2"), _node("n3")]
    controller, client, recorder = _controller(nodes, lost=["n1", "n2"])
    await controller.monitor_once()
    assert controller.disrupted
    assert recorder.reasons.count(FULL_DISRUPTION) == 1
    assert {n.metadata.name for n in client.updates} == {"n1"}  # its taint taken off, nothing added
    assert _added_taints(client) == {}


async def test_the_same_pass_below_the_threshold_taints_the_lost_node():
    controller, client, recorder = _controller([_node("n1"), _node("n2"), _node("n3")], lost=["n1"])
    await controller.monitor_once()
    assert not controller.disrupted and FULL_DISRUPTION not in recorder.reasons
    assert _added_taints(client) == {"n1": 5000}


async def test_leaving_a_full_disruption_replaces_a_taint_that_outlived_it():
    """A taint whose removal failed during the disruption gets a fresh timeAdded once it is over."""
    nodes = [_node("n1", ready="Unknown", taint_added=4000), _node("n2"), _node("n3")]
    controller, client, recorder = _controller(nodes, lost=["n1"])
    controller.disrupted = True
    await controller.monitor_once()
    assert not controller.disrupted and recorder.reasons.count(FULL_DISRUPTION_ENDED) == 1
    assert _added_taints(client) == {"n1": 5000}
    client.updates.clear()
    fresh = [_node("n1", ready="Unknown", taint_added=5000), _node("n2"), _node("n3")]
    for node in fresh:
        node.metadata.resource_version = "2"  # as written by the first pass
    controller.node_informer.replace(fresh, "2")
    await controller.monitor_once()  # a taint from after the disruption stays as it is
    assert client.updates == []
