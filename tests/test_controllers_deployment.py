"""The Deployment controller against real etcd and the real object service, controllers in-process.

Kubelets are played through the API (`ApiKubelets`: pods become Running+Ready after a short
delay, terminations are confirmed), because these tests are about rollout logic: the
invariants, revisions, rollback, pause, progress deadline and a controller crash mid-rollout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from harness.builders import make_deployment
from harness.waiting import until
from kybernetes.core.machinery.informer import object_key
from kybernetes.ctl.client import ConflictError
from kybernetes.ctl.client.rollout import RollbackError, history, rollback_deployment
from kybernetes.master.controllers.deployment import util
from kybernetes.proto import objects_pb2 as pb
from tests import test_controllers_support as support
from tests.test_controllers_support import Cluster, is_ready, is_terminating

cluster = support.cluster


# ---------------------------------------------------------------- pure helpers


def test_surge_rounds_up_and_unavailable_rounds_down():
    d = make_deployment("web", replicas=10, max_surge="25%", max_unavailable="25%")
    assert util.resolve_fenceposts(d) == (3, 2)
    d = make_deployment("web", replicas=1, max_surge="10%", max_unavailable="10%")
    assert util.resolve_fenceposts(d) == (1, 0)
    d = make_deployment("web", replicas=4, max_surge=0, max_unavailable="10%")
    assert util.resolve_fenceposts(d) == (0, 1)  # never both zero
    assert util.max_unavailable(make_deployment("web", strategy="Recreate")) == 0


def test_template_hash_is_stable_safe_and_changes_with_the_template():
    a = make_deployment("web").spec.template
    b = make_deployment("web", image="kyb/hello:v2").spec.template
    ha = util.compute_hash(a)
    assert ha == util.compute_hash(a) and ha != util.compute_hash(b)
    assert ha != util.compute_hash(a, collision_count=1)
    assert set(ha) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(ha) <= 10


# ---------------------------------------------------------------- helpers


async def deployment(c: Cluster, name: str = "web") -> pb.Deployment:
    return await c.client.get("deployments", name)


def condition(d: pb.Deployment, kind: str) -> pb.Condition | None:
    return next((x for x in d.status.conditions if x.type == kind), None)


async def complete(c: Cluster, name: str = "web") -> pb.Deployment | None:
    d = await deployment(c, name)
    progressing = condition(d, "Progressing")
    done = (d.status.observed_generation >= d.metadata.generation and d.status.replicas == d.spec.replicas
            and d.status.updated_replicas == d.spec.replicas and d.status.available_replicas == d.spec.replicas
            and progressing is not None and progressing.reason == "NewReplicaSetAvailable")
    return d if done else None


async def replica_sets(c: Cluster, name: str = "web") -> list[pb.ReplicaSet]:
    return [rs for rs in (await c.client.list("replicasets")).items
            if rs.metadata.owner_references and rs.metadata.owner_references[0].name == name]


async def change(c: Cluster, fn: Callable[[pb.Deployment], None], name: str = "web") -> pb.Deployment:
    """Read-modify-write of a Deployment, retried on conflicts with the controller's status writes."""
    for _ in range(20):
        d = await deployment(c, name)
        fn(d)
        try:
            return await c.client.update(d)
        except ConflictError:
            continue
    raise AssertionError("the deployment kept changing")


async def set_image(c: Cluster, image: str, name: str = "web") -> pb.Deployment:
    def edit(d: pb.Deployment) -> None:
        d.spec.template.spec.containers[0].image = image

    return await change(c, edit, name)


class PodWatcher:
    """Watches pods and checks an invariant at every observed state."""

    def __init__(self, c: Cluster, selector: str, check: Callable[[dict[str, pb.Pod]], str | None]) -> None:
        self.c = c
        self.selector = selector
        self.check = check
        self.pods: dict[str, pb.Pod] = {}
        self.violations: list[str] = []
        self.states = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.c.client.list("pods", label_selector=self.selector)
        self.pods = {object_key(p): p for p in listed.items}
        self._task = asyncio.create_task(self._run(listed.resource_version))

    async def _run(self, rv: str) -> None:
        async for ev in self.c.client.watch("pods", label_selector=self.selector, resource_version=rv):
            if ev.type == "DELETED":
                self.pods.pop(object_key(ev.object), None)
            else:
                self.pods[object_key(ev.object)] = ev.object
            self.states += 1
            problem = self.check(self.pods)
            if problem:
                self.violations.append(problem)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def rolling_bounds(replicas: int, surge: int, unavailable: int) -> Callable[[dict[str, pb.Pod]], str | None]:
    def check(pods: dict[str, pb.Pod]) -> str | None:
        live = [p for p in pods.values() if not is_terminating(p)]
        available = [p for p in live if is_ready(p)]
        if len(live) > replicas + surge:
            return f"{len(live)} pods > {replicas}+{surge}"
        if len(available) < replicas - unavailable:
            return f"{len(available)} available < {replicas}-{unavailable}"
        return None

    return check


