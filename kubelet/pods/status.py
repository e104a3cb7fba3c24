"""Pod status: built from a worker's records, and reported to the master only when it changed.

`build_pod_status` is pure: Kubernetes' phase rules (kubelet getPhase), the
PodScheduled/Initialized/ContainersReady/Ready conditions (a transition time
moves only when the condition's status does), container states with reason,
exit code and times, podIP and hostIP.

`StatusReporter` keeps the last status of every pod and sends a PodStatusReport
only when it differs from what was sent. After a reconnect everything is sent
again (`resend_all`): the master may have missed reports, or restarted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.kubelet.pods.records import ContainerRecord, Instance
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

# How often one report is resent while the master's stored status differs from it.
MAX_REPAIRS = 3


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _terminated(instance: Instance) -> pb.ContainerStateTerminated:
    term = pb.ContainerStateTerminated(exit_code=instance.exit_code or 0, reason=instance.reason,
                                       message=instance.message, container_id=instance.container_id)
    if instance.started_at:
        term.started_at.CopyFrom(timestamp(instance.started_at))
    if instance.finished_at:
        term.finished_at.CopyFrom(timestamp(instance.finished_at))
    if instance.exit_code is not None and instance.exit_code > 128 and instance.reason != "StartError":
        term.signal = instance.exit_code - 128
    return term


def container_status(record: ContainerRecord, spec: pb.Container) -> pb.ContainerStatus:
    """Kubernetes' ContainerStatus of one container."""
    status = pb.ContainerStatus(name=record.name, restart_count=record.restart_count, image=spec.image)
    current = record.current
    exited = record.exited_instance()
    if record.waiting is not None:
        status.state.waiting.reason, status.state.waiting.message = record.waiting
        last = exited or record.previous
    elif current is not None and current.running:
        status.state.running.SetInParent()
        if current.started_at:
            status.state.running.started_at.CopyFrom(timestamp(current.started_at))
        status.started = True
        status.ready = record.ready
        last = record.previous
    elif current is not None:
        status.state.terminated.CopyFrom(_terminated(current))
        last = record.previous
    elif record.start_error is not None:
        # restartPolicy Never and the only start failed: terminated without ever running.
        reason, message = record.start_error
        status.state.terminated.CopyFrom(pb.ContainerStateTerminated(exit_code=128, reason="StartError",
                                                                     message=message or reason))
        last = None
    else:
        status.state.waiting.reason = "ContainerCreating"
        last = None
    if last is not None and not last.running:
        status.last_state.terminated.CopyFrom(_terminated(last))
    if current is not None:
        status.container_id = current.container_id
        status.image_id = current.image_id
        status.image = current.image or spec.image
    return status


def pod_phase(*, restart_policy: str, statuses: Iterable[pb.ContainerStatus], terminating: bool = False,
              finished: bool = False) -> str:
    """Kubernetes' getPhase, from the container states.

    A container waiting with a previous termination counts as stopped, one waiting without as pending.
    `finished` (a deleted pod whose containers are all gone) gives the terminal phase.
    """
    pending = running = stopped = succeeded = 0
    total = 0
    for status in statuses:
        total += 1
        state = status.state
        if state.HasField("running"):
            running += 1
        elif state.HasField("terminated"):
            stopped += 1
            if state.terminated.exit_code == 0:
                succeeded += 1
        elif state.HasField("waiting"):
            if status.last_state.HasField("terminated"):
                stopped += 1
            else:
                pending += 1
    if finished and total:
        return "Succeeded" if succeeded == total else "Failed"
    if pending > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always" and not terminating:
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never" or terminating:
            return "Failed"
        return "Running"
    return "Pending"


def _set_condition(status: pb.PodStatus, previous: pb.PodStatus | None, *, type: str,  # noqa: A002
                   value: str, reason: str = "", message: str = "", now: float) -> None:
    cond = status.conditions.add(type=type, status=value, reason=reason, message=message)
    old = next((c for c in previous.conditions if c.type == type), None) if previous is not None else None
    if old is not None and old.status == value and old.HasField("last_transition_time"):
        cond.last_transition_time.CopyFrom(old.last_transition_time)
    else:
        cond.last_transition_time.CopyFrom(timestamp(int(now)))


