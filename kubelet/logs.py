"""Container logs on the node: one file per container instance, read for `kybctl logs` over the link.

Layout: <root>/pods/<namespace>_<name>_<uid>/<container>/<restartCount>.log. The
runtime's shim appends the container's stdout and stderr to the file of the
instance it runs (docs/containerd.md §5 "Logs"), so the previous instance's file is
simply the one with the next lower number, and all of them outlive the containers.
Files of a pod are removed when the pod is.

A running instance's file is rotated like logrotate's copytruncate once it
outgrows the size limit: copied to <n>.log.1 (replacing the older copy), then
truncated in place, because the shim keeps its O_APPEND descriptor and never
reopens a renamed file (docs/containerd.md §5). Logs show the file after rotation,
as `kubectl logs` does.

Reading never blocks the event loop: file I/O runs in a worker thread. The whole
log is read a chunk at a time as the reader asks for it (a paused reader holds the
file's offset, not its content); a tail reads backwards from the end in blocks
until it has N lines; a follow polls the file's size and sends what was appended
until the instance has exited (and its last bytes have been sent) or the request
is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

CHUNK = 64 * 1024
FOLLOW_POLL = 0.2

_INSTANCE = re.compile(r"(\d+)\.log")


class LogStore:
    """Where log files live under the kubelet's root dir."""

    def __init__(self, root: Path) -> None:
        self.root = root / "pods"

    def pod_dir(self, *, namespace: str, name: str, uid: str) -> Path:
        return self.root / f"{namespace}_{name}_{uid}"

    def path(self, *, namespace: str, name: str, uid: str, container: str, instance: int) -> Path:
        return self.pod_dir(namespace=namespace, name=name, uid=uid) / container / f"{instance}.log"

    def instances(self, *, namespace: str, name: str, uid: str, container: str) -> list[int]:
        """The instance numbers that have a log file, ascending."""
        directory = self.pod_dir(namespace=namespace, name=name, uid=uid) / container
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _INSTANCE.fullmatch(n)))

    async def remove_pod(self, *, namespace: str, name: str, uid: str) -> None:
        directory = self.pod_dir(namespace=namespace, name=name, uid=uid)
        await asyncio.to_thread(shutil.rmtree, directory, True)

    def prune(self, *, namespace: str, name: str, uid: str, container: str, keep_from: int) -> None:
        """Remove files of instances older than `keep_from` (the previous one is kept for --previous)."""
        directory = self.pod_dir(namespace=namespace, name=name, uid=uid) / container
        for instance in self.instances(namespace=namespace, name=name, uid=uid, container=container):
            if instance < keep_from:
                (directory / f"{instance}.log").unlink(missing_ok=True)


def rotate_if_larger(path: Path, max_bytes: int) -> bool:
    """copytruncate when the file is larger than max_bytes (blocking: call in a thread); True if rotated."""
    try:
        if os.stat(path).st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


def _read_tail(path: Path, lines: int) -> tuple[bytes, int]:
    """The last `lines` lines of the file (all when lines < 0) and the offset where the file ended."""
    with open(path, "rb") as handle:
        end = os.fstat(handle.fileno()).st_size
        if lines < 0:
            return handle.read(end), end
        if lines == 0:
            return b"", end
        position = end
        data = b""
        # More newlines than lines wanted guarantees the first kept line is complete.
        while position > 0 and data.count(b"\n") <= lines:
            step = min(CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        trailing = data.endswith(b"\n")
        kept = (data[:-1] if trailing else data).split(b"\n")[-lines:]
        return b"\n".join(kept) + (b"\n" if trailing else b""), end


def _read_from(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes from `offset`, and the offset after them (restarting at 0 after a truncation)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size < offset:  # copytruncate rotation: start over
            offset = 0
        handle.seek(offset)
        data = handle.read(limit)
        return data, offset + len(data)


async def read_log(path: Path, *, tail_lines: int, follow: bool,
                   still_running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The log file's content (its last `tail_lines` lines, or all when negative), then appended data if following.

    A follow ends when `still_running()` turns False and the file has been read to its end.
    """
    if tail_lines < 0:
        # All of it: a chunk at a time up to where the file ends now (the rest is what a follow reads).
        end = await asyncio.to_thread(os.path.getsize, path)
        offset = 0
        while offset < end:
            chunk, offset = await asyncio.to_thread(_read_from, path, offset, min(CHUNK, end - offset))
            if not chunk:
                break
            yield chunk
    else:
        data, offset = await asyncio.to_thread(_read_tail, path, tail_lines)
        for start in range(0, len(data), CHUNK):
            yield data[start:start + CHUNK]
    if not follow:
        return
    while True:
        running = still_running()
        chunk, offset = await asyncio.to_thread(_read_from, path, offset, CHUNK)
        if chunk:
            yield chunk
            continue
        if not running:
            return
        await asyncio.sleep(FOLLOW_POLL)
