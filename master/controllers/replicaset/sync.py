"""One ReplicaSet sync: claim pods, create or delete the difference, write status.

Level-triggered: the sync counts the active pods the ReplicaSet controls
(terminating and terminal pods do not count, so a pod evicted from a lost
Node is replaced at once) and acts on the difference with `replicas`.
Creations and deletions are recorded as expectations first so a second sync
before the watch catches up does nothing twice.

Creations go in slow-start batches (1, 2, 4, …) as in Kubernetes: if the
template is broken the first pod fails and the other thousand are not tried.
Scale-down deletes the pods whose loss hurts least first: unscheduled, then
pending, then not ready, then the most recently ready, the most restarted and
the newest.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError, ApiError, NotFoundError
from kybernetes.core.api.objects import (
    controller_ref,
    copy_of,
    now_timestamp,
    ready_since,
    remove_condition,
    set_condition,
)
from kybernetes.core.machinery.informer import object_key
from kybernetes.master.controllers.replicaset.podfacts import PodFacts
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

# Kubernetes' rand.String alphabet: no vowels (no words), no confusable 0/1/3.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
MAX_GENERATED_BASE = 63 - NAME_SUFFIX_LENGTH - 1
BURST_REPLICAS = 500  # the most pods one sync creates or deletes (Kubernetes' burstReplicas)

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_name(base: str) -> str:
    """`<base>-<5 random characters>`, with the base shortened so the name stays a valid label."""
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
    return f"{base[:MAX_GENERATED_BASE].rstrip('-')}-{suffix}"


def pod_from_template(rs: pb.ReplicaSet) -> pb.Pod:
    """A new pod of a ReplicaSet: template labels, annotations and spec, controlled by the ReplicaSet."""
    pod = pb.Pod()
    template = rs.spec.template
    pod.metadata.namespace = rs.metadata.namespace
    pod.metadata.labels.update(template.metadata.labels)
    pod.metadata.annotations.update(template.metadata.annotations)
    pod.metadata.owner_references.append(controller_ref(rs, "ReplicaSet"))
    pod.spec.CopyFrom(template.spec)
    return pod


def deletion_rank(pod: pb.Pod) -> tuple[int, int, int, float, int, float]:
    """Sort key: pods to delete first sort first."""
    since = ready_since(pod)
    restarts = sum(cs.restart_count for cs in pod.status.container_statuses)
    created = pod.metadata.creation_timestamp.seconds + pod.metadata.creation_timestamp.nanos / 1e9
    return (
        1 if pod.spec.node_name else 0,
        _PHASE_RANK.get(pod.status.phase, 0),
        1 if since is not None else 0,
        -(since or 0.0),  # more recently ready first
        -restarts,
        -created,  # newest first
    )


async def slow_start(count: int, fn: Callable[[], Awaitable[None]], *,
                     initial: int = 1) -> tuple[int, Exception | None]:
    """Run `fn` `count` times in doubling concurrent batches; stop after the first batch with a failure.

    Returns (successes, first error).
    """
    done = 0
    remaining = count
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        done += batch - len(errors)
        if errors:
            return done, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return done, None


@dataclass
class ReplicaCounts:
    replicas: int
    fully_labeled: int
    ready: int
    available: int
    # Seconds until the next ready pod becomes available (minReadySeconds), if any.
    next_available_in: float | None


def count_replicas(rs: pb.ReplicaSet, pods: list[PodFacts], now: float) -> ReplicaCounts:
    template_labels = rs.spec.template.metadata.labels.items()
    min_ready = rs.spec.min_ready_seconds
    fully = ready = available = 0
    soonest: float | None = None
    for facts in pods:
        labels = facts.labels
        if all(labels.get(k) == v for k, v in template_labels):
            fully += 1
        since = facts.ready_since
        if since is not None:
            ready += 1
            if facts.active and (min_ready <= 0 or since + min_ready <= now):
                available += 1
            else:
                wait = since + min_ready - now
                soonest = wait if soonest is None else min(soonest, wait)
    return ReplicaCounts(len(pods), fully, ready, available, soonest)


def desired_status(rs: pb.ReplicaSet, counts: ReplicaCounts, failure: str | None, *,
                   acted: bool) -> pb.ReplicaSetStatus:
    """The status to write; observedGeneration only advances when the sync acted on this generation's spec."""
    status = pb.ReplicaSetStatus()
    status.CopyFrom(rs.status)
    status.replicas = counts.replicas
    status.fully_labeled_replicas = counts.fully_labeled
    status.ready_replicas = counts.ready
    status.available_replicas = counts.available
    if acted:
        status.observed_generation = rs.metadata.generation
    if failure is not None:
        set_condition(status.conditions, pb.Condition(type="ReplicaFailure", status="True", reason="FailedCreate",
                                                      message=failure, last_transition_time=now_timestamp()))
    else:
        remove_condition(status.conditions, "ReplicaFailure")
    return status