# ---------------------------------------------------------------- tests


async def test_rollout_creates_a_hashed_replicaset_with_revision_and_status(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    created = await cluster.client.create(make_deployment("web", replicas=3))
    d = await until(lambda: complete(cluster), message="rollout complete")
    (rs,) = await replica_sets(cluster)
    template_hash = util.compute_hash(created.spec.template)
    assert rs.metadata.name == f"web-{template_hash}"
    assert rs.spec.selector.match_labels[util.POD_TEMPLATE_HASH] == template_hash
    assert rs.spec.template.metadata.labels[util.POD_TEMPLATE_HASH] == template_hash
    assert rs.metadata.annotations[util.REVISION] == "1" and d.metadata.annotations[util.REVISION] == "1"
    assert rs.metadata.owner_references[0].uid == created.metadata.uid
    assert d.status.ready_replicas == 3 and d.status.unavailable_replicas == 0
    available = condition(d, "Available")
    assert available is not None and (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    pods = [p for p in await cluster.pods(label_selector="app=web") if not is_terminating(p)]
    assert len(pods) == 3 and all(p.metadata.labels[util.POD_TEMPLATE_HASH] == template_hash for p in pods)
    assert sorted(p.spec.node_name for p in pods) == ["n1", "n2", "n3"]
    events = [e.message for e in (await cluster.client.list("events")).items if e.reason == "ScalingReplicaSet"]
    assert f"Scaled up replica set {rs.metadata.name} to 3" in events


async def test_rolling_update_respects_surge_and_unavailability_at_every_observed_state(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    await cluster.client.create(make_deployment("web", replicas=4, max_surge=1, max_unavailable=1))
    await until(lambda: complete(cluster))
    watcher = PodWatcher(cluster, "app=web", rolling_bounds(4, 1, 1))
    await watcher.start()
    await set_image(cluster, "kyb/hello:v2")
    d = await until(lambda: _complete_at_generation(cluster, 2), timeout=30, message="v2 rolled out")
    await watcher.stop()
    assert watcher.violations == [] and watcher.states > 8
    assert d.metadata.annotations[util.REVISION] == "2"
    rss = {rs.spec.template.spec.containers[0].image: rs for rs in await replica_sets(cluster)}
    assert rss["kyb/hello:v2"].spec.replicas == 4 and rss["kyb/hello:v1"].spec.replicas == 0
    live = [p for p in await cluster.pods(label_selector="app=web") if not is_terminating(p)]
    assert {p.spec.containers[0].image for p in live} == {"kyb/hello:v2"} and len(live) == 4


async def _complete_at_generation(c: Cluster, generation: int, name: str = "web") -> pb.Deployment | None:
    d = await complete(c, name)
    return d if d is not None and d.status.observed_generation >= generation else None


async def test_percent_surge_zero_unavailable_never_drops_below_replicas(cluster: Cluster):
    await cluster.add_nodes("n1", "n2")
    await cluster.client.create(make_deployment("web", replicas=5, max_surge="25%", max_unavailable=0))
    await until(lambda: complete(cluster))
    watcher = PodWatcher(cluster, "app=web", rolling_bounds(5, 2, 0))  # 25% of 5 rounds up to 2
    await watcher.start()
    await set_image(cluster, "kyb/hello:v2")
    await until(lambda: _complete_at_generation(cluster, 2), timeout=30)
    await watcher.stop()
    assert watcher.violations == []


async def test_recreate_removes_every_old_pod_before_starting_new_ones(cluster: Cluster):
    await cluster.add_nodes("n1", "n2")
    await cluster.client.create(make_deployment("web", replicas=3, strategy="Recreate"))
    await until(lambda: complete(cluster))

    def no_overlap(pods: dict[str, pb.Pod]) -> str | None:
        images = {p.spec.containers[0].image for p in pods.values()}
        return f"old and new pods at once: {sorted(images)}" if len(images) > 1 else None

    watcher = PodWatcher(cluster, "app=web", no_overlap)
    await watcher.start()
    await set_image(cluster, "kyb/hello:v2")
    await until(lambda: _complete_at_generation(cluster, 2), timeout=30)
    await watcher.stop()
    assert watcher.violations == [] and watcher.states > 6


async def test_rollback_restores_the_old_template_and_reuses_its_replicaset(cluster: Cluster):
    await cluster.add_nodes("n1", "n2")
    await cluster.client.create(make_deployment("web", replicas=2))
    await until(lambda: complete(cluster))
    await set_image(cluster, "kyb/hello:v2")
    await until(lambda: _complete_at_generation(cluster, 2))
    before = {rs.metadata.name for rs in await replica_sets(cluster)}
    assert [r.number for r in await history(cluster.client, "web")] == [1, 2]

    message = await rollback_deployment(cluster.client, "web")
    assert message == "deployment.apps/web rolled back"
    d = await until(lambda: _complete_at_generation(cluster, 3))
    assert d.spec.template.spec.containers[0].image == "kyb/hello:v1"
    assert d.metadata.annotations[util.REVISION] == "3"
    rss = await replica_sets(cluster)
    assert {rs.metadata.name for rs in rss} == before  # the v1 ReplicaSet came back; none was created
    v1 = next(rs for rs in rss if rs.spec.template.spec.containers[0].image == "kyb/hello:v1")
    assert v1.metadata.annotations[util.REVISION] == "3"
    assert v1.metadata.annotations[util.REVISION_HISTORY] == "1"
    assert [r.number for r in await history(cluster.client, "web")] == [2, 3]

    assert "skipped rollback" in await rollback_deployment(cluster.client, "web", to_revision=3)
    with pytest.raises(RollbackError, match="unable to find specified revision 7"):
        await rollback_deployment(cluster.client, "web", to_revision=7)
    await rollback_deployment(cluster.client, "web", to_revision=2)
    d = await until(lambda: _complete_at_generation(cluster, 4))
    assert d.spec.template.spec.containers[0].image == "kyb/hello:v2"


async def test_paused_deployment_does_not_roll_out_until_resumed(cluster: Cluster):
    await cluster.add_nodes("n1")
    await cluster.client.create(make_deployment("web", replicas=2))
    await until(lambda: complete(cluster))
    def pause_and_edit(d: pb.Deployment) -> None:
        d.spec.paused = True
        d.spec.template.spec.containers[0].image = "kyb/hello:v2"

    await change(cluster, pause_and_edit)

    async def paused_observed() -> pb.Deployment | None:
        d = await deployment(cluster)
        progressing = condition(d, "Progressing")
        ok = progressing is not None and progressing.reason == "DeploymentPaused" and progressing.status == "Unknown"
        return d if ok else None

    await until(paused_observed)
    assert len(await replica_sets(cluster)) == 1
    # Scaling works while paused.
    await change(cluster, lambda d: setattr(d.spec, "replicas", 3))
    await until(lambda: _rs_replicas(cluster, [3]))
    assert len(await replica_sets(cluster)) == 1

    d = await change(cluster, lambda d: setattr(d.spec, "paused", False))
    d = await until(lambda: _complete_at_generation(cluster, d.metadata.generation), timeout=30)
    assert d.spec.template.spec.containers[0].image == "kyb/hello:v2" and len(await replica_sets(cluster)) == 2


async def _rs_replicas(c: Cluster, wanted: list[int]) -> bool:
    return sorted(rs.spec.replicas for rs in await replica_sets(c)) == wanted


async def test_progress_deadline_exceeded_when_pods_never_become_ready(cluster: Cluster):
    await cluster.add_nodes("n1", act=False)  # pods are bound but never become ready
    await cluster.client.create(make_deployment("web", replicas=2, progress_deadline=2))

    async def timed_out() -> pb.Condition | None:
        progressing = condition(await deployment(cluster), "Progressing")
        return progressing if progressing is not None and progressing.status == "False" else None

    progressing = await until(timed_out, timeout=15, message="Progressing=False")
    assert progressing.reason == "ProgressDeadlineExceeded"
    assert progressing.message.endswith("has timed out progressing.")
    available = condition(await deployment(cluster), "Available")
    assert available is not None and available.status == "False"


async def test_revision_history_limit_keeps_only_that_many_old_replicasets(cluster: Cluster):
    await cluster.add_nodes("n1")
    await cluster.client.create(make_deployment("web", replicas=1, revision_history_limit=1))
    await until(lambda: complete(cluster))
    for generation, image in ((2, "kyb/hello:v2"), (3, "kyb/hello:v3")):
        await set_image(cluster, image)
        await until(lambda g=generation: _complete_at_generation(cluster, g))

    async def trimmed() -> list[pb.ReplicaSet]:
        rss = await replica_sets(cluster)
        return rss if len(rss) == 2 else []

    rss = await until(trimmed, message="history trimmed to 1 old RS")
    assert sorted(rs.spec.template.spec.containers[0].image for rs in rss) == ["kyb/hello:v2", "kyb/hello:v3"]


async def test_restarted_at_annotation_rolls_out_new_pods(cluster: Cluster):
    await cluster.add_nodes("n1")
    await cluster.client.create(make_deployment("web", replicas=2))
    await until(lambda: complete(cluster))
    old = {p.metadata.name for p in await cluster.pods(label_selector="app=web")}
    await change(cluster, lambda d: d.spec.template.metadata.annotations.update(
        {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}))
    await until(lambda: _complete_at_generation(cluster, 2))

    async def replaced() -> bool:
        live = {p.metadata.name for p in await cluster.pods(label_selector="app=web") if not is_terminating(p)}
        return len(live) == 2 and not (live & old)

    await until(replaced)


async def test_rollover_mid_rollout_and_proportional_scaling(cluster: Cluster):
    cluster.kubelets.ready_after = 1.0  # slow enough to catch the rollout midway
    await cluster.add_nodes("n1", "n2")
    await cluster.client.create(make_deployment("web", replicas=6, max_surge=2, max_unavailable=1))
    await until(lambda: complete(cluster), timeout=30)
    await set_image(cluster, "kyb/hello:v2")
    await until(lambda: _images_active(cluster, 2))
    await set_image(cluster, "kyb/hello:v3")  # roll over v2 before it finished
    d = await until(lambda: _complete_at_generation(cluster, 3), timeout=40)
    assert d.metadata.annotations[util.REVISION] == "3"
    by_image = {rs.spec.template.spec.containers[0].image: rs.spec.replicas for rs in await replica_sets(cluster)}
    assert by_image == {"kyb/hello:v1": 0, "kyb/hello:v2": 0, "kyb/hello:v3": 6}

    # Scaling mid-rollout spreads the change over the active ReplicaSets and stays within bounds.
    await set_image(cluster, "kyb/hello:v4")
    await until(lambda: _images_active(cluster, 2))
    d = await change(cluster, lambda d: setattr(d.spec, "replicas", 12))
    d = await until(lambda: _complete_at_generation(cluster, d.metadata.generation), timeout=60)
    assert d.status.available_replicas == 12


async def _images_active(c: Cluster, count: int) -> bool:
    return len([rs for rs in await replica_sets(c) if rs.spec.replicas > 0]) >= count


async def test_controllers_killed_mid_rollout_carry_on_from_etcd_without_extra_pods(cluster: Cluster):
    cluster.kubelets.ready_after = 0.8
    await cluster.add_nodes("n1", "n2", "n3")
    await cluster.client.create(make_deployment("web", replicas=6, max_surge=1, max_unavailable=1))
    await until(lambda: complete(cluster), timeout=30)
    watcher = PodWatcher(cluster, "app=web", rolling_bounds(6, 1, 1))
    await watcher.start()
    await set_image(cluster, "kyb/hello:v2")
    await until(lambda: _images_active(cluster, 2))
    await cluster.restart_controllers()  # every cache, queue and expectation is lost
    d = await until(lambda: _complete_at_generation(cluster, 2), timeout=40)
    await watcher.stop()
    assert watcher.violations == []
    live = [p for p in await cluster.pods(label_selector="app=web") if not is_terminating(p)]
    assert len(live) == 6 and {p.spec.containers[0].image for p in live} == {"kyb/hello:v2"}
    assert d.metadata.annotations[util.REVISION] == "2" and len(await replica_sets(cluster)) == 2


