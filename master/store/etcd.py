"""The state store: Kybernetes objects as protobuf values in etcd.

Keys are `/registry/<resource>/<namespace>/<name>` (cluster-scoped kinds drop
the namespace). An object's resourceVersion is its key's mod_revision, so the
store never writes it; it is filled in on every read. Writes that must not
lose an update are etcd transactions comparing mod_revision, which makes
optimistic concurrency exact.

We talk to etcd through aetcd's generated etcd stubs on a channel of our own (mutual TLS with the etcd
client certificate, master.store.etcdtls; aetcd's client has no TLS), and use the
raw KV/Watch RPCs for transactions and watches because we need the response
headers (revisions) and the compaction signal. Several endpoints go into one
gRPC channel with pick_first, so the channel fails over when a member dies.

A request etcd refuses for its size (over --max-request-bytes, or over its gRPC
message limit) is the caller's object, not our bug: `TooLargeError`, an
InvalidError (INVALID_ARGUMENT). The API refuses objects over 1 MiB before they
get here; this covers what is written without that check.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from kybernetes.core.api.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    ExpiredError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from kybernetes.core.api.kinds import ApiObject, Kind, kind_of
from kybernetes.core.log import get_logger
from kybernetes.master.store.etcdtls import EtcdClientTLS
from kybernetes.master.store.fencing import FencedError, current_fence

log = get_logger("store")

_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 1000,  # also the connect timeout: keep it generous
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 3_000,
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
}


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def key_for(kind: Kind, name: str, namespace: str = "") -> bytes:
    """The etcd key of one object."""
    if kind.namespaced:
        return f"/registry/{kind.resource}/{namespace}/{name}".encode()
    return f"/registry/{kind.resource}/{name}".encode()


def prefix_for(kind: Kind, namespace: str = "") -> bytes:
    """The key prefix of every object of a kind, or of one namespace's objects."""
    if kind.namespaced and namespace:
        return f"/registry/{kind.resource}/{namespace}/".encode()
    return f"/registry/{kind.resource}/".encode()


class LeaseKeeper:
    """Keeps an etcd lease alive from a thread of its own, every `interval` seconds.

    The leadership's lease is short (1 s): renewing it from the event loop fails when the loop is busy for
    longer than the lease's slack, as it is under a heavy load on two cores, and the leadership then moves for
    nothing. A thread on a blocking channel is scheduled by the OS (it needs the GIL only briefly), like
    client-go's renew goroutine. The owner reads `renewed_at` (monotonic) and `gone` (etcd said the lease
    expired) and stops leading when the renewals stop; a paused or partitioned process still loses the lease.
    """

    def __init__(self, *, channel: grpc.Channel, lease_id: int, interval: float, deadline: float) -> None:
        self.channel = channel
        self.lease_id = lease_id
        self.interval = interval
        self.deadline = deadline
        self.renewed_at = time.monotonic()
        self.gone = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-keeper-{lease_id:x}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.channel.close()  # ends a renewal in flight
        self._thread.join(timeout=self.deadline + 1)

    def _run(self) -> None:
        stub = rpc.LeaseStub(self.channel)
        while not self._stop.wait(self.interval):
            try:
                for resp in stub.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=self.lease_id)]),
                                                timeout=self.deadline):
                    if resp.TTL <= 0:
                        self.gone = True
                        return
                    self.renewed_at = time.monotonic()
                    break
            except (grpc.RpcError, ValueError):  # ValueError: the channel was closed by stop()
                continue


class LeaseGoneError(ApiError):
    """A write named an etcd lease that has expired or was revoked (a key attached to it cannot be written)."""


class TooLargeError(InvalidError):
    """etcd refused a request for its size (INVALID_ARGUMENT: the object is the caller's)."""


def _too_large(err: grpc.RpcError) -> bool:
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else "") or ""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED or "request is too large" in details


