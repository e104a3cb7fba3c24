"""Writes pod status reports from kubelets to etcd, coalesced per pod.

A kubelet may report a pod several times in quick succession; only the newest
report matters, so reports go into a dict keyed by pod uid (latest wins), and
the uids into a work queue, which never hands one key to two workers at once:
writes for one pod are serialized, so an older report can't overwrite a newer
one, while different pods are written in parallel. A write uses the cached resourceVersion and, on a conflict,
re-reads and tries again. A report for a pod that no longer exists (or was
recreated under the same name: another uid) is dropped.
"""

from __future__ import annotations

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ConflictError, NotFoundError, UnavailableError
from kybernetes.core.identity.certs import node_identity
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.core.machinery.workqueue import WorkQueue, run_workers
from kybernetes.master.auth.node import may_report_pod
from kybernetes.master.nodelink.router import PodRouter
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

log = get_logger("nodelink")


class PodStatusWriter:
    """Latest-wins queue of pod status reports, drained by `workers` tasks."""

    def __init__(self, *, client: ObjectClient, router: PodRouter, workers: int = 8) -> None:
        self.client = client
        self.router = router
        self.workers = workers
        self._pending: dict[str, node_pb2.PodStatusReport] = {}
        self._reporters: dict[str, str] = {}
        self._queue: WorkQueue[str] = WorkQueue(name="pod-status")

    def submit(self, report: node_pb2.PodStatusReport, *, node: str) -> None:
        """Queue a report from `node`'s kubelet; a newer report for the same pod replaces an unwritten one."""
        self._pending[report.uid] = report
        self._reporters[report.uid] = node
        self._queue.add(report.uid)

    async def run(self) -> None:
        """Actor body: the worker pool (etcd outages are retried with the queue's back-off)."""
        await run_workers(self._queue, self._sync, workers=self.workers, name="pod-status-writer",
                          quiet=(UnavailableError,))

    async def _sync(self, uid: str) -> None:
        report = self._pending.pop(uid, None)
        node = self._reporters.pop(uid, "")
        if report is None:
            return
        try:
            await self._write(report, node=node)
        except Exception:
            if self._pending.setdefault(uid, report) is report:  # a newer report, if any, wins the retry
                self._reporters[uid] = node
            raise

    async def _write(self, report: node_pb2.PodStatusReport, *, node: str) -> None:
        pod = self.router.pod_of(report.uid)
        for attempt in range(5):
            if pod is None or attempt > 0:
                try:
                    pod = await self.client.get("pods", report.name, namespace=report.namespace)
                except NotFoundError:
                    return
            if pod.metadata.uid != report.uid:
                return
            decision = may_report_pod(node_identity(node), pod=report.name, pod_node_name=pod.spec.node_name)
            if not decision.allowed:
                log.warning("pod status report refused", object=obj_ref("pods", report.name, report.namespace),
                            node=node, reason=decision.reason)
                return
            if pod.status == report.status:
                return
            new = pb.Pod()
            new.CopyFrom(pod)
            new.status.CopyFrom(report.status)
            _keep_master_conditions(new, pod)
            try:
                await self.client.update_status(new)
                return
            except ConflictError:
                continue
            except NotFoundError:
                return
        log.warning("pod status write kept conflicting", object=obj_ref("pods", report.name, report.namespace))


def _keep_master_conditions(new: pb.Pod, old: pb.Pod) -> None:
    """PodScheduled belongs to the scheduler: keep the master's version when the kubelet doesn't send one."""
    if any(c.type == "PodScheduled" for c in new.status.conditions):
        return
    for cond in old.status.conditions:
        if cond.type == "PodScheduled":
            new.status.conditions.append(cond)
