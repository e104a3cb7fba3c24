"""Binding: the optimistic write that puts the decision into etcd.

A bind is an update of the pod's spec.nodeName at the resourceVersion the
scheduler read. On a conflict the pod is read again: if it is still the same,
unbound, live pod the bind is retried on the fresh version; if someone else
bound it, or it is gone or terminating, the decision is dropped. Binds run
concurrently (bounded), so the scheduler decides on the next pod while
earlier binds are in flight. A pod that was marked Unschedulable gets
PodScheduled=True once bound, and every bind records a Scheduled event.
"""

from __future__ import annotations

import asyncio

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ConflictError, NotFoundError
from kybernetes.core.api.objects import copy_of, get_condition, now_timestamp, set_condition
from kybernetes.core.machinery.informer import object_key
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

BIND_ATTEMPTS = 5


class Binder:
    """Writes bindings with bounded concurrency."""

    def __init__(self, *, client: ObjectClient, recorder: EventRecorder, concurrency: int = 256) -> None:
        self.client = client
        self.recorder = recorder
        self._slots = asyncio.Semaphore(concurrency)

    async def bind(self, pod: pb.Pod, node_name: str) -> bool:
        """Bind `pod` to `node_name`; True when written, False when the decision no longer applies.

        Raises on errors worth retrying later (the API unavailable, say).
        """
        async with self._slots:
            uid = pod.metadata.uid
            current = pod
            for _ in range(BIND_ATTEMPTS):
                new = copy_of(current)
                new.spec.node_name = node_name
                try:
                    bound = await self.client.update(new)
                    break
                except NotFoundError:
                    return False
                except ConflictError:
                    try:
                        current = await self.client.get("pods", pod.metadata.name, namespace=pod.metadata.namespace)
                    except NotFoundError:
                        return False
                    if current.metadata.uid != uid or current.spec.node_name or \
                            current.metadata.HasField("deletion_timestamp"):
                        return False
            else:
                raise ConflictError(f"pod {object_key(pod)} kept changing while being bound")
        self.recorder.record_nowait(bound, type="Normal", reason="Scheduled",
                                    message=f"Successfully assigned {object_key(bound)} to {node_name}")
        condition = get_condition(bound.status.conditions, "PodScheduled")
        if condition is not None and condition.status != "True":
            await self._mark_scheduled(bound)
        return True

    async def _mark_scheduled(self, pod: pb.Pod) -> None:
        new = copy_of(pod)
        set_condition(new.status.conditions, pb.Condition(type="PodScheduled", status="True",
                                                          last_transition_time=now_timestamp()))
        try:
            await self.client.update_status(new)
        except (ConflictError, NotFoundError):
            pass  # the kubelet reports the pod's conditions from now on

    async def mark_unschedulable(self, pod: pb.Pod, message: str) -> None:
        """PodScheduled=False reason Unschedulable with the explanation (skipped when already so)."""
        condition = get_condition(pod.status.conditions, "PodScheduled")
        if condition is not None and condition.status == "False" and condition.reason == "Unschedulable" and \
                condition.message == message:
            return
        new = copy_of(pod)
        now = now_timestamp()
        fresh = pb.Condition(type="PodScheduled", status="False", reason="Unschedulable", message=message,
                             last_transition_time=now, last_probe_time=now)
        if condition is not None and condition.status == "False":
            fresh.last_transition_time.CopyFrom(condition.last_transition_time)
        remaining = [c for c in new.status.conditions if c.type != "PodScheduled"]
        del new.status.conditions[:]
        new.status.conditions.extend([*remaining, fresh])
        try:
            await self.client.update_status(new)
        except (ConflictError, NotFoundError):
            pass  # the pod changed; the next attempt writes the then-current reason