@dataclass(frozen=True, slots=True)
class GrantedLease:
    """An etcd lease as granted: etcd raises a TTL below its shortest (1.5 × its election timeout)."""

    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One change seen by a watch: ADDED, MODIFIED or DELETED, with the object after (or before, for DELETED)."""

    type: str
    object: ApiObject
    revision: int
    previous: ApiObject | None = None


def _decode(kind: Kind, kv: Any) -> ApiObject:
    obj = kind.message()
    obj.ParseFromString(kv.value)
    obj.metadata.resource_version = str(kv.mod_revision)
    return obj


def _encode(obj: ApiObject) -> bytes:
    # resourceVersion is etcd's; never stored in the value.
    rv = obj.metadata.resource_version
    obj.metadata.resource_version = ""
    try:
        return obj.SerializeToString(deterministic=True)
    finally:
        obj.metadata.resource_version = rv


def _unavailable(err: grpc.RpcError) -> bool:
    code = err.code() if hasattr(err, "code") else None
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class Store:
    """Typed CRUD and watch of Kybernetes objects in etcd."""

    def __init__(self, *, endpoints: Sequence[str], tls: EtcdClientTLS | None = None, timeout: float = 5.0,
                 tls_name: str | None = None) -> None:
        self._endpoints = list(endpoints)
        self._tls = tls
        # The name every member's serving certificate must carry; default: the first endpoint's host. The
        # embedded members' certificates all carry 127.0.0.1 and localhost (master.store.etcdtls).
        self._tls_name = tls_name
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._watch: Any = None
        self._maint: Any = None
        self._lease: Any = None
        self._cluster: Any = None
        # Set by check_quorum when the member we talk to sees no leader: calls then fail at once, saying why,
        # instead of each waiting for its timeout.
        self.quorum_lost = ""

    async def connect(self) -> None:
        """Open the channel (lazy: etcd may still be down; calls then fail UNAVAILABLE)."""
        target = await _grpc_target(self._endpoints)
        options: list[tuple[str, int | str]] = list(_CHANNEL_OPTIONS.items())
        if self._tls is None:
            if any(ep.startswith("https://") for ep in self._endpoints):
                raise UnavailableError("etcd: an https:// endpoint needs the etcd client certificate files")
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            ca, cert, key = self._tls.read()
            name = self._tls_name or urlsplit(self._endpoints[0]).hostname or "127.0.0.1"
            options.append(("grpc.ssl_target_name_override", name))
            self._channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert),
                                                    options=options)
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._cluster = rpc.ClusterStub(self._channel)

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _call(self, method: Any, request: Any) -> Any:
        if self.quorum_lost:
            raise UnavailableError(self.quorum_lost)
        try:
            return await method(request, timeout=self._timeout)
        except grpc.RpcError as err:
            if _unavailable(err):
                raise UnavailableError(f"etcd unavailable: {err.details() or err.code().name}") from err
            if "requested lease not found" in (err.details() or ""):
                raise LeaseGoneError(f"etcd error: {err.details()}") from err
            if _too_large(err):
                raise TooLargeError(f"the request is too large for etcd: {err.details()}") from err
            raise ApiError(f"etcd error: {err.details()}") from err

    async def _txn(self, txn: Any) -> Any:
        """Run a transaction; under a fence (master.store.fencing) only while the fence's leadership holds."""
        fence = current_fence()
        if fence is None:
            return await self._call(self._kv.Txn, txn)
        txn.compare.append(rpc.Compare(key=fence.key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE,
                                       create_revision=fence.create_revision))
        resp = await self._call(self._kv.Txn, txn)
        if not resp.succeeded:
            held = await self._call(self._kv.Range, rpc.RangeRequest(key=fence.key))
            if not held.kvs or held.kvs[0].create_revision != fence.create_revision:
                raise FencedError("not the leader any more: the write was refused (fenced) and nothing changed")
        return resp

    # ------------------------------------------------------------------ reads

    async def get(self, kind: Kind, name: str, namespace: str = "") -> ApiObject:
        """One object, or NotFoundError."""
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=key_for(kind, name, namespace)))
        if not resp.kvs:
            raise NotFoundError(f'{kind.resource} "{name}" not found')
        return _decode(kind, resp.kvs[0])

    async def list(self, kind: Kind, namespace: str = "") -> tuple[list[ApiObject], int]:
        """Every object of a kind (in one namespace, or all), and the store revision of the read."""
        prefix = prefix_for(kind, namespace)
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=prefix, range_end=_prefix_end(prefix)))
        return [_decode(kind, kv) for kv in resp.kvs], resp.header.revision

    async def list_page(self, kind: Kind, namespace: str = "", *, limit: int, start: bytes = b"",
                        revision: int = 0) -> tuple[builtins.list[ApiObject], int, bytes]:
        """At most `limit` objects of a kind from key `start` on (the prefix's first key when empty), read at
        `revision` (0: now). Returns the objects, the revision read, and the key the next page starts at (empty
        when there is none). A revision etcd has compacted is ExpiredError."""
        prefix = prefix_for(kind, namespace)
        try:
            resp = await self._call(self._kv.Range, rpc.RangeRequest(
                key=start or prefix, range_end=_prefix_end(prefix), limit=limit, revision=revision))
        except ApiError as err:
            if "compacted" in err.message:
                raise ExpiredError(f"revision {revision} has been compacted") from err
            raise
        following = resp.kvs[-1].key + b"\x00" if resp.more and resp.kvs else b""
        # etcd's header names its current revision, not the one read at: a later page keeps the first's.
        return [_decode(kind, kv) for kv in resp.kvs], revision or resp.header.revision, following

    async def revision(self) -> int:
        """The store's current revision."""
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=b"/registry/", range_end=b"/registry0",
                                                                  count_only=True))
        return resp.header.revision

    # ----------------------------------------------------------------- writes

    async def create(self, obj: ApiObject, *, lease: int = 0) -> ApiObject:
        """Write a new object; AlreadyExistsError if its key is taken. Returns it with its resourceVersion."""
        kind = kind_of(obj)
        key = key_for(kind, obj.metadata.name, obj.metadata.namespace)
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=_encode(obj), lease=lease))],
        )
        try:
            resp = await self._txn(txn)
        except TooLargeError as err:
            raise TooLargeError(f'{kind.resource} "{obj.metadata.name}": {err.message}') from err
        if not resp.succeeded:
            raise AlreadyExistsError(f'{kind.resource} "{obj.metadata.name}" already exists')
        out = type(obj)()
        out.CopyFrom(obj)
        out.metadata.resource_version = str(resp.header.revision)
        return out

    async def create_many(self, items: Sequence[tuple[ApiObject, int]]) -> builtins.list[ApiObject | ApiError]:
        """Write several new objects (each with its lease) in one transaction when none of their keys is
        taken and etcd takes the transaction; otherwise (a name taken, or the whole too large for one
        request) each is created on its own, so one bad object fails alone. One result per item, in order:
        the stored object, or the error its own create gave. Objects written together share one revision,
        so this is only for best-effort kinds that nothing resumes a watch on by exact version (Events)."""
        if len(items) == 1:
            obj, lease = items[0]
            try:
                return [await self.create(obj, lease=lease)]
            except ApiError as err:
                return [err]
        keys = [key_for(kind_of(obj), obj.metadata.name, obj.metadata.namespace) for obj, _ in items]
        if len(set(keys)) == len(keys):
            txn = rpc.TxnRequest(
                compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE,
                                     create_revision=0) for key in keys],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=_encode(obj), lease=lease))
                         for key, (obj, lease) in zip(keys, items, strict=True)],
            )
            try:
                resp = await self._txn(txn)
            except TooLargeError:
                resp = None
            if resp is not None and resp.succeeded:
                created: list[ApiObject | ApiError] = []
                for obj, _ in items:
                    out = type(obj)()
                    out.CopyFrom(obj)
                    out.metadata.resource_version = str(resp.header.revision)
                    created.append(out)
                return created
        results = await asyncio.gather(*(self.create(obj, lease=lease) for obj, lease in items),
                                       return_exceptions=True)
        out_list: list[ApiObject | ApiError] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ApiError):
                raise result
            out_list.append(result)
        return out_list

    async def update(self, obj: ApiObject, *, expected_revision: int) -> ApiObject:
        """Replace an object if its key's mod_revision is still `expected_revision`; else Conflict/NotFound."""
        kind = kind_of(obj)
        key = key_for(kind, obj.metadata.name, obj.metadata.namespace)
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                                 mod_revision=expected_revision)],
            # ignore_lease keeps the key's lease: an Event updated with a new count still expires.
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=_encode(obj), ignore_lease=True))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key, count_only=True))],
        )
        resp = await self._txn(txn)
        if not resp.succeeded:
            self._raise_precondition(kind, obj.metadata.name, resp)
        out = type(obj)()
        out.CopyFrom(obj)
        out.metadata.resource_version = str(resp.header.revision)
        return out

    async def delete(self, kind: Kind, name: str, namespace: str = "", *,
                     expected_revision: int | None = None) -> ApiObject:
        """Remove an object's key, optionally only at `expected_revision`. Returns the last state."""
        key = key_for(kind, name, namespace)
        compare = [rpc.Compare(key=key, result=rpc.Compare.GREATER, target=rpc.Compare.CREATE, create_revision=0)]
        if expected_revision is not None:
            compare = [rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                                   mod_revision=expected_revision)]
        txn = rpc.TxnRequest(
            compare=compare,
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, prev_kv=True))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key, count_only=True))],
        )
        resp = await self._txn(txn)
        if not resp.succeeded:
            self._raise_precondition(kind, name, resp)
        prev = resp.responses[0].response_delete_range.prev_kvs
        if not prev:
            raise NotFoundError(f'{kind.resource} "{name}" not found')
        obj = _decode(kind, prev[0])
        obj.metadata.resource_version = str(resp.header.revision)
        return obj

    @staticmethod
    def _raise_precondition(kind: Kind, name: str, resp: Any) -> None:
        exists = resp.responses and resp.responses[0].response_range.count > 0
        if not exists:
            raise NotFoundError(f'{kind.resource} "{name}" not found')
        raise ConflictError(f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                       "modified; please apply your changes to the latest version and try again")

    async def compact(self, revision: int) -> None:
        """Compact etcd's history up to `revision` (tests and housekeeping)."""
        await self._call(self._kv.Compact, rpc.CompactionRequest(revision=revision, physical=True))

    async def grant_lease(self, ttl: int) -> int:
        """A new etcd lease (Events expire through one)."""
        return (await self.grant(ttl)).id

    async def grant(self, ttl: int) -> GrantedLease:
        """A new etcd lease and the TTL etcd gave it: at least its shortest (1.5 × the election timeout)."""
        resp = await self._call(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl))
        return GrantedLease(id=int(resp.ID), ttl=int(resp.TTL))

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease once; its remaining TTL in seconds (0: it has expired). No key is written."""
        async def one() -> AsyncIterator[Any]:
            yield rpc.LeaseKeepAliveRequest(ID=lease_id)

        call = self._lease.LeaseKeepAlive(one(), timeout=self._timeout)
        try:
            async for resp in call:
                return int(resp.TTL)
        except grpc.RpcError as err:
            if _unavailable(err):
                raise UnavailableError(f"etcd unavailable: {err.details() or err.code().name}") from err
            raise ApiError(f"etcd error: {err.details()}") from err
        finally:
            call.cancel()
        return 0

    def lease_keeper(self, lease_id: int, *, interval: float, deadline: float) -> LeaseKeeper:
        """A thread that keeps one lease alive on a blocking channel of its own (see LeaseKeeper)."""
        addrs = []
        for ep in self._endpoints:
            parts = urlsplit(ep if "://" in ep else f"http://{ep}")
            host, port = parts.hostname or "127.0.0.1", parts.port or 2379
            infos = socket.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
            addrs.append(f"{infos[0][4][0]}:{port}")
        target = "ipv4:" + ",".join(addrs)
        options: list[tuple[str, int | str]] = list(_CHANNEL_OPTIONS.items())
        if self._tls is None:
            channel = grpc.insecure_channel(target, options=options)
        else:
            ca, cert, key = self._tls.read()
            options.append(("grpc.ssl_target_name_override",
                            self._tls_name or urlsplit(self._endpoints[0]).hostname or "127.0.0.1"))
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert), options=options)
        return LeaseKeeper(channel=channel, lease_id=lease_id, interval=interval, deadline=deadline)

    async def revoke_lease(self, lease_id: int) -> None:
        """End a lease now: the keys attached to it are deleted."""
        await self._call(self._lease.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease_id))

    async def check_quorum(self, *, timeout: float = 1.0) -> bool:
        """Ask the member we talk to whether it has a leader (a local answer: no quorum needed). Without one,
        more than half the members are down or cut off: every call fails at once with UNAVAILABLE naming the
        lost quorum until a leader is back. True while there is a leader; an unreachable member is not a lost
        quorum (the calls then fail on their own)."""
        try:
            status = await self._maint.Status(rpc.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            self.quorum_lost = ""
            return False
        if status.leader:
            if self.quorum_lost:
                log.info("etcd quorum is back", leader=f"{status.leader:x}")
            self.quorum_lost = ""
            return True
        if not self.quorum_lost:
            log.warning("etcd lost its quorum", member=f"{status.header.member_id:x}")
        self.quorum_lost = (f"etcd has lost its quorum: member {status.header.member_id:x} sees no leader (more "
                            "than half of the etcd members are down or cut off); the API refuses reads and writes "
                            "until a majority is back")
        return False

    # ------------------------------------------------------------------ members (masters with embedded etcd)

    async def members(self) -> builtins.list[EtcdMember]:
        """The etcd cluster's members."""
        resp = await self._call(self._cluster.MemberList, rpc.MemberListRequest())
        return [_member(m) for m in resp.members]

    async def add_member(self, peer_url: str, *, learner: bool = True) -> tuple[int, builtins.list[EtcdMember]]:
        """Add a member (a learner by default: no vote until it is promoted); its id and every member."""
        resp = await self._call(self._cluster.MemberAdd, rpc.MemberAddRequest(peerURLs=[peer_url],
                                                                              isLearner=learner))
        return int(resp.member.ID), [_member(m) for m in resp.members]

    async def promote_member(self, member_id: int) -> None:
        """Make a learner that has caught up a voting member (etcd refuses while it lags)."""
        await self._call(self._cluster.MemberPromote, rpc.MemberPromoteRequest(ID=member_id))

    async def remove_member(self, member_id: int) -> None:
        await self._call(self._cluster.MemberRemove, rpc.MemberRemoveRequest(ID=member_id))

    # ------------------------------------------------------------------ watch

    async def watch(self, kind: Kind, namespace: str = "", *, after: int) -> AsyncIterator[builtins.list[StoreEvent]]:
        """Every change to a kind after revision `after`, in order, batched per etcd response.

        The stream survives etcd outages and member failover: it re-opens from
        the last revision it delivered, so nothing is lost or repeated. A
        compacted start gives ExpiredError.
        """
        prefix = prefix_for(kind, namespace)
        last = after
        backoff = 0.05
        while True:
            requests: asyncio.Queue[Any] = asyncio.Queue()
            requests.put_nowait(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                key=prefix, range_end=_prefix_end(prefix), start_revision=last + 1, prev_kv=True,
                progress_notify=True)))

            async def request_iter(q: asyncio.Queue[Any] = requests) -> AsyncIterator[Any]:
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    yield item

            call = self._watch.Watch(request_iter())
            try:
                async for resp in call:
                    if resp.compact_revision:
                        raise ExpiredError(f"resource version {after} too old, re-list (compacted at "
                                     f"{resp.compact_revision})")
                    if resp.canceled:
                        raise ApiError(f"etcd canceled the watch: {resp.cancel_reason}")
                    backoff = 0.05
                    if not resp.events:
                        continue
                    batch = []
                    for ev in resp.events:
                        batch.append(_event(kind, ev))
                    last = resp.events[-1].kv.mod_revision
                    yield batch
            except grpc.RpcError as err:
                if not _unavailable(err):
                    raise ApiError(f"etcd watch error: {err.details()}") from err
                log.warning("etcd watch interrupted, resuming", resource=kind.resource, after=last,
                            error=err.code().name)
            finally:
                requests.put_nowait(None)
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


