"""Node presence shared between masters: which Nodes hold a stream to which master.

A kubelet talks to one master; the leader's node lifecycle controller must not take a Node whose stream is on
another master for a silent one. Each master publishes the Nodes connected to it (and those of them silent
for longer than the grace period, a kubelet starved while its stream stays open) as one key,
`/kybernetes/presence/<master identity>`, attached to an etcd lease of its own:

- it writes only when that set changes (connects, disconnects, a Node falling silent or speaking again), so
  an idle cluster costs no etcd writes for presence: heartbeats stay in memory, and the lease is kept alive
  without writing (LeaseKeepAlive);
- when a master dies its key goes with its lease (`ttl` seconds), and its Nodes count as silent from then on:
  their kubelets have the grace period to reconnect to another master;
- the Nodes whose stream broke on it (keepalive: a power cut, a cut cable; not a kubelet that said Goodbye)
  are published as lost, so that the leader takes them for lost at once too, as it does for its own.

Every master reads the others' keys every `period` (reads, not writes) into a `PresenceView`, which
`NodeLiveness.silent_for` consults (master.nodelink.liveness). The key also names the master's API address:
logs and exec of a pod whose Node is on another master are relayed there (master.nodelink.podapi).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from kybernetes.core.api.errors import ApiError
from kybernetes.core.log import get_logger
from kybernetes.master.store.etcd import LeaseGoneError, RawKeys, Store

log = get_logger("presence")

AREA = "presence"


class PresenceView:
    """What the other masters publish: their connected and silent Nodes, and when a Node left them."""

    def __init__(self, *, identity: str, clock: Callable[[], float]) -> None:
        self.identity = identity
        self._clock = clock
        self._connected: dict[str, set[str]] = {}  # master -> Nodes
        self._silent: dict[str, set[str]] = {}
        self._lost: dict[str, set[str]] = {}  # master -> Nodes whose stream broke there
        self._lost_at: dict[str, float] = {}  # Node -> when another master first published it lost
        self._addresses: dict[str, str] = {}  # master -> its API address (logs and exec are relayed there)
        self._gone_at: dict[str, float] = {}  # Node -> when it last disappeared from every other master

    def replace(self, published: dict[str, Published]) -> None:
        now = self._clock()
        before = self.present_elsewhere()
        self._connected = {m: p.connected for m, p in published.items() if m != self.identity}
        self._silent = {m: p.silent for m, p in published.items() if m != self.identity}
        lost_before = set().union(*self._lost.values()) if self._lost else set()
        self._lost = {m: p.lost for m, p in published.items() if m != self.identity}
        lost_now = set().union(*self._lost.values()) if self._lost else set()
        for node in lost_now - lost_before:
            self._lost_at[node] = now
        for node in lost_before - lost_now:
            self._lost_at.pop(node, None)
        self._addresses = {m: p.address for m, p in published.items() if m != self.identity and p.address}
        for node in before - self.present_elsewhere():
            self._gone_at[node] = now

    def present_elsewhere(self) -> set[str]:
        """Nodes with a live stream on another master, not silent there."""
        out: set[str] = set()
        for master, nodes in self._connected.items():
            out |= nodes - self._silent.get(master, set())
        return out

    def has_other_masters(self) -> bool:
        """Whether another master publishes its presence (a kubelet whose stream broke may be moving there)."""
        return bool(self._connected)

    def is_present_elsewhere(self, node: str) -> bool:
        return any(node in nodes and node not in self._silent.get(master, ())
                   for master, nodes in self._connected.items())

    def gone_at(self, node: str) -> float | None:
        return self._gone_at.get(node)

    def lost_elsewhere_at(self, node: str) -> float | None:
        """When another master published that this Node's stream broke there (None: no master says so, or it
        is on another master now)."""
        if node not in self._lost_at or self.is_present_elsewhere(node):
            return None
        return self._lost_at[node]

    def master_of(self, node: str) -> str | None:
        """The API address of another master that holds a stream of this Node (None: no other master has it)."""
        for master, nodes in self._connected.items():
            if node in nodes and master in self._addresses:
                return self._addresses[master]
        return None


@dataclass(frozen=True, slots=True)
class Published:
    """One master's presence key: its connected Nodes, those of them silent, and its API address."""

    connected: set[str]
    silent: set[str]
    address: str = ""
    lost: set[str] = field(default_factory=set)


class Presence:
    """Publishes this master's Nodes and reads the others' (an actor body: `run`)."""

    def __init__(self, *, store: Store, identity: str, connected: Callable[[], set[str]],
                 silent: Callable[[], set[str]], view: PresenceView, address: str = "",
                 lost: Callable[[], set[str]] = set, ttl: int = 2, period: float = 0.25) -> None:
        self.keys = RawKeys(store, AREA)
        self.store = store
        self.identity = identity
        self.address = address
        self._lost = lost
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
        published: tuple[list[str], list[str], list[str]] | None = None
        renewed = 0.0
        while True:
            try:
                if self._lease == 0:
                    self._lease = await self.store.grant_lease(self.ttl)
                    published = None
                now = sorted(self._connected()), sorted(self._silent()), sorted(self._lost())
                if now != published:
                    doc = {"connected": now[0], "silent": now[1], "lost": now[2], "address": self.address}
                    await self.keys.put(self.identity, json.dumps(doc).encode(), lease=self._lease)
                    published = now
                    self.writes += 1
                if loop.time() - renewed >= self.ttl / 3:
                    if await self.store.keep_alive(self._lease) <= 0:
                        self._lease = 0
                        continue
                    renewed = loop.time()
                self.view.replace(_parse(await self.keys.items()))
            except LeaseGoneError:
                # Our lease expired (etcd was out of reach longer than its TTL): take a new one and publish again.
                log.warning("presence: lease expired, publishing again with a new one")
                self._lease = 0
                continue
            except ApiError as err:
                log.warning("presence: etcd unavailable", error=err.message)
            await asyncio.sleep(self.period)


def _parse(items: dict[str, bytes]) -> dict[str, Published]:
    out: dict[str, Published] = {}
    for master, raw in items.items():
        try:
            doc = json.loads(raw)
            out[master] = Published(connected=set(doc.get("connected", [])), silent=set(doc.get("silent", [])),
                                    address=str(doc.get("address", "")), lost=set(doc.get("lost", [])))
        except (ValueError, AttributeError):
            log.warning("presence: unreadable entry", master=master)
    return out
