"""Events about pods (Pulling, Started, BackOff, Killing, Unhealthy, …) and, from the proxy, about
Endpoints it could not program (InvalidEndpoint), sent up the link as EventReports.

Each occurrence is reported once with count 1; the master's event recorder
correlates repeats (same object, reason, message and source) into one Event
with a growing count, as Kubernetes' event correlator does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

NORMAL = "Normal"
WARNING = "Warning"


def _timestamp(now: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(now * 1e9))
    return ts


class EventRecorder:
    """Builds Events for one node and hands them to `send` (the link's event queue)."""

    def __init__(self, *, node_name: str, send: Callable[[node_pb2.NodeMessage], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.node_name = node_name
        self._send = send
        self._clock = clock

    def pod_event(self, pod: pb.Pod, *, type: str, reason: str, message: str,  # noqa: A002 - Kubernetes' field name
                  container: str = "") -> pb.Event:
        """Record an event about a pod (or one of its containers) and send it."""
        meta = pod.metadata
        ref = pb.ObjectReference(kind="Pod", api_version="v1", namespace=meta.namespace, name=meta.name,
                                 uid=meta.uid, field_path=f"spec.containers{{{container}}}" if container else "")
        return self.object_event(ref, type=type, reason=reason, message=message)

    def object_event(self, ref: pb.ObjectReference, *, type: str, reason: str,  # noqa: A002 - as above
                     message: str) -> pb.Event:
        """Record an event about any object (the proxy's about an Endpoints) and send it."""
        now = self._clock()
        event = pb.Event(api_version="v1", kind="Event", reason=reason, message=message, type=type, count=1)
        event.metadata.name = f"{ref.name}.{int(now * 1e9):x}"
        event.metadata.namespace = ref.namespace or "default"
        event.involved_object.CopyFrom(ref)
        event.source.component = "kubelet"
        event.source.host = self.node_name
        event.first_timestamp.CopyFrom(_timestamp(now))
        event.last_timestamp.CopyFrom(_timestamp(now))
        self._send(node_pb2.NodeMessage(event=node_pb2.EventReport(event=event)))
        return event
