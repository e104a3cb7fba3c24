"""`kybctl logs` and `kybctl exec` on the node: sessions started by the master over the link.

Each LogRequest or ExecStart becomes a task keyed by its request id, sending
LogChunk / ExecOutput messages back up the same link; Cancel (or the link
going down) cancels it. The pod and container are resolved by name through
the pod manager; when they can't be, the answer is an error on the first and
last message, worded like kubectl's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kybernetes.core.log import get_logger
from kybernetes.kubelet.logs import LogStore, read_log
from kybernetes.kubelet.pods.manager import PodManager
from kybernetes.kubelet.pods.records import ContainerRecord, Instance
from kybernetes.kubelet.pods.worker import PodWorker
from kybernetes.kubelet.runtime.base import ContainerRuntimeError, ExecError
from kybernetes.proto import node_pb2

log = get_logger("kubelet")

_STREAMS = {"stdout": 1, "stderr": 2}


class LookupFailed(Exception):  # noqa: N818 - reads as a sentence where raised
    """The pod or container can't be served; the message is what kybctl shows."""


def _container(worker: PodWorker, name: str) -> ContainerRecord:
    pod = worker.pod
    names = [c.name for c in pod.spec.containers]
    if not name:
        if len(names) != 1:
            raise LookupFailed(f"a container name must be specified for pod {pod.metadata.name}, "
                               f"choose one of: [{' '.join(names)}]")
        name = names[0]
    record = worker.records.get(name)
    if record is None:
        raise LookupFailed(f"container {name} is not valid for pod {pod.metadata.name}")
    return record


@dataclass
class _Exec:
    task: asyncio.Task[None]
    stdin: asyncio.Queue[bytes | None] | None


class Sessions:
    """The open log and exec sessions of one kubelet."""

    def __init__(self, *, manager: PodManager, logs: LogStore,
                 send: Callable[[node_pb2.NodeMessage], bool]) -> None:
        self.manager = manager
        self.logs = logs
        self.send = send
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._execs: dict[str, _Exec] = {}

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        worker = self.manager.find(namespace or "default", pod)
        if worker is None:
            raise LookupFailed(f'pod "{pod}" not found on node {self.manager.ctx.node_name}')
        return worker

    # ------------------------------------------------------------------ logs

    def start_logs(self, request: node_pb2.LogRequest) -> None:
        task = asyncio.create_task(self._logs(request), name=f"logs:{request.request_id}")
        self._track(request.request_id, task)

    def _log_target(self, request: node_pb2.LogRequest) -> tuple[PodWorker, ContainerRecord, Instance]:
        worker = self._worker(request.namespace, request.pod)
        record = _container(worker, request.container)
        pod = worker.pod.metadata.name
        if request.previous:
            instance = record.previous if record.current is not None and record.current.running else \
                (record.current if record.current is not None and record.waiting is not None else record.previous)
            if instance is None:
                raise LookupFailed(f'previous terminated container "{record.name}" in pod "{pod}" not found')
            return worker, record, instance
        if record.current is None:
            reason = record.waiting[0] if record.waiting else "ContainerCreating"
            raise LookupFailed(f'container "{record.name}" in pod "{pod}" is waiting to start: {reason}')
        return worker, record, record.current

    async def _logs(self, request: node_pb2.LogRequest) -> None:
        rid = request.request_id
        try:
            worker, record, instance = self._log_target(request)
            meta = worker.pod.metadata
            path = self.logs.path(namespace=meta.namespace, name=meta.name, uid=meta.uid,
                                  container=record.name, instance=instance.number)
            if not await asyncio.to_thread(path.exists):
                # The instance wrote nothing anywhere (a hollow container, or its file was removed).
                self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(request_id=rid, eof=True)))
                return
            tail = request.tail_lines if request.HasField("tail_lines") else -1
            async for data in read_log(path, tail_lines=tail, follow=request.follow,
                                       still_running=lambda: instance.running and not worker.finished.is_set()):
                self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(request_id=rid, data=data)))
            self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(request_id=rid, eof=True)))
        except LookupFailed as err:
            self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(request_id=rid, eof=True, error=str(err))))
        except OSError as err:
            self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(
                request_id=rid, eof=True, error=f"reading logs failed: {err}")))
        except Exception as err:  # our bug: logged with its traceback, and the session ends instead of hanging
            log.exception("log session failed", request_id=rid, object=f"pods/{request.namespace}/{request.pod}")
            self.send(node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(
                request_id=rid, eof=True, error=f"internal error on the node: {type(err).__name__}")))

    # ------------------------------------------------------------------ exec

    def start_exec(self, request: node_pb2.ExecStart) -> None:
        stdin: asyncio.Queue[bytes | None] | None = asyncio.Queue() if request.stdin else None
        task = asyncio.create_task(self._exec(request, stdin), name=f"exec:{request.request_id}")
        self._execs[request.request_id] = _Exec(task=task, stdin=stdin)
        self._track(request.request_id, task)

    def exec_input(self, message: node_pb2.ExecInput) -> None:
        session = self._execs.get(message.request_id)
        if session is None or session.stdin is None:
            return
        if message.data:
            session.stdin.put_nowait(bytes(message.data))
        if message.eof:
            session.stdin.put_nowait(None)

    async def _exec(self, request: node_pb2.ExecStart, stdin: asyncio.Queue[bytes | None] | None) -> None:
        rid = request.request_id

        def output(**fields: Any) -> None:
            self.send(node_pb2.NodeMessage(exec_output=node_pb2.ExecOutput(request_id=rid, **fields)))

        try:
            worker = self._worker(request.namespace, request.pod)
            record = _container(worker, request.container)
            if record.current is None or not record.current.running:
                raise LookupFailed(f"unable to upgrade connection: container not found (\"{record.name}\")"
                                   if record.current is None else
                                   f'container "{record.name}" in pod "{worker.pod.metadata.name}" is not running')
            session = await worker.ctx.runtime.exec(record.current.container_id, list(request.command),
                                                    stdin=_drain(stdin) if stdin is not None else None)
            try:
                async for chunk in session.chunks():
                    output(stream=_STREAMS[chunk.stream], data=chunk.data)
                code = await session.wait()
            except asyncio.CancelledError:
                with contextlib.suppress(ContainerRuntimeError):
                    await asyncio.shield(session.cancel())
                raise
            output(exited=True, exit_code=code)
        except LookupFailed as err:
            output(exited=True, exit_code=1, error=str(err))
        except ExecError as err:
            output(exited=True, exit_code=126, error=str(err))
        except ContainerRuntimeError as err:
            output(exited=True, exit_code=1, error=f"exec failed: {err}")
        except Exception as err:  # our bug: logged with its traceback, and the session ends instead of hanging
            log.exception("exec session failed", request_id=rid, object=f"pods/{request.namespace}/{request.pod}")
            output(exited=True, exit_code=1, error=f"internal error on the node: {type(err).__name__}")
        finally:
            self._execs.pop(rid, None)

    # ---------------------------------------------------------------- common

    def _track(self, request_id: str, task: asyncio.Task[None]) -> None:
        self._tasks[request_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(request_id, None))

    def cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        """The link went down: nobody is listening any more."""
        for task in list(self._tasks.values()):
            task.cancel()


async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        data = await queue.get()
        if data is None:
            return
        yield data
