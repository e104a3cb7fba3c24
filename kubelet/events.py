"""Events about pods (Pulling, Started, BackOff, Killing, Unhealthy, …), sent up the link as EventReports.

Like client-go's event correlator, a repeat of the same event (same object,
field path, reason and message) keeps its name and only bumps count and
lastTimestamp, so a crash-looping container yields one Event with a growing
count rather than thousands. The master stores the report under its name
(create, or update when it exists).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from proto import node_pb2
from proto import objects_pb2 as pb

NORMAL = "Normal"
WARNING = "Warning"

# How many distinct events are remembered for correlation.
_CACHE_SIZE = 4096


@dataclass
class _Seen:
    name: str
    count: int
    first: Timestamp


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
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()

    def pod_event(self, pod: pb.Pod, *, type: str, reason: str, message: str,  # noqa: A002 - Kubernetes' field name
                  container: str = "") -> pb.Event:
        """Record an event about a pod (or one of its containers) and send it."""
        meta = pod.metadata
        field_path = f"spec.containers{{{container}}}" if container else ""
        key = (meta.uid, field_path, reason, message)
        now = _timestamp(self._clock())
        seen = self._seen.pop(key, None)
        if seen is None:
            digest = hashlib.sha1("\0".join(key).encode()).hexdigest()[:10]
            seen = _Seen(name=f"{meta.name}.{digest}", count=0, first=now)
        seen.count += 1
        self._seen[key] = seen
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)

        event = pb.Event(api_version="v1", kind="Event", reason=reason, message=message, type=type,
                         count=seen.count)
        event.metadata.name = seen.name
        event.metadata.namespace = meta.namespace
        ref = event.involved_object
        ref.kind, ref.api_version = "Pod", "v1"
        ref.namespace, ref.name, ref.uid = meta.namespace, meta.name, meta.uid
        ref.field_path = field_path
        event.source.component = "kubelet"
        event.source.host = self.node_name
        event.first_timestamp.CopyFrom(seen.first)
        event.last_timestamp.CopyFrom(now)
        self._send(node_pb2.NodeMessage(event=node_pb2.EventReport(event=event)))
        return event
