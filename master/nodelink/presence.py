"""Node presence shared between masters: which Nodes hold a stream to which master.

A kubelet talks to one master; the leader's node lifecycle controller must not take a Node whose stream is on
another master for a silent one. Each master publishes the Nodes connected to it (and those of them silent
for longer than the grace period, a kubelet starved while its stream stays open) as one key,
`/kybernetes/presence/<master identity>`, attached to an etcd lease of its own:

- it writes only when that set changes (connects, disconnects, a Node falling silent or speaking again), so
  an idle cluster costs no etcd writes for presence: heartbeats stay in memory, and the lease is kept alive
  without writing (LeaseKeepAlive);
- when a master dies its key goes with its lease (`ttl` seconds), and its Nodes count as silent from then on:
  their kubelets have the grace period to reconnect to another master.

Every master reads the others' keys every `period` (reads, not writes) into a `PresenceView`, which
`NodeLiveness.silent_for` consults (master.nodelink.liveness).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from kybernetes.core.api.errors import ApiError
from kybernetes.core.log import get_logger
from kybernetes.master.store.etcd import RawKeys, Store

log = get_logger("presence")

AREA = "presence"


class PresenceView:
    """What the other masters publish: their connected and silent Nodes, and when a Node left them."""

    def __init__(self, *, identity: str, clock: Callable[[], float]) -> None:
        self.identity = identity
        self._clock = clock
        self._connected: dict[str, set[str]] = {}  # master -> Nodes
        self._silent: dict[str, set[str]] = {}
        self._gone_at: dict[str, float] = {}  # Node -> when it last disappeared from every other master

    def replace(self, published: dict[str, tuple[set[str], set[str]]]) -> None:
        now = self._clock()
        before = self.present_elsewhere()
        self._connected = {m: c for m, (c, _) in published.items() if m != self.identity}
        self._silent = {m: s for m, (_, s) in published.items() if m != self.identity}
        for node in before - self.present_elsewhere():
            self._gone_at[node] = now

    def present_elsewhere(self) -> set[str]:
        """Nodes with a live stream on another master, not silent there."""
        out: set[str] = set()
        for master, nodes in self._connected.items():
            out |= nodes - self._silent.get(master, set())
        return out

    def is_present_elsewhere(self, node: str) -> bool:
        return any(node in nodes and node not in self._silent.get(master, ())
                   for master, nodes in self._connected.items())

    def gone_at(self, node: str) -> float | None:
        return self._gone_at.get(node)


class Presence:
    """Publishes this master's Nodes and reads the others' (an actor body: `run`)."""

    def __init__(self, *, store: Store, identity: str, connected: Callable[[], set[str]],
                 silent: Callable[[], set[str]], view: PresenceView, ttl: int = 2, period: float = 0.25) -> None:
        self.keys = RawKeys(store, AREA)
        self.store = store
        self.identity = identity
        self._connected = connected
        self._silent = silent
        self.view = view
        self.ttl = ttl
        self.period = period
        self.writes = 0
        self._lease = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._loop(loop)
        finally:
            # A master that stops gracefully takes its Nodes off at once: their grace period starts now.
            if self._lease:
                with contextlib.suppress(ApiError, asyncio.CancelledError):
                    await asyncio.wait_for(self.store.revoke_lease(self._lease), 1.0)

    async def _loop(self, loop: asyncio.AbstractEventLoop) -> None:
        published: tuple[list[str], list[str]] | None = None
        renewed = 0.0
        while True:
            try:
                if self._lease == 0:
                    self._lease = await self.store.grant_lease(self.ttl)
                    published = None
                now = sorted(self._connected()), sorted(self._silent())
                if now != published:
                    await self.keys.put(self.identity, json.dumps({"connected": now[0], "silent": now[1]}).encode(),
                                        lease=self._lease)
                    published = now
                    self.writes += 1
                if loop.time() - renewed >= self.ttl / 3:
                    if await self.store.keep_alive(self._lease) <= 0:
                        self._lease = 0
                        continue
                    renewed = loop.time()
                self.view.replace(_parse(await self.keys.items()))
            except ApiError as err:
                log.warning("presence: etcd unavailable", error=err.message)
            await asyncio.sleep(self.period)


def _parse(items: dict[str, bytes]) -> dict[str, tuple[set[str], set[str]]]:
    out: dict[str, tuple[set[str], set[str]]] = {}
    for master, raw in items.items():
        try:
            doc = json.loads(raw)
            out[master] = set(doc.get("connected", [])), set(doc.get("silent", []))
        except (ValueError, AttributeError):
            log.warning("presence: unreadable entry", master=master)
    return out
