"""Running `ctr`: the call wrapper every behaviour of the runtime goes through (docs/containerd.md §2).

`CtrCalls` is the base of the runtime's mixins. `_ctr` runs one `ctr` subprocess with the rules every
call follows: `--connect-timeout 2s`, stdin DEVNULL, a timeout (the process is killed when it runs
out), and the error text taken from ctr's last `ctr: ...` stderr line (`ctr_message`). It turns a
failure into `CtrError`, or into `RuntimeUnavailableError` when the text says containerd itself is
down (except for `ctr shim`, which talks to the shim). Heavy calls (`expensive=True`) take one of
`_slots`, every other call one of `_read_slots` (twice as many), sized by the runtime's `__init__`.

Also here, for all modules: containerd's timestamps (`parse_timestamp`) and pieces of ids (`id_part`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kybernetes.kubelet.runtime.base import ContainerRuntimeError, RuntimeUnavailableError

CONNECT_TIMEOUT = "2s"
CALL_TIMEOUT = 30.0
CALLS_PER_CORE = 4
_UNAVAILABLE_MARKERS = ("code = Unavailable", "transport is closing")
_ID_UNSAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class CtrResult:
    returncode: int
    stdout: str
    stderr: str


class CtrError(ContainerRuntimeError):
    """A ctr call failed; `message` is ctr's own error text."""

    def __init__(self, command: Sequence[str], result: CtrResult) -> None:
        self.command = list(command)
        self.result = result
        self.message = ctr_message(result.stderr) or result.stdout.strip()[-500:] or f"rc {result.returncode}"
        super().__init__(f"ctr {' '.join(self.command[:3])}: {self.message}")

    @property
    def not_found(self) -> bool:
        return "not found" in self.message


def ctr_message(stderr: str) -> str:
    """ctr's error line without its `ctr: ` prefix (the last one if there are several)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ctr: "):
            return line[len("ctr: "):]
    return lines[-1] if lines else ""


def id_part(text: str, *, limit: int) -> str:
    """A piece of a containerd id: lowercase alphanumerics joined by single dashes."""
    part = _ID_UNSAFE.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return part or "x"


def parse_timestamp(text: str | None) -> float | None:
    """containerd's RFC 3339 times (nanoseconds, `Z`) as epoch seconds; the zero time is None."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    from datetime import datetime

    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


class CtrCalls:
    """Base of the runtime's mixins: the `ctr` call (see the module docstring)."""

    # Set by ContainerdRuntime.__init__.
    address: str
    namespace: str
    _ctr_binary: str
    _call_timeout: float
    _slots: asyncio.Semaphore
    _read_slots: asyncio.Semaphore

    def _ctr_argv(self, *args: str) -> list[str]:
        return [self._ctr_binary, "--connect-timeout", CONNECT_TIMEOUT, "--address", self.address,
                "--namespace", self.namespace, *args]

    async def _ctr(
        self,
        *args: str,
        timeout: float | None = None,
        expensive: bool = False,
        check: bool = True,
    ) -> CtrResult:
        """One ctr call: DEVNULL stdin, a timeout, errors as CtrError / RuntimeUnavailableError."""
        slots = self._slots if expensive else self._read_slots
        async with slots:
            argv = self._ctr_argv(*args)
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                stdout, stderr = await asyncio.wait_for(process.communicate(), timeout or self._call_timeout)
            except (TimeoutError, asyncio.CancelledError) as error:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                if isinstance(error, TimeoutError):
                    raise ContainerRuntimeError(
                        f"ctr {' '.join(args[:3])}: no answer within {timeout or self._call_timeout:.0f}s"
                    ) from None
                raise
        result = CtrResult(process.returncode or 0, stdout.decode(errors="replace"),
                           stderr.decode(errors="replace"))
        if result.returncode != 0:
            message = ctr_message(result.stderr)
            unavailable = (message.startswith("failed to dial") or self.address in message
                           or any(marker in message for marker in _UNAVAILABLE_MARKERS))
            if unavailable and args[:1] != ("shim",):
                raise RuntimeUnavailableError(f"containerd at {self.address} is unavailable: {message}")
            if check:
                raise CtrError(args, result)
        return result
