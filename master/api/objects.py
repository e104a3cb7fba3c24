"""The object service: Create, Get, List, Update, UpdateStatus, Delete and Watch with Kubernetes' semantics.

This is the API server's logic, independent of gRPC so that the master's own
control loops can call it in-process (see `ctl.client.LocalClient`) while
kybctl and kubelets reach the same code through `master.api.grpc_service`.

Every write is defaulted, then validated, before it can reach etcd; invalid
input never reaches the store. Updates and deletes carry the resourceVersion
the caller read; the store's transaction checks it, so no update is lost.
A spec change bumps metadata.generation; status is written only by
UpdateStatus. Deletion of an object with finalizers, or of a pod bound to a
node, is two-step: the first delete sets deletionTimestamp, and the key goes
when the finalizers are gone or the kubelet confirms with a zero grace period.

Validation judges addresses against the cluster's pod range (`cluster_cidr`).
Unique values are claimed in etcd before the object is written and released
when it goes: a Service's clusterIP and nodePorts, a Node's podCIDR (so no two
Nodes route the same range, and a deleted Node's range is free again). A write
that fails after its claim gives back what it claimed, and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import secrets
import string
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from google.protobuf.message import Message

from kybernetes.core.api import kinds
from kybernetes.core.api.errors import ConflictError, ExpiredError, InvalidError, NotFoundError
from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.core.api.objects import copy_of, now_timestamp
from kybernetes.core.api.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.master.api.allocators import PodCIDRClaims, ServiceAllocator
from kybernetes.master.api.defaults import apply_defaults
from kybernetes.master.api.validation import ClusterNetwork, validate
from kybernetes.master.store.batch import CreateBatcher
from kybernetes.master.store.etcd import Store, key_for, prefix_for
from kybernetes.proto import objects_pb2 as pb

# How often an unconditional delete reads again when the object changed under it.
UNCONDITIONAL_ATTEMPTS = 10

log = get_logger("apiserver")

EVENT_TTL_SECONDS = 3600
# Events share a lease granted within this window (as kube-apiserver's lease manager does), so an
# Event costs one etcd write, not a lease grant plus a write; each lives between 1 h and 1 h + window.
EVENT_LEASE_REUSE_SECONDS = 60
_NAME_CHARS = string.ascii_lowercase + string.digits


class InvalidRequest(InvalidError, ValueError):
    """A request that can never succeed as sent (gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of an API watch."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: ApiObject | None  # None for BOOKMARK
    resource_version: str


def resolve_kind(resource: str) -> Kind:
    """The kind of a resource name; unknown names are InvalidRequest."""
    try:
        return kinds.lookup(resource)
    except kinds.UnknownKind as err:
        raise InvalidRequest(f"resource: Unsupported value: {resource!r}") from err


# etcd's revisions are int64: a larger version is no version etcd can have, and would not even fit its request.
_MAX_RV = 2**63 - 1


def _parse_rv(value: str, field: str = "metadata.resourceVersion") -> int:
    """A resourceVersion as etcd's revision: decimal digits only (no sign, space or `_`, which int() takes)."""
    if not (value.isascii() and value.isdigit()):
        raise InvalidRequest(f"{field}: Invalid value: {json.dumps(value[:64])}: must be a decimal integer")
    rv = int(value)
    if rv <= 0 or rv > _MAX_RV:
        raise InvalidRequest(f"{field}: Invalid value: {json.dumps(value[:64])}: must be between 1 and {_MAX_RV}")
    return rv


def _selectors(label_selector: str, field_selector: str) -> tuple[LabelSelector, FieldSelector]:
    """Both selectors parsed; one that does not parse is InvalidRequest naming labelSelector or fieldSelector."""
    try:
        labels = parse_label_selector(label_selector)
    except ValueError as err:
        raise InvalidRequest(f"labelSelector: Invalid value: {json.dumps(label_selector[:256])}: {err}") from err
    try:
        fields = parse_field_selector(field_selector)
    except ValueError as err:
        raise InvalidRequest(f"fieldSelector: Invalid value: {json.dumps(field_selector[:256])}: {err}") from err
    return labels, fields


def _spec_of(obj: ApiObject) -> bytes:
    """The part of an object whose change bumps generation (spec, or the whole body for spec-less kinds)."""
    for field in ("spec", "subsets"):
        if any(f.name == field for f in obj.DESCRIPTOR.fields):
            value = getattr(obj, field)
            if isinstance(value, Message):
                return value.SerializeToString(deterministic=True)
            return b"".join(v.SerializeToString(deterministic=True) for v in value)
    return b""


class ObjectService:
    """Kubernetes' API semantics over the etcd store."""

    def __init__(self, *, store: Store, service_cidr: str = "10.96.0.0/16",
                 cluster_cidr: str = "10.244.0.0/16") -> None:
        self.store = store
        self.network = ClusterNetwork.of(cluster_cidr=cluster_cidr)
        self.services = ServiceAllocator(store=store, service_cidr=service_cidr)
        self.pod_cidrs = PodCIDRClaims(store=store)
        self.event_writer = CreateBatcher(store=store)
        self._event_lease: tuple[int, float] | None = None  # (lease id, monotonic time granted)
        self._lease_lock = asyncio.Lock()

    async def _shared_event_lease(self) -> int:
        async with self._lease_lock:
            now = time.monotonic()
            if self._event_lease is None or now - self._event_lease[1] > EVENT_LEASE_REUSE_SECONDS:
                lease = await self.store.grant_lease(EVENT_TTL_SECONDS + EVENT_LEASE_REUSE_SECONDS)
                self._event_lease = (lease, now)
            return self._event_lease[0]

    # ---------------------------------------------------------------- create

    async def create(self, obj: ApiObject) -> ApiObject:
        """Default, validate and store a new object."""
        kind = kinds.kind_of(obj)
        obj = copy_of(obj)
        meta = obj.metadata
        if meta.resource_version:
            raise InvalidRequest("metadata.resourceVersion: Invalid value: "
                                 f"{meta.resource_version!r}: must be empty on create")
        if not meta.name and meta.generate_name:
            meta.name = meta.generate_name + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        if not kind.namespaced:
            meta.namespace = ""
        apply_defaults(obj)
        validate(obj, network=self.network)
        meta.uid = str(uuid.uuid4())
        meta.creation_timestamp.CopyFrom(now_timestamp())
        meta.ClearField("deletion_timestamp")
        meta.generation = 1
        if kind.kind in ("Pod", "ReplicaSet", "Deployment"):
            obj.ClearField("status")
        if isinstance(obj, pb.Pod):
            obj.status.phase = "Pending"
        lease = 0
        if kind.kind == "Event":
            lease = await self._shared_event_lease()
        claims = await self.services.allocate(obj) if isinstance(obj, pb.Service) else []
        node = obj if isinstance(obj, pb.Node) and obj.spec.pod_cidr else None
        cidr_claimed = node is not None and await self.pod_cidrs.claim(node)
        try:
            if kind.kind == "Event":
                created = await self.event_writer.create(obj, lease=lease)
            else:
                created = await self.store.create(obj, lease=lease)
        except Exception:
            await self.services.release_claims(ServiceAllocator.owner(obj), claims)
            if node is not None and cidr_claimed:
                await self.pod_cidrs.release(node.spec.pod_cidr, meta.name)
            raise
        log.debug("created", object=obj_ref(kind.resource, meta.name, meta.namespace))
        return created

    # ------------------------------------------------------------------ read

    async def get(self, resource: str, name: str, namespace: str = "") -> ApiObject:
        """One object."""
        kind = resolve_kind(resource)
        if not name:
            raise InvalidRequest("name: Required value")
        return await self.store.get(kind, name, self._ns(kind, namespace))

    async def list(self, resource: str, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "") -> tuple[list[ApiObject], str]:
        """Objects matching the selectors, and the list's resourceVersion."""
        kind = resolve_kind(resource)
        labels, fields = _selectors(label_selector, field_selector)
        items, rev = await self.store.list(kind, namespace if kind.namespaced else "")
        if not (labels.is_empty() and fields.is_empty()):
            items = [o for o in items if labels.matches(o.metadata.labels) and fields.matches(o)]
        return items, str(rev)

    async def list_page(self, resource: str, namespace: str = "", *, label_selector: str = "",
                        field_selector: str = "", limit: int = 0,
                        continue_token: str = "") -> tuple[builtins.list[ApiObject], str, str]:
        """Kubernetes' paged list: at most `limit` matching objects (0: all), the list's resourceVersion, and a
        continue token when more may follow. Every page of one list is read at the first page's revision, so
        together they are one consistent list; a token whose revision etcd has compacted is ExpiredError."""
        if limit < 0:
            raise InvalidRequest(f"limit: Invalid value: {limit}: must be greater than or equal to 0")
        kind = resolve_kind(resource)
        namespace = namespace if kind.namespaced else ""
        if not limit and not continue_token:
            items, rv = await self.list(resource, namespace, label_selector=label_selector,
                                        field_selector=field_selector)
            return items, rv, ""
        labels, fields = _selectors(label_selector, field_selector)
        prefix = prefix_for(kind, namespace)
        revision, start = 0, b""
        if continue_token:
            revision, start = decode_continue(continue_token, prefix=prefix)
        out: builtins.list[ApiObject] = []
        while True:
            try:
                page, revision, following = await self.store.list_page(
                    kind, namespace, limit=limit or 500, start=start, revision=revision)
            except ExpiredError as err:
                raise ExpiredError("continue: the continue token is too old to display a consistent list "
                                   f"({err.message}): start a new list without it") from err
            for obj in page:
                if labels.matches(obj.metadata.labels) and fields.matches(obj):
                    out.append(obj)
                    if limit and len(out) == limit:
                        after = key_for(kind, obj.metadata.name, obj.metadata.namespace) + b"\x00"
                        more = obj is not page[-1] or bool(following)
                        return out, str(revision), encode_continue(revision, after) if more else ""
            if not following:
                return out, str(revision), ""
            start = following

    # ---------------------------------------------------------------- update

    async def update(self, obj: ApiObject) -> ApiObject:
        """Replace an object's metadata and spec (not its status) at the version the caller read."""
        kind = kinds.kind_of(obj)
        obj = copy_of(obj)
        if not kind.namespaced:
            obj.metadata.namespace = ""
        elif not obj.metadata.namespace:
            obj.metadata.namespace = "default"
        if not obj.metadata.resource_version:
            raise InvalidRequest("metadata.resourceVersion: Required value: must be set for an update")
        expected = _parse_rv(obj.metadata.resource_version)
        old = await self.store.get(kind, obj.metadata.name, obj.metadata.namespace)
        if int(old.metadata.resource_version) != expected:
            raise ConflictError(f'Operation cannot be fulfilled on {kind.resource} "{obj.metadata.name}": the object '
                           "has been modified; please apply your changes to the latest version and try again")
        if isinstance(obj, pb.Service) and isinstance(old, pb.Service):
            _keep_allocated_service_fields(obj, old)
        apply_defaults(obj)
        validate(obj, old=old, network=self.network)
        meta = obj.metadata
        meta.uid = old.metadata.uid
        meta.creation_timestamp.CopyFrom(old.metadata.creation_timestamp)
        if old.metadata.HasField("deletion_timestamp"):
            meta.deletion_timestamp.CopyFrom(old.metadata.deletion_timestamp)
            meta.deletion_grace_period_seconds = old.metadata.deletion_grace_period_seconds
        else:
            meta.ClearField("deletion_timestamp")
            meta.deletion_grace_period_seconds = 0
        if any(f.name == "status" for f in obj.DESCRIPTOR.fields):
            getattr(obj, "status").CopyFrom(getattr(old, "status"))  # noqa: B009 - any kind with a status
        meta.generation = old.metadata.generation + (1 if _spec_of(obj) != _spec_of(old) else 0)
        if meta.HasField("deletion_timestamp") and not meta.finalizers and not self._awaits_kubelet(old):
            # The last finalizer is gone: the two-step deletion completes.
            gone = await self.store.delete(kind, meta.name, meta.namespace, expected_revision=expected)
            await self._release(old)
            return gone
        if isinstance(obj, pb.Node) and isinstance(old, pb.Node) and obj.spec.pod_cidr != old.spec.pod_cidr:
            return await self._update_node_cidr(obj, old, expected=expected)
        if not isinstance(obj, pb.Service) or not isinstance(old, pb.Service):
            return await self.store.update(obj, expected_revision=expected)
        claims = await self.services.allocate(obj, old=old)
        try:
            updated = await self.store.update(obj, expected_revision=expected)
        except Exception:
            await self.services.release_claims(ServiceAllocator.owner(obj), claims)
            raise
        await self.services.release_unused(updated if isinstance(updated, pb.Service) else None, old)
        return updated

    async def _update_node_cidr(self, node: pb.Node, old: pb.Node, *, expected: int) -> ApiObject:
        """An update that gives a Node its podCIDR (validation allows only "" to a range): claim it first."""
        claimed = await self.pod_cidrs.claim(node)
        try:
            return await self.store.update(node, expected_revision=expected)
        except Exception:
            if claimed:
                await self.pod_cidrs.release(node.spec.pod_cidr, node.metadata.name)
            raise

    async def _release(self, gone: ApiObject) -> None:
        """Give back what an object whose key was just deleted held: a Service's IP and ports, a Node's range."""
        if isinstance(gone, pb.Service):
            await self.services.release_unused(None, gone)
        elif isinstance(gone, pb.Node) and gone.spec.pod_cidr:
            await self.pod_cidrs.release(gone.spec.pod_cidr, gone.metadata.name)
            log.info("pod CIDR released", object=obj_ref("nodes", gone.metadata.name), pod_cidr=gone.spec.pod_cidr)

    async def update_status(self, obj: ApiObject) -> ApiObject:
        """Replace only an object's status, at the version the caller read; generation is unchanged."""
        kind = kinds.kind_of(obj)
        if not any(f.name == "status" for f in obj.DESCRIPTOR.fields):
            raise InvalidRequest(f"status: Forbidden: {kind.resource} have no status")
        if not obj.metadata.resource_version:
            raise InvalidRequest("metadata.resourceVersion: Required value: must be set for an update")
        expected = _parse_rv(obj.metadata.resource_version)
        namespace = self._ns(kind, obj.metadata.namespace)
        old = await self.store.get(kind, obj.metadata.name, namespace)
        if int(old.metadata.resource_version) != expected:
            raise ConflictError(f'Operation cannot be fulfilled on {kind.resource} "{obj.metadata.name}": the object '
                           "has been modified; please apply your changes to the latest version and try again")
        new = copy_of(old)
        getattr(new, "status").CopyFrom(getattr(obj, "status"))  # noqa: B009 - any kind with a status
        validate(new, old=old, network=self.network)
        return await self.store.update(new, expected_revision=expected)

    # ---------------------------------------------------------------- delete

    async def delete(self, resource: str, name: str, namespace: str = "", *, resource_version: str = "",
                     unconditional: bool = False, propagation_policy: str = "",
                     grace_period_seconds: int | None = None) -> tuple[ApiObject, bool]:
        """Delete an object; returns its last state and whether its key is gone (False: terminating)."""
        kind = resolve_kind(resource)
        namespace = self._ns(kind, namespace)
        if not resource_version and not unconditional:
            raise InvalidRequest("resourceVersion: Required value: a delete carries the version it read, "
                                 "or is explicitly unconditional")
        if propagation_policy not in ("", "Background", "Foreground", "Orphan"):
            raise InvalidRequest(f'propagationPolicy: Unsupported value: "{propagation_policy}": supported '
                                 'values: "Background", "Foreground", "Orphan"')
        if grace_period_seconds is not None and grace_period_seconds < 0:
            raise InvalidRequest("gracePeriodSeconds: Invalid value: must be greater than or equal to 0")
        # An unconditional delete reads the object and deletes (or marks) it at that version; when a writer
        # got in between, it reads again: the precondition was ours, not the caller's.
        for attempt in range(UNCONDITIONAL_ATTEMPTS):
            try:
                return await self._delete_once(kind, name, namespace, resource_version=resource_version,
                                               propagation_policy=propagation_policy,
                                               grace_period_seconds=grace_period_seconds)
            except ConflictError:
                if resource_version or attempt + 1 == UNCONDITIONAL_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _delete_once(self, kind: Kind, name: str, namespace: str, *, resource_version: str,
                           propagation_policy: str, grace_period_seconds: int | None) -> tuple[ApiObject, bool]:
        old = await self.store.get(kind, name, namespace)
        current = int(old.metadata.resource_version)
        if resource_version and _parse_rv(resource_version, "resourceVersion") != current:
            raise ConflictError(f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again")
        new = copy_of(old)
        meta = new.metadata
        finalizers = list(meta.finalizers)
        if propagation_policy == "Orphan" and "orphan" not in finalizers and _has_dependents_kind(kind):
            finalizers.append("orphan")
        if propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers and \
                _has_dependents_kind(kind):
            finalizers.append("foregroundDeletion")
        grace = self._grace(old, grace_period_seconds)
        if not finalizers and grace == 0:
            gone = await self.store.delete(kind, name, namespace, expected_revision=current)
            await self._release(old)
            return gone, True
        if meta.HasField("deletion_timestamp") and list(meta.finalizers) == finalizers and (
                grace is None or grace >= meta.deletion_grace_period_seconds):
            return old, False  # already terminating; nothing changes
        del meta.finalizers[:]
        meta.finalizers.extend(finalizers)
        if not meta.HasField("deletion_timestamp") or grace is not None:
            meta.deletion_timestamp.CopyFrom(now_timestamp())
            if grace:
                meta.deletion_timestamp.seconds += grace
            meta.deletion_grace_period_seconds = grace or 0
        updated = await self.store.update(new, expected_revision=current)
        log.debug("terminating", object=obj_ref(kind.resource, name, namespace), grace=grace)
        return updated, False

    @staticmethod
    def _grace(obj: ApiObject, requested: int | None) -> int | None:
        """The graceful-termination period of a delete: only pods bound to a node wait for their kubelet."""
        if not isinstance(obj, pb.Pod) or not obj.spec.node_name:
            return 0
        if requested is not None:
            return requested
        return obj.spec.termination_grace_period_seconds

    @staticmethod
    def _awaits_kubelet(obj: ApiObject) -> bool:
        return isinstance(obj, pb.Pod) and bool(obj.spec.node_name) and \
            obj.metadata.deletion_grace_period_seconds > 0

    # ----------------------------------------------------------------- watch

    async def watch(self, resource: str, namespace: str = "", *, label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    bookmarks: bool = False) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version` (or every existing object as ADDED first, when it is empty).

        With `bookmarks`, the initial ADDED events are followed by a BOOKMARK
        carrying the list's version, so a client that reconnects after it
        resumes exactly there.

        With selectors, an object that stops matching is sent as DELETED and one
        that starts matching as ADDED, as in Kubernetes.
        """
        kind = resolve_kind(resource)
        labels, fields = _selectors(label_selector, field_selector)
        namespace = namespace if kind.namespaced else ""
        everything = labels.is_empty() and fields.is_empty()

        def matches(o: ApiObject | None) -> bool:
            return o is not None and (everything or (labels.matches(o.metadata.labels) and fields.matches(o)))

        if resource_version:
            after = _parse_rv(resource_version, "resourceVersion")
        else:
            items, after = await self.store.list(kind, namespace)
            for item in items:
                if matches(item):
                    yield WatchEvent("ADDED", item, item.metadata.resource_version)
            if bookmarks:
                yield WatchEvent("BOOKMARK", None, str(after))
        async for batch in self.store.watch(kind, namespace, after=after):
            for ev in batch:
                if everything:
                    yield WatchEvent(ev.type, ev.object, str(ev.revision))
                    continue
                now = ev.type != "DELETED" and matches(ev.object)
                before = matches(ev.previous) if ev.type == "MODIFIED" else (ev.type == "DELETED" and
                                                                               matches(ev.object))
                if now and before:
                    yield WatchEvent("MODIFIED", ev.object, str(ev.revision))
                elif now:
                    yield WatchEvent("ADDED", ev.object, str(ev.revision))
                elif before:
                    gone = ev.object
                    gone.metadata.resource_version = str(ev.revision)
                    yield WatchEvent("DELETED", gone, str(ev.revision))

    @staticmethod
    def _ns(kind: Kind, namespace: str) -> str:
        if not kind.namespaced:
            return ""
        return namespace or "default"


def _keep_allocated_service_fields(new: pb.Service, old: pb.Service) -> None:
    """An update that omits clusterIP or a nodePort keeps the allocated ones, as in Kubernetes."""
    if not new.spec.cluster_ip:
        new.spec.cluster_ip = old.spec.cluster_ip
    old_ports = {(p.port, p.protocol or "TCP"): p.node_port for p in old.spec.ports}
    for port in new.spec.ports:
        if not port.node_port:
            port.node_port = old_ports.get((port.port, port.protocol or "TCP"), 0)


def _has_dependents_kind(kind: Kind) -> bool:
    return kind.kind in ("Deployment", "ReplicaSet")


__all__ = ["InvalidRequest", "NotFoundError", "ObjectService", "WatchEvent", "resolve_kind"]


def encode_continue(revision: int, start: bytes) -> str:
    """A continue token: the list's revision and the key the next page starts at (opaque to clients)."""
    body = json.dumps({"v": 1, "rv": revision, "start": base64.b64encode(start).decode()}).encode()
    return base64.urlsafe_b64encode(body).decode()


def decode_continue(token: str, *, prefix: bytes) -> tuple[int, bytes]:
    """The revision and start key of a continue token; InvalidRequest naming `continue` unless it is one this
    server made for a list of the same resource (and namespace)."""
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = int(body["rv"]), base64.b64decode(body["start"])
        if body.get("v") != 1 or revision <= 0 or not start.startswith(prefix):
            raise ValueError("not a token of this list")
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidRequest(f'continue: Invalid value: "{token[:64]}": not a continue token of this list '
                             f"({err})") from None
    return revision, start
