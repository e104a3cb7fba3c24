"""Leader election of the control loops through an etcd lease (after client-go's leaderelection, on etcd's
own primitives).

The claim is the Lease object `kube-system/kyb-controller-manager` (`kybctl get leases`), created with a
create-if-absent transaction and attached to an etcd lease of `lease_seconds`:
- the holder keeps its etcd lease alive every `lease_seconds / 4` (LeaseKeepAlive: no key is written, so an
  idle cluster's leadership costs no etcd writes), from a thread of its own so that a busy event loop does not
  cost it the lead; when it has not renewed for `renew_deadline` it stops its loops itself, before etcd could
  expire the claim under it;
- etcd grants no lease shorter than 1.5 × its election timeout: when it grants more than `lease_seconds` (an etcd
  tuned for slow machines), that term's renewal interval and deadline grow in proportion, and the claim records
  the granted TTL. Standing down after 0.75 s on a lease that lives 8 s would only cost the lead for nothing;
- when the holder dies, etcd deletes the claim as its lease expires (the granted TTL after the last renewal);
  the others poll the claim every `retry_period` and the first create wins;
- the claim's create revision is the fence: every write of the leader's loops compares it in the same etcd
  transaction (master.store.fencing), so a deposed leader that has not noticed yet writes nothing.

`on_elected(fence)` starts the loops and returns the coroutine function that stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from kybernetes.core.api.errors import AlreadyExistsError, ApiError, NotFoundError
from kybernetes.core.api.kinds import kind_of
from kybernetes.core.api.objects import now_timestamp
from kybernetes.core.log import get_logger
from kybernetes.master.store.etcd import Store, key_for
from kybernetes.master.store.fencing import Fence
from kybernetes.proto import objects_pb2 as pb

log = get_logger("leader")

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kyb-controller-manager"


def lease_name(loops: Iterable[str], *, every: Iterable[str]) -> str:
    """The claim of a set of control loops: kyb-controller-manager for all of them; masters that split the
    loops between them (--controllers) elect a leader per set, as Kubernetes' scheduler and controller
    manager each have their own lease."""
    chosen = sorted(set(loops))
    return LEASE_NAME if chosen == sorted(set(every)) else "kyb-loops-" + "-".join(chosen)

Stop = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TermTiming:
    """One term's lease renewal: every `renew_interval` seconds; stand down after `renew_deadline` without one."""

    renew_interval: float
    renew_deadline: float


class LeaderElector:
    """Campaigns for the control loops' leadership forever; runs them while it holds it."""

    def __init__(self, *, store: Store, identity: str, on_elected: Callable[[Fence], Awaitable[Stop]],
                 name: str = LEASE_NAME, lease_seconds: int = 1, renew_deadline: float | None = None,
                 retry_period: float = 0.2) -> None:
        self.name = name
        self.store = store
        self.identity = identity
        self.on_elected = on_elected
        self.lease_seconds = lease_seconds
        self.renew_interval = lease_seconds / 4
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_seconds * 0.75
        self.retry_period = retry_period
        self.leading = asyncio.Event()
        self.terms = 0
        self._kind = kind_of(pb.Lease())
        self.key = key_for(self._kind, name, LEASE_NAMESPACE)

    def _claim(self, *, ttl: int) -> pb.Lease:
        lease = pb.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
        lease.metadata.name, lease.metadata.namespace = self.name, LEASE_NAMESPACE
        lease.metadata.uid = str(uuid.uuid4())
        now = now_timestamp()
        lease.metadata.creation_timestamp.CopyFrom(now)
        lease.spec.holder_identity = self.identity
        lease.spec.lease_duration_seconds = ttl
        lease.spec.acquire_time.CopyFrom(now)
        lease.spec.renew_time.CopyFrom(now)
        return lease

    async def run(self) -> None:
        while True:
            try:
                await self._campaign_once()
            except ApiError as err:  # etcd away: nothing to lead with; try again
                log.warning("leader election: etcd unavailable", error=err.message)
                await asyncio.sleep(self.retry_period)

    async def holder(self) -> str:
        """Who holds the leadership now ("" for nobody)."""
        try:
            lease = await self.store.get(self._kind, self.name, LEASE_NAMESPACE)
        except NotFoundError:
            return ""
        assert isinstance(lease, pb.Lease)
        return lease.spec.holder_identity

    async def _campaign_once(self) -> None:
        # A standby only reads until the claim is free: granting a lease is a raft write, reading is not.
        while await self.holder():
            await asyncio.sleep(self.retry_period)
        granted = await self.store.grant(self.lease_seconds)
        lease_id = granted.id
        try:
            created = await self.store.create(self._claim(ttl=granted.ttl), lease=lease_id)
        except AlreadyExistsError:
            with contextlib.suppress(ApiError):
                await self.store.revoke_lease(lease_id)
            await asyncio.sleep(self.retry_period)
            return
        except BaseException:
            with contextlib.suppress(ApiError):
                await self.store.revoke_lease(lease_id)
            raise
        fence = Fence(key=self.key, create_revision=int(created.metadata.resource_version))
        self.terms += 1
        log.info("elected leader of the control loops", lease=self.name, holder=self.identity, term=self.terms,
                 fence=fence.create_revision)
        timing = self.term_timing(granted.ttl)
        if granted.ttl != self.lease_seconds:
            log.info("etcd granted a longer leadership lease", lease=self.name, asked=self.lease_seconds,
                     granted=granted.ttl, renew_interval=timing.renew_interval, renew_deadline=timing.renew_deadline)
        stop = await self.on_elected(fence)
        self.leading.set()
        try:
            await self._hold(lease_id, timing)
        finally:
            self.leading.clear()
            await stop()
            log.warning("stopped leading the control loops", holder=self.identity)
            with contextlib.suppress(ApiError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.store.revoke_lease(lease_id), timing.renew_interval)

    def term_timing(self, granted_ttl: int) -> TermTiming:
        """How often a term renews and when it gives up, scaled to the TTL etcd granted (never below ours)."""
        scale = max(granted_ttl, self.lease_seconds) / self.lease_seconds
        return TermTiming(renew_interval=self.renew_interval * scale, renew_deadline=self.renew_deadline * scale)

    async def _hold(self, lease_id: int, timing: TermTiming) -> None:
        """Lead while the lease keeper (a thread: master.store.etcd.LeaseKeeper) renews the lease; stop when etcd
        says it is gone, or when no renewal succeeded for the term's renew deadline."""
        keeper = self.store.lease_keeper(lease_id, interval=timing.renew_interval, deadline=timing.renew_deadline)
        keeper.start()
        try:
            while True:
                await asyncio.sleep(timing.renew_interval / 2)
                if keeper.gone:
                    log.warning("leadership lease expired")
                    return
                late = time.monotonic() - keeper.renewed_at
                if late > timing.renew_deadline:
                    log.warning("leadership not renewed in time", seconds=round(late, 2))
                    return
        finally:
            await asyncio.get_running_loop().run_in_executor(None, keeper.stop)