def _event(kind: Kind, ev: Any) -> StoreEvent:
    if ev.type == rpc.Event.DELETE:
        obj = kind.message()
        if ev.prev_kv.value:
            obj.ParseFromString(ev.prev_kv.value)
        obj.metadata.resource_version = str(ev.kv.mod_revision)
        return StoreEvent("DELETED", obj, ev.kv.mod_revision)
    obj = _decode(kind, ev.kv)
    prev = _decode(kind, ev.prev_kv) if ev.prev_kv.value else None
    etype = "ADDED" if ev.kv.create_revision == ev.kv.mod_revision else "MODIFIED"
    return StoreEvent(etype, obj, ev.kv.mod_revision, prev)


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One member of the etcd cluster, as MemberList reports it (a member added but not started has no name)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool


def _member(m: Any) -> EtcdMember:
    return EtcdMember(id=int(m.ID), name=m.name, peer_urls=tuple(m.peerURLs), client_urls=tuple(m.clientURLs),
                      learner=bool(m.isLearner))


async def _grpc_target(endpoints: Sequence[str]) -> str:
    """Turn http://h:p URLs into one gRPC target listing every member's address (for failover)."""
    loop = asyncio.get_running_loop()
    addrs = []
    for ep in endpoints:
        parts = urlsplit(ep if "://" in ep else f"http://{ep}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 2379
        infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
        addrs.append(f"{infos[0][4][0]}:{port}")
    return "ipv4:" + ",".join(addrs)


class Allocations:
    """Unique claims in etcd (pod CIDRs, cluster IPs, nodePorts): a create-if-absent transaction per claim.

    Two masters or two requests racing for the same value can't both win, because
    etcd decides. Keys live under /registry/allocations/<pool>/<value>, holding
    the owner's name.
    """

    def __init__(self, store: Store, pool: str) -> None:
        self.store = store
        self.prefix = f"/registry/allocations/{pool}/".encode()

    async def claim(self, value: str, owner: str) -> bool:
        """Take `value` for `owner`; True if it is now (or already was) theirs."""
        return (await self.take(value, owner))[1] == owner

    async def take(self, value: str, owner: str) -> tuple[bool, str]:
        """Take `value` for `owner`: (whether this call claimed it, who holds it now).

        (False, owner) means it already was theirs: a caller that undoes its work on failure must not
        release what it did not claim."""
        key = self.prefix + value.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=owner.encode()))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        resp = await self.store._txn(txn)
        if resp.succeeded:
            return True, owner
        kvs = resp.responses[0].response_range.kvs
        return False, kvs[0].value.decode() if kvs else ""

    async def owners(self) -> dict[str, str]:
        """Every claimed value and its owner."""
        resp = await self.store._call(self.store._kv.Range,
                                      rpc.RangeRequest(key=self.prefix, range_end=_prefix_end(self.prefix)))
        return {kv.key[len(self.prefix):].decode(): kv.value.decode() for kv in resp.kvs}

    async def release(self, value: str, owner: str) -> None:
        """Give `value` back, if `owner` holds it."""
        key = self.prefix + value.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE, value=owner.encode())],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        await self.store._txn(txn)