class ReplicaSetSync:
    """The actions of a sync, against the API (used by the controller's workers)."""

    def __init__(self, *, client: ObjectClient, recorder: EventRecorder, expectations: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.recorder = recorder
        self.expectations = expectations
        self.clock = clock

    async def manage_replicas(self, rs: pb.ReplicaSet, pods: list[pb.Pod]) -> tuple[str | None, set[str]]:
        """Create or delete pods towards spec.replicas.

        Returns a creation failure message (or None) and the keys of the pods deleted, which the
        status must no longer count.
        """
        key = object_key(rs)
        diff = len(pods) - rs.spec.replicas
        if diff < 0:
            want = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, want)
            done, error = await slow_start(want, lambda: self._create_pod(rs))
            skipped = want - done
            if skipped:
                # Never-observed creations must not hold the expectations until they expire.
                self.expectations.creation_observed(key, skipped)
            if error is not None:
                message = f"Error creating: {error}"
                await self.recorder.record(rs, type="Warning", reason="FailedCreate", message=message)
                return message, set()
        elif diff > 0:
            victims = sorted(pods, key=deletion_rank)[:min(diff, BURST_REPLICAS)]
            self.expectations.expect_deletions(key, [object_key(p) for p in victims])
            results = await asyncio.gather(*(self._delete_pod(rs, p) for p in victims), return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise errors[0]
            return None, {object_key(p) for p in victims}
        return None, set()

    async def _create_pod(self, rs: pb.ReplicaSet) -> None:
        pod = pod_from_template(rs)
        for _ in range(5):
            pod.metadata.name = pod_name(rs.metadata.name)
            try:
                created = await self.client.create(pod)
            except AlreadyExistsError:
                continue
            self.recorder.record_nowait(rs, type="Normal", reason="SuccessfulCreate",
                                        message=f"Created pod: {created.metadata.name}")
            return
        raise ApiError(f"no free pod name for {rs.metadata.name} after 5 tries")

    async def _delete_pod(self, rs: pb.ReplicaSet, pod: pb.Pod) -> None:
        key = object_key(rs)
        try:
            await self.client.delete("pods", pod.metadata.name, namespace=pod.metadata.namespace, unconditional=True)
        except NotFoundError:
            self.expectations.deletion_observed(key, object_key(pod))
            return
        except Exception:
            self.expectations.deletion_observed(key, object_key(pod))
            raise
        self.recorder.record_nowait(rs, type="Normal", reason="SuccessfulDelete",
                                    message=f"Deleted pod: {pod.metadata.name}")

    async def update_status(self, rs: pb.ReplicaSet, status: pb.ReplicaSetStatus) -> pb.ReplicaSet | None:
        """Write status unless unchanged; on conflict re-read once and try again."""
        current = rs
        for attempt in range(2):
            if current.status == status:
                return current
            new = copy_of(current)
            new.status.CopyFrom(status)
            new.status.observed_generation = status.observed_generation
            try:
                return await self.client.update_status(new)
            except NotFoundError:
                return None
            except ApiError as err:
                if attempt == 1 or err.reason != "Conflict":
                    raise
                current = await self.client.get("replicasets", rs.metadata.name, namespace=rs.metadata.namespace)
                if current.metadata.uid != rs.metadata.uid:
                    return None
        return None
