"""Events (what an event must name: the involved object, its type and its count) and Leases (the masters'
leadership record: non-negative durations and transitions)."""

from __future__ import annotations

from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.network import ClusterNetwork
from kybernetes.proto import objects_pb2 as pb

_EVENT_TYPES = ("Normal", "Warning")


def validate_event(errors: Errors, event: pb.Event, old: pb.Event | None, *,
                   network: ClusterNetwork) -> None:
    if not event.involved_object.kind:
        errors.required("involvedObject.kind")
    if not event.involved_object.name:
        errors.required("involvedObject.name")
    errors.enum("type", event.type, _EVENT_TYPES)
    errors.non_negative("count", event.count)


def validate_lease(errors: Errors, lease: pb.Lease, old: pb.Lease | None, *,
                   network: ClusterNetwork) -> None:
    errors.non_negative("spec.leaseDurationSeconds", lease.spec.lease_duration_seconds)
    errors.non_negative("spec.leaseTransitions", lease.spec.lease_transitions)
