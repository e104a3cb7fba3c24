"""The Deployment controller actor: handlers mapping ReplicaSet and pod changes to Deployments, and the sync.

A sync (Kubernetes' syncDeployment): claim the ReplicaSets the Deployment's
selector matches (adopting orphans, releasing strays); a Deployment being
deleted only gets its status; the paused conditions are kept; a paused
Deployment or a pure change of spec.replicas is resized without rolling out;
otherwise the strategy (RollingUpdate or Recreate) takes one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.objects import controller_of, copy_of
from kybernetes.core.api.selectors import SelectorError, from_proto
from kybernetes.core.machinery.informer import InformerFactory, object_key
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.base import QueueController
from kybernetes.master.controllers.deployment.recreate import rollout_recreate
from kybernetes.master.controllers.deployment.rolling import rollout_rolling
from kybernetes.master.controllers.deployment.sync import DeploymentSync
from kybernetes.master.controllers.refmanager import claim, owner_checker
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb


class DeploymentController(QueueController):
    """Rolls Deployments out through ReplicaSets."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder, workers: int = 5,
                 clock: Callable[[], float] = time.time) -> None:
        self.deploy_informer = informers.informer("deployments")
        self.rs_informer = informers.informer("replicasets")
        self.pod_informer = informers.informer("pods")
        super().__init__(name="deployment-controller", primary=self.deploy_informer,
                         waits_for=[self.rs_informer, self.pod_informer], workers=workers)
        indexes.add_namespace_index(self.deploy_informer)
        indexes.add_owned_indexes(self.rs_informer)
        indexes.add_pod_indexes(self.pod_informer)
        self.client = client
        self.recorder = recorder
        self.actions = DeploymentSync(client=client, recorder=recorder, requeue_after=self.queue.add_after,
                                      clock=clock)
        self.deploy_informer.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                         on_delete=self.enqueue)
        self.rs_informer.add_handler(on_add=self._rs_added, on_update=self._rs_updated, on_delete=self._rs_deleted)
        self.pod_informer.add_handler(on_update=self._pod_changed, on_delete=self._pod_deleted)

    # ------------------------------------------------------------- handlers

    def _owner_key(self, rs: pb.ReplicaSet) -> str | None:
        ref = controller_of(rs)
        if ref is None or ref.kind != "Deployment":
            return None
        deployment = self.deploy_informer.get_by_name(ref.name, rs.metadata.namespace)
        if deployment is None or deployment.metadata.uid != ref.uid:
            return None
        return object_key(deployment)

    def _enqueue_matching(self, rs: pb.ReplicaSet) -> None:
        for deployment in self.deploy_informer.by_index(indexes.NAMESPACE, rs.metadata.namespace):
            try:
                if from_proto(deployment.spec.selector).matches(rs.metadata.labels):
                    self.enqueue(deployment)
            except SelectorError:
                continue

    def _rs_added(self, rs: pb.ReplicaSet) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.queue.add(key)
        elif controller_of(rs) is None:
            self._enqueue_matching(rs)

    def _rs_updated(self, old: pb.ReplicaSet, new: pb.ReplicaSet) -> None:
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self.queue.add(new_key)
        elif controller_of(new) is None and (old.metadata.labels != new.metadata.labels or old_key is not None):
            self._enqueue_matching(new)

    def _rs_deleted(self, rs: pb.ReplicaSet) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.queue.add(key)

    def _deployment_of_pod(self, pod: pb.Pod) -> pb.Deployment | None:
        ref = controller_of(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return None
        rs = self.rs_informer.get_by_name(ref.name, pod.metadata.namespace)
        if rs is None:
            return None
        key = self._owner_key(rs)
        return self.deploy_informer.get(key) if key is not None else None

    def _pod_changed(self, old: pb.Pod, new: pb.Pod) -> None:
        # Only Recreate waits on pods themselves (for the old ones to finish).
        if new.status.phase != old.status.phase:
            self._pod_deleted(new)

    def _pod_deleted(self, pod: pb.Pod) -> None:
        deployment = self._deployment_of_pod(pod)
        if deployment is not None and deployment.spec.strategy.type == "Recreate":
            self.enqueue(deployment)

    # ----------------------------------------------------------------- sync

    async def replica_sets_of(self, deployment: pb.Deployment) -> list[pb.ReplicaSet]:
        """The ReplicaSets this Deployment controls, after adoption and release."""
        selector = from_proto(deployment.spec.selector)
        candidates = self.rs_informer.by_index(indexes.CONTROLLER, deployment.metadata.uid) + \
            self.rs_informer.by_index(indexes.ORPHANS, deployment.metadata.namespace)
        return await claim(client=self.client, owner=deployment, owner_kind="Deployment", selector=selector,
                           candidates=candidates,
                           can_adopt=owner_checker(self.client, resource="deployments", owner=deployment))

    def pods_by_rs(self, rss: list[pb.ReplicaSet]) -> dict[str, list[pb.Pod]]:
        return {rs.metadata.uid: self.pod_informer.by_index(indexes.CONTROLLER, rs.metadata.uid) for rs in rss}

    async def sync(self, key: str) -> None:
        deployment = self.deploy_informer.get(key)
        if deployment is None:
            return
        try:
            selector = from_proto(deployment.spec.selector)
        except SelectorError as err:
            self.log.warning("invalid selector", deployment=key, error=str(err))
            return
        if selector.is_empty():
            await self.recorder.record(deployment, type="Warning", reason="SelectingAll",
                                       message="This deployment is selecting all pods. A non-empty selector is "
                                               "required.")
            if deployment.status.observed_generation < deployment.metadata.generation:
                status = copy_of(deployment.status)
                status.observed_generation = deployment.metadata.generation
                await self.actions.update_status(deployment, status)
            return
        rss = await self.replica_sets_of(deployment)
        if deployment.metadata.HasField("deletion_timestamp"):
            await self.actions.sync_status_only(deployment, rss)
            return
        deployment = await self.actions.check_paused_conditions(deployment)
        if deployment.spec.paused or self.actions.is_scaling_event(deployment, rss):
            await self.actions.sync(deployment, rss)
            return
        if deployment.spec.strategy.type == "Recreate":
            await rollout_recreate(self.actions, deployment, rss, self.pods_by_rs(rss))
        else:
            await rollout_rolling(self.actions, deployment, rss)
