"""`kybctl logs` and `kybctl exec` on the node: sessions started by the master over the link.

Each LogRequest or ExecStart becomes a task keyed by its request id, sending
LogChunk / ExecOutput messages back up the same link; Cancel (or the link
going down) cancels it. The pod and container are resolved by name through
the pod manager; when they can't be, the answer is an error on the first and
last message, worded like kubectl's.

Flow control (docs/limits.md): the master's request gives a window of chunks. A session sends at most that many
chunks with data (each at most CHUNK bytes) beyond those the master has credited back (Credit, one per chunk it
passed on to the client), and otherwise waits: it then reads no more of the log file, or of the command's
output, whose pipe fills and stops the command. So a client that stops reading holds back the whole path, down
to the container. Exec input is credited the other way: one Credit per input chunk handed to the command. A
window of 0 (a master from before flow control) sends without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kybernetes.core.log import get_logger
from kybernetes.kubelet.logs import CHUNK, LogStore, read_log
from kybernetes.kubelet.pods.manager import PodManager
from kybernetes.kubelet.pods.records import ContainerRecord, Instance
from kybernetes.kubelet.pods.worker import PodWorker
from kybernetes.kubelet.runtime.base import ContainerRuntimeError, ExecError
from kybernetes.proto import node_pb2

log = get_logger("kubelet")

_STREAMS = {"stdout": 1, "stderr": 2}
# A session that waits this long for the master's credit says so in the debug log (once per wait).
HELD_BACK_LOG_AFTER = 1.0


class Window:
    """Chunks one session may still send before the master credits more; `limit` 0 means no flow control."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.available = limit
        self._more = asyncio.Event()

    async def take(self, *, held_back: Callable[[], None]) -> None:
        """Wait for a credit and use it; `held_back` is called once if the wait lasts HELD_BACK_LOG_AFTER."""
        if self.limit <= 0:
            return
        told = False
        while self.available <= 0:
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), None if told else HELD_BACK_LOG_AFTER)
            except TimeoutError:
                held_back()
                told = True
        self.available -= 1

    def give(self, chunks: int) -> None:
        # Never above the window: a confused master cannot make a session send more than it allowed at first.
        self.available = min(self.limit, self.available + max(chunks, 0))
        self._more.set()


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
        self._windows: dict[str, Window] = {}

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        worker = self.manager.find(namespace or "default", pod)
        if worker is None:
            raise LookupFailed(f'pod "{pod}" not found on node {self.manager.ctx.node_name}')
        return worker

    # ------------------------------------------------------------------ logs

    def start_logs(self, request: node_pb2.LogRequest) -> None:
        self._windows[request.request_id] = Window(request.window)
        task = asyncio.create_task(self._logs(request), name=f"logs:{request.request_id}")
        self._track(request.request_id, task)

    def credit(self, message: node_pb2.Credit) -> None:
        """The master passed chunks of a session's output on to its client: that many more may be sent."""
        window = self._windows.get(message.request_id)
        if window is not None:
            window.give(message.chunks)

    async def _send_data(self, request_id: str, message: node_pb2.NodeMessage, *, session: str, obj: str) -> None:
        """Send one chunk with data, under the session's window."""
        window = self._windows.get(request_id)
        if window is not None:
            def held_back() -> None:
                log.debug(f"{session} session held back: the master has not passed its output on",
                          request_id=request_id, object=obj, window=window.limit)

            await window.take(held_back=held_back)
        self.send(message)

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
            obj = f"pods/{meta.namespace}/{meta.name}"
            async for data in read_log(path, tail_lines=tail, follow=request.follow,
                                       still_running=lambda: instance.running and not worker.finished.is_set()):
                await self._send_data(rid, node_pb2.NodeMessage(log_chunk=node_pb2.LogChunk(request_id=rid, data=data)),
                                      session="log", obj=obj)
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
        self._windows[request.request_id] = Window(request.window)
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
            obj = f"pods/{request.namespace}/{request.pod}"

            def credit_input() -> None:
                if request.window > 0:
                    self.send(node_pb2.NodeMessage(credit=node_pb2.Credit(request_id=rid, chunks=1)))

            session = await worker.ctx.runtime.exec(
                record.current.container_id, list(request.command),
                stdin=_drain(stdin, taken=credit_input) if stdin is not None else None)
            try:
                async for chunk in session.chunks():
                    for start in range(0, len(chunk.data), CHUNK):
                        await self._send_data(rid, node_pb2.NodeMessage(exec_output=node_pb2.ExecOutput(
                            request_id=rid, stream=_STREAMS[chunk.stream], data=chunk.data[start:start + CHUNK])),
                            session="exec", obj=obj)
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

        def done(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(request_id, None)
            self._windows.pop(request_id, None)

        task.add_done_callback(done)

    def cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        """The link went down: nobody is listening any more."""
        for task in list(self._tasks.values()):
            task.cancel()


async def _drain(queue: asyncio.Queue[bytes | None], *, taken: Callable[[], None]) -> AsyncIterator[bytes]:
    """The session's input for the command; `taken` after each chunk the command's writer took."""
    while True:
        data = await queue.get()
        if data is None:
            return
        yield data
        taken()
