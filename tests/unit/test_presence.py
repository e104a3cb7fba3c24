"""Liveness with other masters' Nodes (master.nodelink.presence): a Node connected elsewhere is not silent; when
it leaves every other master its grace period starts then; a Node silent where it is connected counts as
silent here too."""

from __future__ import annotations

from typing import Any

from kybernetes.master.nodelink.liveness import NodeLiveness, follow_ready_reports
from kybernetes.master.nodelink.presence import PresenceView, Published, _parse
from kybernetes.proto import objects_pb2 as pb


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
    view.replace({"me": Published({"mine"}, set()), "other": Published({"n1", "n2"}, {"n2"}, "10.0.0.2:6443")})
    clock.t += 50
    assert liveness.silent_for("n1") == 0.0
    assert liveness.silent_for("n2") == 50.0, "silent where it is connected: silent here too"
    clock.t += 10
    assert view.master_of("n1") == "10.0.0.2:6443", "logs and exec of n1's pods are relayed there"
    assert view.master_of("mine") is None
    view.replace({"me": Published(set(), set())})  # the other master is gone (its lease expired)
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
    view.replace({"other": Published({"n1"}, set())})
    assert liveness.silent_for("n1") == 0.0


def test_unreadable_entries_are_skipped():
    assert _parse({"a": b'{"connected": ["x"], "silent": []}', "b": b"not json"}) == {"a": Published({"x"}, set())}


def test_a_ready_report_written_by_another_master_counts_as_heard():
    # A Node registers on another master: the leader sees its Ready=True write before that master's presence.
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    liveness.elsewhere = PresenceView(identity="me", clock=clock)
    clock.t += 30
    assert liveness.silent_for("new") == 30.0
    liveness.reported_ready("new")
    assert liveness.silent_for("new") == 0.0
    # A stream that broke here is lost, unless the Node was since reported Ready (it registered elsewhere).
    liveness.connected("moved")
    liveness.disconnected("moved")
    assert liveness.silent_for("moved") == float("inf")
    liveness.reported_ready("moved")
    assert liveness.silent_for("moved") == 0.0


def test_a_node_that_said_goodbye_has_the_grace_period_and_a_broken_stream_is_lost():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    liveness.connected("polite")
    liveness.connected("broken")
    clock.t += 10
    liveness.disconnected("polite", graceful=True)
    liveness.disconnected("broken")
    clock.t += 2
    assert liveness.silent_for("polite") == 2.0
    assert liveness.silent_for("broken") == float("inf")


class Handlers:
    """An informer stand-in that keeps the handlers given to it."""

    def __init__(self) -> None:
        self.on_add: Any = None
        self.on_update: Any = None

    def add_handler(self, *, on_add: Any = None, on_update: Any = None, on_delete: Any = None) -> None:
        self.on_add, self.on_update = on_add, on_update


def node_with_ready(name: str, status: str, beat: int) -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    condition = node.status.conditions.add(type="Ready", status=status)
    condition.last_heartbeat_time.seconds = beat
    return node


def test_a_node_here_written_not_ready_elsewhere_is_reasserted_at_once():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    informer = Handlers()
    reasserted: list[str] = []
    follow_ready_reports(informer, liveness, grace=5.0, reassert=reasserted.append)  # type: ignore[arg-type]
    liveness.connected("here")
    # The leader, blind to this master's presence for a moment, wrote the Node Unknown: write Ready again.
    informer.on_update(node_with_ready("here", "True", 1), node_with_ready("here", "Unknown", 1))
    assert reasserted == ["here"]
    # Not for a Node whose stream is elsewhere, nor for one silent here for longer than the grace period.
    informer.on_update(node_with_ready("away", "True", 1), node_with_ready("away", "Unknown", 1))
    clock.t += 10
    informer.on_update(node_with_ready("here", "True", 2), node_with_ready("here", "Unknown", 2))
    assert reasserted == ["here"]
    # A new Ready=True heartbeat (written anywhere) counts as heard.
    clock.t += 10
    informer.on_update(node_with_ready("away", "True", 1), node_with_ready("away", "True", 2))
    assert liveness.silent_for("away") == 0.0


def test_a_stream_that_broke_on_another_master_is_lost_at_once():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    view = PresenceView(identity="leader", clock=clock)
    liveness.elsewhere = view
    view.replace({"other": Published({"n1", "n2"}, set())})
    clock.t += 1
    # n1's stream broke on the other master (published as lost); n2's kubelet said Goodbye (just gone).
    view.replace({"other": Published(set(), set(), lost={"n1"})})
    assert liveness.silent_for("n1") == float("inf")
    assert liveness.silent_for("n2") == 0.0
    # n1 comes back on a third master: alive.
    view.replace({"other": Published(set(), set(), lost={"n1"}), "third": Published({"n1"}, set())})
    assert liveness.silent_for("n1") == 0.0
    assert _parse({"m": b'{"connected": [], "silent": [], "lost": ["x"]}'})["m"].lost == {"x"}


def test_a_loss_elsewhere_is_forgotten_once_the_node_was_heard_here_since():
    clock = Clock()
    liveness = NodeLiveness(clock=clock)
    view = PresenceView(identity="leader", clock=clock)
    liveness.elsewhere = view
    view.replace({"other": Published(set(), set(), lost={"n1"})})
    assert liveness.silent_for("n1") == float("inf")
    clock.t += 1
    liveness.connected("n1")  # it moved here
    clock.t += 1
    liveness.disconnected("n1", graceful=True)  # and restarts: the grace period, despite the old loss elsewhere
    clock.t += 2
    assert liveness.silent_for("n1") == 2.0


def test_with_other_masters_a_broken_stream_has_the_reconnect_window_first():
    # A master cut off from its Nodes' network sees their streams break while the Nodes are fine: their kubelets
    # need a moment to show up on another master, and must not be judged lost meanwhile.
    clock = Clock()
    liveness = NodeLiveness(clock=clock, reconnect_window=1.0)
    view = PresenceView(identity="leader", clock=clock)
    liveness.elsewhere = view
    view.replace({"other": Published(set(), set())})
    for node in ("moving", "dead"):
        liveness.connected(node)
    clock.t += 10
    liveness.disconnected("moving")
    liveness.disconnected("dead")
    clock.t += 0.5
    assert liveness.silent_for("moving") == liveness.silent_for("dead") == 10.5  # silent, not lost yet
    view.replace({"other": Published({"moving"}, set())})
    clock.t += 0.5
    assert liveness.silent_for("moving") == 0.0
    assert liveness.silent_for("dead") == float("inf"), "the window is over: lost"
    # A stream that broke on another master has the window too.
    view.replace({"other": Published({"moving"}, set(), lost={"far"})})
    assert liveness.silent_for("far") != float("inf")
    clock.t += 1.0
    assert liveness.silent_for("far") == float("inf")


def test_alone_a_broken_stream_is_lost_at_once_whatever_the_window():
    clock = Clock()
    liveness = NodeLiveness(clock=clock, reconnect_window=1.0)
    liveness.elsewhere = PresenceView(identity="only", clock=clock)
    liveness.connected("n1")
    liveness.disconnected("n1")
    assert liveness.silent_for("n1") == float("inf"), "no other master to reconnect to"
