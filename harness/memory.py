"""A process's memory as the tests measure it: the resident set (VmRSS in /proc/<pid>/status).

`PeakRSS` samples it in the background for as long as its block runs, so a test bounds the most the process
held at any moment, not what it holds when the test looks. A bound on memory, never on time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The resident set of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class PeakRSS:
    """`async with PeakRSS(pid) as rss:` samples the resident set every `interval` seconds; `rss.grown` is the
    peak above the resident set at entry, so far while the block runs and in all after it."""

    def __init__(self, pid: int, *, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def grown(self) -> int:
        return self.peak - self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, rss_bytes(self.pid))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> PeakRSS:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except OSError:  # the process is gone: a failure the block's own error (if any) explains better
            if exc is None:
                raise
        if exc is None:
            self.sample()
