"""The kubelet's pure parts: phases, conditions, back-off, status reporting, log tails, Node facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kybernetes.kubelet.logs import _read_tail, rotate_if_larger
from kybernetes.kubelet.nodeinfo import HOLLOW_LABEL, MachineFacts, build_node
from kybernetes.kubelet.pods.backoff import Backoff
from kybernetes.kubelet.pods.records import ContainerRecord, Instance
from kybernetes.kubelet.pods.status import StatusReporter, build_pod_status, pod_phase
from kybernetes.kubelet.pods.worker import should_restart
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb


def status(state: str, *, exit_code: int = 0, last: bool = False) -> pb.ContainerStatus:
    s = pb.ContainerStatus(name="c")
    if state == "running":
        s.state.running.SetInParent()
    elif state == "waiting":
        s.state.waiting.reason = "CrashLoopBackOff"
    else:
        s.state.terminated.exit_code = exit_code
    if last:
        s.last_state.terminated.exit_code = 1
    return s


@pytest.mark.parametrize(("policy", "states", "phase"), [
    ("Always", [status("waiting")], "Pending"),
    ("Always", [status("running"), status("waiting")], "Pending"),
    ("Always", [status("running"), status("waiting", last=True)], "Running"),
    ("Always", [status("terminated", exit_code=0)], "Running"),
    ("OnFailure", [status("terminated", exit_code=0)], "Succeeded"),
    ("OnFailure", [status("terminated", exit_code=0), status("terminated", exit_code=1)], "Running"),
    ("Never", [status("terminated", exit_code=0), status("terminated", exit_code=1)], "Failed"),
    ("Never", [status("terminated", exit_code=0), status("terminated", exit_code=0)], "Succeeded"),
    ("Never", [status("running"), status("terminated", exit_code=1)], "Running"),
])
def test_phase_follows_kubernetes(policy: str, states: list[pb.ContainerStatus], phase: str):
    assert pod_phase(restart_policy=policy, statuses=states) == phase


def test_phase_of_a_deleted_pod_is_terminal():
    assert pod_phase(restart_policy="Always", statuses=[status("terminated", exit_code=137)], finished=True) == \
        "Failed"
    assert pod_phase(restart_policy="Always", statuses=[status("terminated")], finished=True) == "Succeeded"


def test_restart_policy():
    assert should_restart("Always", 0) and should_restart("Always", 1)
    assert should_restart("OnFailure", 2) and not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1)


def test_backoff_first_retry_at_once_then_doubling_to_the_cap():
    backoff = Backoff(base=10, cap=40)
    assert backoff.ready(0)
    delays = []
    now = 0.0
    for _ in range(5):
        backoff.next(now)
        delays.append(backoff.delay)
        assert not backoff.ready(now + backoff.delay - 0.1) and backoff.ready(now + backoff.delay)
        now += backoff.delay
    assert delays == [10, 20, 40, 40, 40]
    backoff.reset_after_run(79)
    assert backoff.delay == 40
    backoff.reset_after_run(81)
    assert backoff.delay == 0 and backoff.ready(now)


def record(name: str = "main", **fields: object) -> ContainerRecord:
    return ContainerRecord(name=name, crash_backoff=Backoff(1, 8), image_backoff=Backoff(1, 8), **fields)


def pod(*containers: str, policy: str = "Always") -> pb.Pod:
    p = pb.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "p", "default", "u1"
    p.spec.restart_policy = policy
    for name in containers:
        p.spec.containers.add(name=name, image="img")
    return p


def test_status_of_running_and_crash_looping_containers():
    running = record("a", ready=True)
    running.current = Instance(container_id="a-1", number=1, spec_hash="h", image="img", image_id="ref",
                               started_at=100.0)
    running.previous = Instance(container_id="a-0", number=0, spec_hash="h", image="img", image_id="ref",
                                started_at=50.0)
    running.previous.finish(exit_code=137, finished_at=99.0, oom_killed=True)
    running.restart_count = 1
    running.waiting = None
    looping = record("b", ready=True)
    looping.current = Instance(container_id="b-3", number=3, spec_hash="h", image="img", image_id="ref",
                               started_at=90.0)
    looping.current.finish(exit_code=2, finished_at=91.0)
    looping.waiting = ("CrashLoopBackOff", "back-off 4s")
    looping.restart_count = 3

    out = build_pod_status(pod=pod("a", "b"), records={"a": running, "b": looping}, pod_ip="10.0.0.2",
                           host_ip="192.0.2.5", start_time=42, previous=None, now=200)
    a, b = out.container_statuses
    assert a.state.running.started_at.seconds == 100 and a.ready and a.started and a.restart_count == 1
    assert a.last_state.terminated.reason == "OOMKilled" and a.last_state.terminated.signal == 9
    assert a.container_id == "a-1" and a.image_id == "ref"
    assert b.state.waiting.reason == "CrashLoopBackOff" and not b.ready and b.restart_count == 3
    assert (b.last_state.terminated.exit_code, b.last_state.terminated.reason) == (2, "Error")
    assert out.phase == "Running" and (out.pod_ip, out.host_ip) == ("10.0.0.2", "192.0.2.5")
    conditions = {c.type: c for c in out.conditions}
    assert conditions["Ready"].status == "False" and conditions["Ready"].message == \
        "containers with unready status: [b]"
    assert conditions["PodScheduled"].status == conditions["Initialized"].status == "True"


def test_condition_transition_time_moves_only_when_the_status_does():
    r = record(ready=True)
    r.current = Instance(container_id="x", number=0, spec_hash="h", image="img", image_id="", started_at=1.0)
    r.waiting = None
    first = build_pod_status(pod=pod("main"), records={"main": r}, pod_ip="", host_ip="", start_time=0,
                             previous=None, now=100)
    same = build_pod_status(pod=pod("main"), records={"main": r}, pod_ip="", host_ip="", start_time=0,
                            previous=first, now=200)
    assert first == same
    r.ready = False
    changed = build_pod_status(pod=pod("main"), records={"main": r}, pod_ip="", host_ip="", start_time=0,
                               previous=same, now=300)
    ready = next(c for c in changed.conditions if c.type == "Ready")
    assert ready.status == "False" and ready.last_transition_time.seconds == 300
    initialized = next(c for c in changed.conditions if c.type == "Initialized")
    assert initialized.last_transition_time.seconds == 100


def test_status_reporter_sends_on_change_and_repairs_drift_a_bounded_number_of_times():
    sent: list[node_pb2.NodeMessage] = []
    connected = True
    clock = [0.0]

    def send(message: node_pb2.NodeMessage) -> bool:
        if connected:
            sent.append(message)
        return connected

    reporter = StatusReporter(send=send, clock=lambda: clock[0])
    p = pod("main")
    running = pb.PodStatus(phase="Running")
    assert reporter.set(p, running) and len(sent) == 1
    assert not reporter.set(p, running) and len(sent) == 1
    connected = False
    assert reporter.set(p, pb.PodStatus(phase="Failed"))
    connected = True
    reporter.resend_all()
    assert [m.pod_status.status.phase for m in sent] == ["Running", "Failed"]

    reporter.observe("u1", running)  # the master still has the old status
    assert reporter.resend_drifted(settle=2) == 0  # too early: the report may be on its way
    resent = 0
    for _ in range(10):
        clock[0] += 3
        resent += reporter.resend_drifted(settle=2)
    assert resent == 3
    reporter.observe("u1", pb.PodStatus(phase="Failed"))
    clock[0] += 3
    assert reporter.resend_drifted(settle=2) == 0


@pytest.mark.parametrize(("content", "lines", "expected"), [
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),
    (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
    (b"a\nb\nc\n", -1, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 0, b""),
    (b"", 3, b""),
])
def test_log_tail(tmp_path: Path, content: bytes, lines: int, expected: bytes):
    path = tmp_path / "0.log"
    path.write_bytes(content)
    assert _read_tail(path, lines) == (expected, len(content))


def test_log_tail_across_read_blocks(tmp_path: Path):
    path = tmp_path / "0.log"
    body = b"".join(f"line {i} {'x' * 200}\n".encode() for i in range(2000))
    path.write_bytes(body)
    data, end = _read_tail(path, 700)
    assert end == len(body)
    assert data.splitlines() == body.splitlines()[-700:]


def test_node_facts_and_hollow_label():
    machine = MachineFacts(cpus=2, memory_bytes=4 * 2**30, kernel="6.1", os_image="Debian", machine_id="m",
                           arch="amd64")
    real = build_node(name="n1", node_ip="192.0.2.7", runtime_version="containerd://1.6.20", max_pods=110,
                      hollow=False, machine=machine)
    assert real.status.capacity == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert real.status.allocatable == real.status.capacity
    assert [(a.type, a.address) for a in real.status.addresses] == [("InternalIP", "192.0.2.7"), ("Hostname", "n1")]
    assert real.metadata.labels["kubernetes.io/hostname"] == "n1" and HOLLOW_LABEL not in real.metadata.labels
    assert real.status.node_info.container_runtime_version == "containerd://1.6.20"
    hollow = build_node(name="h1", node_ip="192.0.2.7", runtime_version="hollow://0.1.0", max_pods=110,
                        hollow=True, machine=machine)
    assert hollow.metadata.labels[HOLLOW_LABEL] == "true"


def test_rotation_copies_then_truncates_in_place(tmp_path: Path):
    path = tmp_path / "0.log"
    path.write_bytes(b"x" * 100)
    with open(path, "ab") as writer:  # like the shim: one O_APPEND descriptor for good
        assert not rotate_if_larger(path, 100)
        writer.write(b"y")
        writer.flush()
        assert rotate_if_larger(path, 100)
        writer.write(b"after\n")
        writer.flush()
    assert (tmp_path / "0.log.1").read_bytes() == b"x" * 100 + b"y"
    assert path.read_bytes() == b"after\n"
    assert not rotate_if_larger(tmp_path / "missing.log", 1)
