"""The proxy actor: the newest ServiceSync from the master becomes the Node's rules.

Syncs arrive in the actor's mailbox; only the newest matters, so the actor
drains the mailbox and applies once. Every apply rebuilds all of our rules
in one commit (see iptables.py), so a restarted proxy ends with exactly the
rules a fresh one would have, and the old ones serve until then.

An Endpoints address that no rule may carry is left out by the apply (with a
warning); the proxy also reports it as a Warning Event on the Endpoints
(reason InvalidEndpoint) when it has an event recorder, once per address for
as long as the address stays, not once per sync.
"""

from __future__ import annotations

import asyncio

from kybernetes.core.machinery.actors import Actor
from kybernetes.kubelet.events import WARNING, EventRecorder
from kybernetes.kubelet.proxy.iptables import Iptables
from kybernetes.kubelet.proxy.rules import screen_endpoints
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb


class ServiceProxy(Actor):
    """Programs iptables from ServiceSync messages told to it."""

    name = "proxy"

    def __init__(self, *, iptables: Iptables | None = None, events: EventRecorder | None = None) -> None:
        super().__init__()
        self.iptables = iptables or Iptables()
        self.events = events
        self.applied = ""
        self.applied_event = asyncio.Event()
        self._reported: set[tuple[str, str, str]] = set()  # (namespace, name, ip) already in an Event

    async def run(self) -> None:
        while True:
            sync: node_pb2.ServiceSync = await self.mailbox.get()
            while not self.mailbox.empty():
                sync = self.mailbox.get_nowait()
            self._report_skipped(list(sync.endpoints))
            self.applied = await self.iptables.apply(list(sync.services), list(sync.endpoints))
            self.applied_event.set()
            self.log.debug("rules applied", services=len(sync.services))

    def _report_skipped(self, endpoints: list[pb.Endpoints]) -> None:
        _, skipped = screen_endpoints(endpoints)
        now = {(bad.namespace, bad.name, bad.ip) for bad in skipped}
        if self.events is not None:
            for bad in skipped:
                if (bad.namespace, bad.name, bad.ip) in self._reported:
                    continue
                ref = pb.ObjectReference(kind="Endpoints", api_version="v1", namespace=bad.namespace, name=bad.name)
                self.events.object_event(ref, type=WARNING, reason="InvalidEndpoint",
                                         message=f"endpoint {bad.ip} skipped: {bad.reason}; the other endpoints "
                                                 "are programmed")
        self._reported = now