def build_pod_status(*, pod: pb.Pod, records: dict[str, ContainerRecord], pod_ip: str, host_ip: str,
                     start_time: float, previous: pb.PodStatus | None, terminating: bool = False,
                     finished: bool = False, message: str = "", reason: str = "",
                     now: float | None = None) -> pb.PodStatus:
    """The whole PodStatus of a pod from its container records."""
    now = time.time() if now is None else now
    status = pb.PodStatus(host_ip=host_ip, pod_ip=pod_ip, message=message, reason=reason)
    status.start_time.CopyFrom(timestamp(int(start_time)))
    for spec in pod.spec.containers:
        record = records.get(spec.name)
        if record is not None:
            status.container_statuses.append(container_status(record, spec))
    status.phase = pod_phase(restart_policy=pod.spec.restart_policy or "Always",
                             statuses=status.container_statuses, terminating=terminating, finished=finished)

    not_ready = [s.name for s in status.container_statuses if not s.ready]
    all_ready = not not_ready and bool(status.container_statuses)
    ready_reason = "" if all_ready else ("PodCompleted" if status.phase in ("Succeeded", "Failed")
                                         else "ContainersNotReady")
    ready_message = "" if all_ready or ready_reason == "PodCompleted" else \
        f"containers with unready status: [{' '.join(not_ready)}]"
    ready_value = "True" if all_ready else "False"
    prior_scheduled = next((c for c in pod.status.conditions if c.type == "PodScheduled"), None)
    if prior_scheduled is not None:
        status.conditions.append(prior_scheduled)
    else:
        _set_condition(status, previous, type="PodScheduled", value="True", now=now)
    _set_condition(status, previous, type="Initialized", value="True", now=now)
    _set_condition(status, previous, type="ContainersReady", value=ready_value, reason=ready_reason,
                   message=ready_message, now=now)
    _set_condition(status, previous, type="Ready", value=ready_value, reason=ready_reason, message=ready_message,
                   now=now)
    return status


class StatusReporter:
    """The last status of each pod; sends a report only on change, and all of them again after a reconnect."""

    def __init__(self, *, send: Callable[[node_pb2.NodeMessage], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._clock = clock
        self._latest: dict[str, node_pb2.PodStatusReport] = {}
        self._unsent: set[str] = set()
        self._sent_at: dict[str, float] = {}
        self._stored: dict[str, pb.PodStatus] = {}
        self._repairs: dict[str, int] = {}

    def latest(self, uid: str) -> pb.PodStatus | None:
        report = self._latest.get(uid)
        return report.status if report is not None else None

    def set(self, pod: pb.Pod, status: pb.PodStatus) -> bool:
        """Record a pod's status; returns whether it changed (and was sent, or will be after reconnecting)."""
        uid = pod.metadata.uid
        old = self._latest.get(uid)
        if old is not None and old.status == status and uid not in self._unsent:
            return False
        report = node_pb2.PodStatusReport(namespace=pod.metadata.namespace, name=pod.metadata.name, uid=uid,
                                          status=status)
        self._latest[uid] = report
        self._repairs.pop(uid, None)
        self._push(uid)
        return True

    def _push(self, uid: str) -> None:
        report = self._latest[uid]
        self._sent_at[uid] = self._clock()
        if self._send(node_pb2.NodeMessage(pod_status=report)):
            self._unsent.discard(uid)
        else:
            self._unsent.add(uid)

    def observe(self, uid: str, stored: pb.PodStatus) -> None:
        """The status the master has stored for a pod (from PodSync/PodUpsert)."""
        self._stored[uid] = stored

    def resend_drifted(self, *, settle: float) -> int:
        """Resend reports that the master's stored status still differs from `settle` seconds after sending.

        Like the kubelet's status manager comparing with the API server: a report lost or overtaken on the
        way (a reconnect, a write that lost a race) is repaired without waiting for the next change.
        """
        now = self._clock()
        resent = 0
        for uid, report in list(self._latest.items()):
            stored = self._stored.get(uid)
            if stored is None or stored == report.status:
                continue
            # A bounded number of repairs per report: a master that stores something else on purpose
            # must not cost a write every few seconds forever.
            if now - self._sent_at.get(uid, 0.0) >= settle and self._repairs.get(uid, 0) < MAX_REPAIRS:
                self._repairs[uid] = self._repairs.get(uid, 0) + 1
                self._push(uid)
                resent += 1
        return resent

    def forget(self, uid: str) -> None:
        self._latest.pop(uid, None)
        self._unsent.discard(uid)
        self._sent_at.pop(uid, None)
        self._stored.pop(uid, None)
        self._repairs.pop(uid, None)

    def resend_all(self) -> None:
        """After (re)connecting: the master may have missed anything."""
        for uid in list(self._latest):
            self._push(uid)
