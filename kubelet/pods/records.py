"""What a pod worker knows about each of its containers: the current and previous instance, and why it waits.

A container (a name in the pod spec) runs as a sequence of instances; instance
number n is the n-th start and equals the container's restartCount at the time
(it also names the instance's log file). The worker mutates these records; the
status builder turns them into Kubernetes' ContainerStatus without any I/O.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from kybernetes.kubelet.pods.backoff import Backoff
from kybernetes.proto import objects_pb2 as pb

# Labels the kubelet puts on its containers (next to the runtime's identity labels), read back on adoption.
LABEL_RESTART_COUNT = "io.kybernetes.container.restart-count"
LABEL_SPEC_HASH = "io.kybernetes.container.hash"


def spec_hash(container: pb.Container) -> str:
    """A hash of what a container runs: a change means the container must be restarted (as in Kubernetes)."""
    return hashlib.sha256(container.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass
class Instance:
    """One run of a container."""

    container_id: str
    number: int
    spec_hash: str
    image: str
    image_id: str
    started_at: float | None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def finish(self, *, exit_code: int, finished_at: float | None, oom_killed: bool = False,
               reason: str = "", message: str = "") -> None:
        self.exit_code = exit_code
        self.finished_at = finished_at or time.time()
        if self.started_at is not None and self.started_at > self.finished_at:
            # The kubelet notes the start when the runtime returns; a quick exit can precede that.
            self.started_at = self.finished_at
        if reason:
            self.reason = reason
        elif oom_killed:
            self.reason = "OOMKilled"
        else:
            self.reason = "Completed" if exit_code == 0 else "Error"
        self.message = message


@dataclass
class ContainerRecord:
    """The kubelet's view of one container of a pod."""

    name: str
    crash_backoff: Backoff
    image_backoff: Backoff
    restart_count: int = 0
    current: Instance | None = None
    previous: Instance | None = None
    # Set while the container is not running and will be (re)started: (reason, message).
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    # A start attempt failed without an instance (reason, message): counts for back-off and, with
    # restartPolicy Never, ends the container.
    start_error: tuple[str, str] | None = None
    ready: bool = False
    # Set by the liveness prober: the container must be killed and restarted.
    liveness_failure: str = ""
    probers: list[object] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.current is not None and self.current.running

    def exited_instance(self) -> Instance | None:
        """The instance whose end decides what happens next (the current one, when it has exited)."""
        if self.current is not None and not self.current.running:
            return self.current
        return None
