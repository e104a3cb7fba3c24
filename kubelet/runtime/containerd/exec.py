"""Exec: `ctr tasks exec --exec-id UUID` as a streaming session (docs/containerd.md §9).

`exec` starts the `ctr` process and returns a `ContainerdExecSession` (implementing
`base.ExecSession`) that pumps stdout and stderr into one queue of chunks, feeds stdin, and enforces
the timeout. ctr 1.6 never delivers EOF to the process when its own stdin ends before the shim opened
the stdin FIFO, so the stdin pipe is only closed after data went through or, without data, once output
arrived or EXEC_STDIN_CLOSE_DELAY passed. On timeout ctr gets SIGTERM (it forwards it), then the exec
is SIGKILLed through `ctr tasks kill --exec-id`, and only as a last resort ctr itself. rc 1 with a
`ctr: ` last stderr line is ctr's own error and raises ExecError.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from kybernetes.kubelet.runtime.base import ExecChunk, ExecError, ExecResult
from kybernetes.kubelet.runtime.containerd.ctr import CtrCalls

EXEC_STDIN_CLOSE_DELAY = 0.5


class ExecMixin(CtrCalls):
    """Exec of `ContainerdRuntime` (see the module docstring)."""

    async def exec(
        self,
        container_id: str,
        command: list[str],
        *,
        stdin: AsyncIterator[bytes] | None = None,
        timeout: float | None = None,
    ) -> ContainerdExecSession:
        """Run a command in a running container; output streams through the returned session."""
        if not command:
            raise ExecError("exec: command: must not be empty")
        exec_id = uuid.uuid4().hex
        process = await asyncio.create_subprocess_exec(
            *self._ctr_argv("tasks", "exec", "--exec-id", exec_id, container_id, *command),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        session = ContainerdExecSession(runtime=self, container_id=container_id, exec_id=exec_id,
                                        process=process, stdin=stdin, timeout=timeout)
        session.start()
        return session


class ContainerdExecSession:
    """One `ctr t exec` process; implements `base.ExecSession`."""

    def __init__(
        self,
        *,
        runtime: CtrCalls,
        container_id: str,
        exec_id: str,
        process: asyncio.subprocess.Process,
        stdin: AsyncIterator[bytes] | None,
        timeout: float | None,
    ) -> None:
        self.exec_id = exec_id
        self.container_id = container_id
        self._runtime = runtime
        self._process = process
        self._stdin = stdin
        self._timeout = timeout
        self._queue: asyncio.Queue[ExecChunk | None] = asyncio.Queue()
        self._output_seen = asyncio.Event()
        self._stderr_tail = b""
        self._timed_out = False
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._chunks_taken = False

    @property
    def timed_out(self) -> bool:
        return self._timed_out

    def start(self) -> None:
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._process.stdout, "stdout")),
            asyncio.create_task(self._pump(self._process.stderr, "stderr")),
        ]
        self._tasks = [asyncio.create_task(self._feed_stdin())]
        if self._timeout is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(self._timeout)))

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while data := await stream.read(65536):
            self._output_seen.set()
            if name == "stderr":
                self._stderr_tail = (self._stderr_tail + data)[-4096:]
            await self._queue.put(ExecChunk(stream=name, data=data))  # type: ignore[arg-type]
        await self._queue.put(None)

    async def _feed_stdin(self) -> None:
        pipe = self._process.stdin
        assert pipe is not None
        wrote = False
        try:
            if self._stdin is not None:
                async for data in self._stdin:
                    if data:
                        pipe.write(data)
                        await pipe.drain()
                        wrote = True
            if not wrote:
                # EOF before the shim opened the stdin FIFO is lost by ctr 1.6 (the process would
                # wait forever): close only once the process is demonstrably running, or after a delay.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._output_seen.wait(), EXEC_STDIN_CLOSE_DELAY)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    async def _watchdog(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), timeout)
        except TimeoutError:
            self._timed_out = True
            await self.cancel()

    async def cancel(self) -> None:
        """SIGTERM ctr (forwarded to the process), then SIGKILL the exec through containerd."""
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.terminate()
        if await self._wait_process(1.0):
            return
        await self._runtime._ctr("tasks", "kill", "--exec-id", self.exec_id, "--signal", "SIGKILL",
                                 self.container_id, check=False)
        if await self._wait_process(5.0):
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        await self._process.wait()
        await self._runtime._ctr("tasks", "rm", "--exec-id", self.exec_id, self.container_id, check=False)

    async def _wait_process(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), timeout)
            return True
        except TimeoutError:
            return False

    async def chunks(self) -> AsyncIterator[ExecChunk]:
        if self._chunks_taken:
            raise RuntimeError("exec output can only be consumed once")
        self._chunks_taken = True
        open_streams = 2
        while open_streams:
            chunk = await self._queue.get()
            if chunk is None:
                open_streams -= 1
            else:
                yield chunk

    async def wait(self) -> int:
        returncode = await self._process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if returncode == 1 and not self._timed_out:
            lines = [line for line in self._stderr_tail.decode(errors="replace").splitlines() if line.strip()]
            if lines and lines[-1].startswith("ctr: "):
                raise ExecError(f"exec in {self.container_id}: {lines[-1][len('ctr: '):]}")
        return returncode

    async def collect(self) -> ExecResult:
        stdout = bytearray()
        stderr = bytearray()
        async for chunk in self.chunks():
            (stdout if chunk.stream == "stdout" else stderr).extend(chunk.data)
        exit_code = await self.wait()
        return ExecResult(exit_code=exit_code, stdout=bytes(stdout), stderr=bytes(stderr),
                          timed_out=self._timed_out)
