"""The proxy actor: the newest ServiceSync from the master becomes the Node's rules.

Syncs arrive in the actor's mailbox; only the newest matters, so the actor
drains the mailbox and applies once. Every apply rebuilds all of our rules
in one commit (see iptables.py), so a restarted proxy ends with exactly the
rules a fresh one would have, and the old ones serve until then.
"""

from __future__ import annotations

import asyncio

from kybernetes.core.machinery.actors import Actor
from kybernetes.kubelet.proxy.iptables import Iptables
from kybernetes.proto import node_pb2


class ServiceProxy(Actor):
    """Programs iptables from ServiceSync messages told to it."""

    name = "proxy"

    def __init__(self, *, iptables: Iptables | None = None) -> None:
        super().__init__()
        self.iptables = iptables or Iptables()
        self.applied = ""
        self.applied_event = asyncio.Event()

    async def run(self) -> None:
        while True:
            sync: node_pb2.ServiceSync = await self.mailbox.get()
            while not self.mailbox.empty():
                sync = self.mailbox.get_nowait()
            self.applied = await self.iptables.apply(list(sync.services), list(sync.endpoints))
            self.applied_event.set()
            self.log.debug("rules applied", services=len(sync.services))