class RawKeys:
    """Values under one etcd prefix that are not API objects (the sealed CA, join tokens): bytes by name.

    Keys are `/kybernetes/<area>/<name>`, outside `/registry/`, so no list or watch of objects ever sees them.
    """

    def __init__(self, store: Store, area: str) -> None:
        self.store = store
        self.prefix = f"/kybernetes/{area}/".encode()

    async def get(self, name: str) -> bytes | None:
        resp = await self.store._call(self.store._kv.Range, rpc.RangeRequest(key=self.prefix + name.encode()))
        return bytes(resp.kvs[0].value) if resp.kvs else None

    async def create(self, name: str, value: bytes) -> bool:
        """Write `value` unless the key exists; True when this call wrote it."""
        key = self.prefix + name.encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))],
        )
        resp = await self.store._txn(txn)
        return bool(resp.succeeded)

    async def put(self, name: str, value: bytes, *, lease: int = 0) -> None:
        """Write `value` (attached to `lease`, when given: the key goes when the lease does)."""
        await self.store._call(self.store._kv.Put, rpc.PutRequest(key=self.prefix + name.encode(), value=value,
                                                                  lease=lease))

    async def delete(self, name: str) -> bool:
        """True when the key existed."""
        resp = await self.store._call(self.store._kv.DeleteRange,
                                      rpc.DeleteRangeRequest(key=self.prefix + name.encode()))
        return bool(resp.deleted)

    async def items(self) -> dict[str, bytes]:
        resp = await self.store._call(self.store._kv.Range,
                                      rpc.RangeRequest(key=self.prefix, range_end=_prefix_end(self.prefix)))
        return {kv.key[len(self.prefix):].decode(): bytes(kv.value) for kv in resp.kvs}
