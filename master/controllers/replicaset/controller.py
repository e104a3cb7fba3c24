"""The ReplicaSet controller actor: event handlers that map pod changes to ReplicaSet keys, and the sync.

Pod events find their ReplicaSet through the pod's controller reference (an
orphan wakes every ReplicaSet of its namespace whose selector matches it, for
adoption) and feed the expectations: a pod ADDED lowers pending creations, a
pod that starts terminating or is DELETED lowers pending deletions. A pod
that becomes ready while minReadySeconds applies is looked at again once it
can count as available.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.objects import controller_of, is_pod_ready
from kybernetes.core.api.selectors import SelectorError, from_proto
from kybernetes.core.machinery.informer import InformerFactory, object_key
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.base import QueueController
from kybernetes.master.controllers.expectations import Expectations
from kybernetes.master.controllers.refmanager import claim, owner_checker
from kybernetes.master.controllers.replicaset.podfacts import PodFacts, PodFactsCache
from kybernetes.master.controllers.replicaset.sync import ReplicaSetSync, count_replicas, desired_status
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

POD_STATUS_COALESCE_MAX = 0.5  # seconds


class ReplicaSetController(QueueController):
    """Keeps each ReplicaSet's pods at spec.replicas and its status current."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder, workers: int = 5,
                 clock: Callable[[], float] = time.time) -> None:
        self.rs_informer = informers.informer("replicasets")
        self.pod_informer = informers.informer("pods")
        super().__init__(name="replicaset-controller", primary=self.rs_informer, waits_for=[self.pod_informer],
                         workers=workers)
        indexes.add_owned_indexes(self.rs_informer)
        indexes.add_pod_indexes(self.pod_informer)
        self.client = client
        self.clock = clock
        self.expectations = Expectations()
        self.facts = PodFactsCache()
        self.actions = ReplicaSetSync(client=client, recorder=recorder, expectations=self.expectations, clock=clock)
        self.rs_informer.add_handler(on_add=self.enqueue, on_update=self._rs_updated, on_delete=self._rs_deleted)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    # ------------------------------------------------------------- handlers

    def _rs_updated(self, old: pb.ReplicaSet, new: pb.ReplicaSet) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: pb.ReplicaSet) -> None:
        self.expectations.forget(object_key(rs))
        self.enqueue(rs)

    def _owner_key(self, pod: pb.Pod) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return None
        rs = self.rs_informer.get_by_name(ref.name, pod.metadata.namespace)
        if rs is None or rs.metadata.uid != ref.uid:
            return None
        return object_key(rs)

    def _enqueue_matching(self, pod: pb.Pod) -> None:
        """An orphan: every ReplicaSet of its namespace that selects it may adopt it."""
        for rs in self.rs_informer.by_index(indexes.NAMESPACE, pod.metadata.namespace):
            try:
                if from_proto(rs.spec.selector).matches(pod.metadata.labels):
                    self.enqueue(rs)
            except SelectorError:
                continue

    def _pod_added(self, pod: pb.Pod) -> None:
        if pod.metadata.HasField("deletion_timestamp"):
            # Seen for the first time already terminating (e.g. after a restart): a deletion.
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self._enqueue_after_observed(key)
        elif controller_of(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: pb.Pod, new: pb.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if new.metadata.HasField("deletion_timestamp"):
            self._pod_deleted(new)
            if old_key != new_key and old_key is not None:
                self.queue.add(old_key)
            return
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self._enqueue_after_pod_change(new_key, old, new)
            rs = self.rs_informer.get(new_key)
            if rs is not None and rs.spec.min_ready_seconds > 0 and is_pod_ready(new) and not is_pod_ready(old):
                # It becomes available minReadySeconds from now: look again then.
                self.queue.add_after(new_key, rs.spec.min_ready_seconds + 0.5)
        elif controller_of(new) is None and (old.metadata.labels != new.metadata.labels or old_key is not None):
            self._enqueue_matching(new)

    def _enqueue_after_pod_change(self, key: str, old: pb.Pod, new: pb.Pod) -> None:
        """A pod of this ReplicaSet changed. A change of its labels or owner is handled at once; a status
        change only moves counters, so syncs of a large ReplicaSet are coalesced: a sync reads all its pods,
        and one per pod status change makes the controller's cost grow with the square of its size (10
        ReplicaSets of 1,000 pods took a third of the master's CPU). The delay grows with the size, 0.1 ms a
        pod, at most POD_STATUS_COALESCE_MAX: 0.1 s at 1,000 pods, nothing noticeable at 20."""
        if old.metadata.labels != new.metadata.labels or controller_of(old) != controller_of(new):
            self.queue.add(key)
            return
        self._enqueue_coalesced(key)

    def _enqueue_after_observed(self, key: str) -> None:
        """A creation or deletion this ReplicaSet expected was observed. While others are still pending
        a sync can only update status (it must not act on a cache that lags its own writes), so it is
        coalesced like a status change: a burst of 500 creations is then a few syncs, not 500 syncs that
        each read every pod. The last one expected lets the sync act at once."""
        if self.expectations.satisfied(key):
            self.queue.add(key)
        else:
            self._enqueue_coalesced(key)

    def _enqueue_coalesced(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        size = self.pod_informer.index_count(indexes.CONTROLLER, rs.metadata.uid) if rs is not None else 0
        self.queue.add_after(key, min(POD_STATUS_COALESCE_MAX, size * 0.0001))

    def _pod_deleted(self, pod: pb.Pod) -> None:
        if self.pod_informer.get(object_key(pod)) is None:
            self.facts.forget(object_key(pod))
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self._enqueue_after_observed(key)

    # ----------------------------------------------------------------- sync

    def active_pods(self, rs: pb.ReplicaSet) -> list[PodFacts]:
        """Active pods this ReplicaSet controls, plus active orphans of its namespace (adoption candidates)."""
        out = []
        for index, value in ((indexes.CONTROLLER, rs.metadata.uid), (indexes.ORPHANS, rs.metadata.namespace)):
            for key, pod in self.pod_informer.items_by_index(index, value):
                facts = self.facts.get(key, pod)
                if facts.active:
                    out.append(facts)
        return out

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        try:
            selector = from_proto(rs.spec.selector)
        except SelectorError as err:
            self.log.warning("invalid selector", replicaset=key, error=str(err))
            return
        needs_sync = self.expectations.satisfied(key)
        # Pods it controls that still match stay its own: claim() only needs to see the rest (orphans to
        # adopt, pods to release), as Kubernetes' ClaimPods would decide the same for these.
        uid = rs.metadata.uid
        owned: list[PodFacts] = []
        others: list[pb.Pod] = []
        for facts in self.active_pods(rs):
            if facts.controller_uid == uid and selector.matches(facts.labels):
                owned.append(facts)
            else:
                others.append(facts.pod)
        if others:
            claimed = await claim(client=self.client, owner=rs, owner_kind="ReplicaSet", selector=selector,
                                  candidates=others,
                                  can_adopt=owner_checker(self.client, resource="replicasets", owner=rs))
            owned.extend(PodFacts.of(pod) for pod in claimed)
        failure: str | None = None
        acted = needs_sync or rs.metadata.HasField("deletion_timestamp")
        if needs_sync and not rs.metadata.HasField("deletion_timestamp"):
            failure, deleted = await self.actions.manage_replicas(rs, [facts.pod for facts in owned])
            if deleted:
                owned = [facts for facts in owned if object_key(facts.pod) not in deleted]
        now = self.clock()
        counts = count_replicas(rs, owned, now)
        status = desired_status(rs, counts, failure, acted=acted)
        await self.actions.update_status(rs, status)
        if counts.next_available_in is not None:
            self.queue.add_after(key, counts.next_available_in + 0.1)
