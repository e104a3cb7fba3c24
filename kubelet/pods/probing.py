"""A pod worker's probes: one `Prober` per liveness/readiness probe of each running container instance.

`ProbingMixin` (a part of `PodWorker`) starts a container's probers when an
instance starts (or is adopted running) and stops them when it stops, and
turns their results into the container record: a failed readiness probe makes
the container unready, a failed liveness probe sets `liveness_failure`, which
the next sync acts on by restarting the container; every failure is an
Unhealthy event, and every result wakes the worker. Results of an instance
that is no longer the current, running one are ignored. The probing itself
(timing, thresholds, exec/httpGet/tcpSocket) is `probes.Prober`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kybernetes.kubelet.events import WARNING
from kybernetes.kubelet.pods.probes import Prober
from kybernetes.kubelet.pods.records import ContainerRecord
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from kybernetes.kubelet.pods.worker import WorkerContext


class ProbingMixin:
    """`PodWorker`'s probe wiring (see the module docstring)."""

    if TYPE_CHECKING:  # PodWorker's state, set by its __init__, and its methods
        pod: pb.Pod
        ctx: WorkerContext
        records: dict[str, ContainerRecord]

        def pod_ip(self) -> str: ...
        def wake(self) -> None: ...
        def _event(self, kind: str, reason: str, message: str, *, container: str = "") -> None: ...

    def _start_probers(self, record: ContainerRecord) -> None:
        spec = next((c for c in self.pod.spec.containers if c.name == record.name), None)
        current = record.current
        if spec is None or current is None:
            return
        self._stop_probers(record)
        for kind in ("liveness", "readiness"):
            field_name = f"{kind}_probe"
            if not spec.HasField(field_name):
                continue
            prober = Prober(kind=kind, probe=getattr(spec, field_name), runtime=self.ctx.runtime,
                            container_id=current.container_id, container=spec, pod_ip=self.pod_ip(),
                            pod_cidr=self.ctx.pod_cidr(),
                            on_result=self._probe_callback(record, kind, current.container_id))
            prober.start()
            record.probers.append(prober)

    def _probe_callback(self, record: ContainerRecord, kind: str, container_id: str) -> Callable[[bool, str], None]:
        def on_result(ok: bool, message: str) -> None:
            if record.current is None or record.current.container_id != container_id or not record.current.running:
                return
            if not ok:
                title = "Liveness" if kind == "liveness" else "Readiness"
                self._event(WARNING, "Unhealthy", f"{title} probe failed: {message}", container=record.name)
            if kind == "liveness":
                record.liveness_failure = "" if ok else (message or "liveness probe failed")
            else:
                record.ready = ok
            self.wake()

        return on_result

    def _stop_probers(self, record: ContainerRecord) -> None:
        for prober in record.probers:
            prober.stop()  # type: ignore[attr-defined]
        record.probers.clear()

    def _stop_all_probers(self) -> None:
        for record in self.records.values():
            self._stop_probers(record)

    def _container_stopped(self, record: ContainerRecord) -> None:
        self._stop_probers(record)
        record.ready = False
        record.liveness_failure = ""
