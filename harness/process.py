"""What every child process the harness starts shares: its log's tail, and stopping it by pid with signals."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path


class ChildProcess:
    """A process started by the harness (`proc`), logging to `log_path`; stopped like an operator would."""

    log_path: Path
    proc: asyncio.subprocess.Process | None

    def tail(self, lines: int = 40) -> str:
        """The last lines of its log ("" when there is none yet)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def signal(self, sig: int) -> int:
        """Send a signal and wait for the process to exit; returns its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)
        return await asyncio.wait_for(self.proc.wait(), 20)

    async def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        await self.signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL when it has not exited 20 s later."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                await self.signal(signal.SIGTERM)
            except TimeoutError:
                await self.signal(signal.SIGKILL)


__all__ = ["ChildProcess"]
