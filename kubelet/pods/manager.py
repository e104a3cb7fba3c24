"""The pods of this node: the master's desired set turned into one `PodWorker` per pod.

The manager is an actor: PodSync, PodUpsert and PodRemove from the link go
into its mailbox and are handled in order. The first PodSync after the kubelet
started adopts what the runtime already runs (see `adoption`); later ones
reconcile (pods missing from the sync are terminated). Workers are keyed by
uid, so a pod deleted and re-created under the same name is a new worker.

Two loops feed the workers what the runtime sees: the exit stream (fast) and a
periodic relist of all containers (catches anything the stream missed, and
removes leftovers of pods that have no worker any more).

A pod whose spec.nodeName is not this Node is never run, whatever the link
brings (the master routes by nodeName, so this only happens through a bug or a
forged message): it is dropped at the door with a warning naming it and the
Node it is bound to. In a PodSync it counts as absent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from kybernetes.core.log import get_logger, obj_ref
from kybernetes.core.machinery.actors import Actor, Supervisor
from kybernetes.kubelet.logs import rotate_if_larger
from kybernetes.kubelet.memory import release_free_memory
from kybernetes.kubelet.pods import adoption
from kybernetes.kubelet.pods.worker import Adopted, PodWorker, WorkerContext
from kybernetes.kubelet.runtime.base import LABEL_POD_UID, ContainerExit, ContainerInfo, ContainerRuntimeError
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

# Kubernetes' containerLogMaxSize default.
DEFAULT_LOG_MAX_BYTES = 10 * 2**20
# Seconds after sending a status report before a different stored status counts as drift.
STATUS_SETTLE = 2.0
# Pods recently confirmed gone, so a late upsert of a deleted pod only repeats the confirmation.
_TERMINATED_MEMORY = 1024
# Exits of containers no worker claimed yet, kept for the worker that is about to learn the id.
_UNCLAIMED_EXITS = 256


@dataclass(frozen=True)
class _Sync:
    pods: list[pb.Pod]


@dataclass(frozen=True)
class _Upsert:
    pod: pb.Pod


@dataclass(frozen=True)
class _Remove:
    uid: str


class PodManager(Actor):
    """Desired pods → workers; runtime observations → the right worker."""

    def __init__(self, *, ctx: WorkerContext, relist_interval: float = 5.0,
                 log_max_bytes: int = DEFAULT_LOG_MAX_BYTES) -> None:
        super().__init__(name=f"pods:{ctx.node_name}")
        self.log = get_logger("kubelet", node=ctx.node_name)
        self.ctx = ctx
        self.relist_interval = relist_interval
        self.log_max_bytes = log_max_bytes
        self.workers: dict[str, PodWorker] = {}
        self.synced = asyncio.Event()
        # uids of pods whose containers are gone (only the uid: a kubelet runs through thousands of pods)
        self._terminated: OrderedDict[str, None] = OrderedDict()
        self._unclaimed_exits: OrderedDict[str, ContainerExit] = OrderedDict()
        self._finished_since_trim = 0  # workers gone since the last release_free_memory
        ctx.claim_exit = self._claim_exit

    # ---------------------------------------------------------------- inputs

    def pod_sync(self, pods: list[pb.Pod]) -> None:
        self.tell(_Sync([pod for pod in pods if self._ours(pod)]))

    def pod_upsert(self, pod: pb.Pod) -> None:
        if self._ours(pod):
            self.tell(_Upsert(pod))

    def _ours(self, pod: pb.Pod) -> bool:
        if pod.spec.node_name == self.ctx.node_name:
            return True
        self.log.warning("pod bound to another Node ignored",
                         object=obj_ref("pods", pod.metadata.name, pod.metadata.namespace),
                         pod_node=pod.spec.node_name, uid=pod.metadata.uid)
        return False

    def pod_remove(self, uid: str) -> None:
        self.tell(_Remove(uid))

    def find(self, namespace: str, name: str) -> PodWorker | None:
        """The worker of a pod by name (the live one when an old one with that name is still terminating)."""
        matches = [w for w in self.workers.values()
                   if w.pod.metadata.namespace == namespace and w.pod.metadata.name == name]
        matches.sort(key=lambda w: w.terminating)
        return matches[0] if matches else None

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        # The exit dispatcher and the relist loop are this actor's helpers: each is restarted (with its
        # traceback logged) if it crashes, instead of leaving the manager running without it.
        helpers = Supervisor(name=f"pods:{self.ctx.node_name}")
        helpers.start_fn(f"exits:{self.ctx.node_name}", self._dispatch_exits)
        helpers.start_fn(f"relist:{self.ctx.node_name}", self._relist_loop)
        try:
            while True:
                message = await self.mailbox.get()
                try:
                    if isinstance(message, _Sync):
                        await self._sync(message.pods)
                    elif isinstance(message, _Upsert):
                        self._upsert(message.pod)
                    elif isinstance(message, _Remove):
                        worker = self.workers.get(message.uid)
                        if worker is not None:
                            worker.remove()
                except Exception:
                    self.log.exception("pod manager message failed")
        finally:
            await helpers.stop_all()
            workers = [w.task for w in self.workers.values() if w.task is not None]
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _sync(self, pods: list[pb.Pod]) -> None:
        desired = {p.metadata.uid: p for p in pods}
        if not self.synced.is_set():
            await self._adopt(desired)
            self.synced.set()
            return
        for uid, worker in list(self.workers.items()):
            if uid not in desired:
                worker.remove()
        for pod in pods:
            self._upsert(pod)

    async def _adopt(self, desired: dict[str, pb.Pod]) -> None:
        """First sync after start: keep what is still bound here, remove the rest."""
        while True:
            try:
                found = await adoption.inventory(self.ctx.runtime)
                break
            except ContainerRuntimeError as err:
                self.log.warning("runtime not answering, adoption waits", error=str(err))
                await asyncio.sleep(1.0)
        keep = {uid for uid, pod in desired.items()}
        await adoption.remove_orphans(self.ctx.runtime, found, keep=keep)
        for uid, pod in desired.items():
            self.ctx.reporter.observe(uid, pod.status)
            self._start_worker(pod, adopted=found.adopted(uid))

    def _upsert(self, pod: pb.Pod) -> None:
        uid = pod.metadata.uid
        self.ctx.reporter.observe(uid, pod.status)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if uid in self._terminated:
            if pod.metadata.HasField("deletion_timestamp"):
                self.ctx.send(node_pb2.NodeMessage(pod_terminated=node_pb2.PodTerminated(
                    namespace=pod.metadata.namespace, name=pod.metadata.name, uid=uid)))
            return
        self._start_worker(pod, adopted=None)

    def _start_worker(self, pod: pb.Pod, *, adopted: Adopted | None) -> None:
        worker = PodWorker(pod=pod, ctx=self.ctx, adopted=adopted, on_finished=self._worker_finished)
        self.workers[pod.metadata.uid] = worker
        worker.start()

    def _worker_finished(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        self._finished_since_trim += 1
        if worker.terminated:
            self.ctx.reporter.forget(worker.uid)
            self._terminated[worker.uid] = None
            while len(self._terminated) > _TERMINATED_MEMORY:
                self._terminated.popitem(last=False)

    # ------------------------------------------------------- runtime observers

    async def _dispatch_exits(self) -> None:
        while True:
            try:
                async for event in self.ctx.runtime.exits():
                    for worker in self.workers.values():
                        if worker.owns(event.container_id):
                            worker.on_exit(event)
                            break
                    else:
                        # Its worker may still be waiting for start_container to return.
                        self._unclaimed_exits[event.container_id] = event
                        while len(self._unclaimed_exits) > _UNCLAIMED_EXITS:
                            self._unclaimed_exits.popitem(last=False)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.log.warning("runtime exit stream failed, restarting", error=str(err))
            await asyncio.sleep(1.0)

    def _rotate_logs(self, paths: list[Path]) -> None:
        for path in paths:
            if rotate_if_larger(path, self.log_max_bytes):
                self.log.info("container log rotated", path=str(path))

    def _claim_exit(self, container_id: str) -> ContainerExit | None:
        return self._unclaimed_exits.pop(container_id, None)

    async def _relist_loop(self) -> None:
        await self.synced.wait()
        while True:
            await asyncio.sleep(self.relist_interval)
            resent = self.ctx.reporter.resend_drifted(settle=STATUS_SETTLE)
            if resent:
                self.log.info("status reports resent: the master's stored status differed", pods=resent)
            paths = [path for worker in self.workers.values() for path in worker.running_log_paths()]
            await asyncio.to_thread(self._rotate_logs, paths)
            if self._finished_since_trim and release_free_memory():
                self._finished_since_trim = 0
            try:
                await self.relist()
            except ContainerRuntimeError as err:
                self.log.warning("relist failed", error=str(err))
            except Exception:
                self.log.exception("relist failed")

    async def relist(self) -> None:
        """Compare the runtime's containers with the workers' view; remove leftovers of finished pods."""
        infos = await self.ctx.runtime.list_containers()
        by_id: dict[str, ContainerInfo] = {info.id: info for info in infos}
        for worker in list(self.workers.values()):
            worker.on_relist(by_id)
        live = set(self.workers)
        leftovers = {info.labels[LABEL_POD_UID] for info in infos
                     if info.labels.get(LABEL_POD_UID) and info.labels[LABEL_POD_UID] not in live}
        if not leftovers:
            return
        # Only pods this kubelet saw finish (or never knew): a worker being created right now has its uid in live.
        found = await adoption.inventory(self.ctx.runtime)
        with contextlib.suppress(ContainerRuntimeError):
            await adoption.remove_orphans(self.ctx.runtime, found, keep=set(self.workers))
