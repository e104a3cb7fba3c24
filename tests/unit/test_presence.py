"""Liveness with other masters' Nodes (master.nodelink.presence): a Node connected elsewhere is not silent; when
it leaves every other master its grace period starts then; a Node silent where it is connected counts as
silent here too."""

from __future__ import annotations

from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.master.nodelink.presence import PresenceView, _parse


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_node_elsewhere_is_alive_until_it_leaves_then_its_grace_runs_from_then():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    view = PresenceView(identity="me", clock=clock)
    liveness.elsewhere = view
    view.replace({"me": ({"mine"}, set()), "other": ({"n1", "n2"}, {"n2"})})
    clock.t += 50
    assert liveness.silent_for("n1") == 0.0
    assert liveness.silent_for("n2") == 50.0, "silent where it is connected: silent here too"
    clock.t += 10
    view.replace({"me": (set(), set())})  # the other master is gone (its lease expired)
    assert view.gone_at("n1") == clock.t
    clock.t += 3
    assert liveness.silent_for("n1") == 3.0
    # It reconnects here: connected and heard now.
    liveness.connected("n1")
    assert liveness.silent_for("n1") == 0.0


def test_a_stream_lost_here_is_alive_when_the_node_is_on_another_master():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    view = PresenceView(identity="me", clock=clock)
    liveness.elsewhere = view
    liveness.connected("n1")
    liveness.disconnected("n1")
    assert liveness.silent_for("n1") == float("inf")
    view.replace({"other": ({"n1"}, set())})
    assert liveness.silent_for("n1") == 0.0


def test_unreadable_entries_are_skipped():
    assert _parse({"a": b'{"connected": ["x"], "silent": []}', "b": b"not json"}) == {"a": ({"x"}, set())}
