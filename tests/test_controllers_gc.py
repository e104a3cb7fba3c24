"""Garbage collection through ownerReferences: background, orphan and foreground deletion of a Deployment.

Real etcd and the real object service with every controller in-process; kubelets are played
through the API (`ApiKubelets`), since only the ownership logic is under test here.
"""

from __future__ import annotations

from harness.builders import make_deployment, make_pod
from harness.waiting import until
from kybernetes.proto import objects_pb2 as pb
from tests import test_controllers_support as support
from tests.test_controllers_support import Cluster, is_ready, is_terminating

cluster = support.cluster


async def rollout(c: Cluster) -> None:
    await c.add_nodes("n1", "n2")
    await c.client.create(make_deployment("web", replicas=3))

    async def ready() -> bool:
        pods = [p for p in await c.pods(label_selector="app=web") if not is_terminating(p)]
        return len(pods) == 3 and all(is_ready(p) for p in pods)

    await until(ready, message="3 ready pods")


async def nothing_left(c: Cluster) -> bool:
    rss = (await c.client.list("replicasets")).items
    pods = await c.pods(label_selector="app=web")
    return not rss and not pods


async def test_background_deletion_removes_replicasets_and_pods(cluster: Cluster):
    await rollout(cluster)
    result = await cluster.client.delete("deployments", "web", unconditional=True)
    assert result.deleted  # the owner goes at once; its dependents follow
    await until(lambda: nothing_left(cluster), message="dependents collected")


async def test_orphan_deletion_keeps_dependents_without_the_reference(cluster: Cluster):
    await rollout(cluster)
    await cluster.client.delete("deployments", "web", unconditional=True, propagation_policy="Orphan")

    async def orphaned() -> list[pb.ReplicaSet]:
        deployments = (await cluster.client.list("deployments")).items
        rss = (await cluster.client.list("replicasets")).items
        return rss if not deployments and rss and all(not rs.metadata.owner_references for rs in rss) else []

    (rs,) = await until(orphaned, message="deployment gone, ReplicaSet orphaned")
    # The ReplicaSet still owns and keeps its pods.
    pods = [p for p in await cluster.pods(label_selector="app=web") if not is_terminating(p)]
    assert len(pods) == 3 and all(p.metadata.owner_references[0].uid == rs.metadata.uid for p in pods)


async def test_foreground_deletion_waits_for_dependents(cluster: Cluster):
    await rollout(cluster)
    await cluster.client.delete("deployments", "web", unconditional=True, propagation_policy="Foreground")
    held = await cluster.client.get("deployments", "web")
    assert held.metadata.HasField("deletion_timestamp") and "foregroundDeletion" in held.metadata.finalizers

    async def all_gone() -> bool:
        return not (await cluster.client.list("deployments")).items and await nothing_left(cluster)

    await until(all_gone, message="deployment deleted after its dependents")


async def test_a_pod_whose_owner_is_gone_is_collected_and_one_with_a_live_owner_is_kept(cluster: Cluster):
    await cluster.add_nodes("n1")
    keeper = await cluster.client.create(make_pod("keeper"))
    for name, owners in (("dangling", [("ghost", "00000000-0000-0000-0000-000000000000")]),
                         ("shared", [("ghost", "00000000-0000-0000-0000-000000000000"),
                                     ("keeper", keeper.metadata.uid)])):
        pod = make_pod(name)
        for owner_name, uid in owners:
            pod.metadata.owner_references.add(api_version="v1", kind="Pod", name=owner_name, uid=uid)
        await cluster.client.create(pod)

    async def settled() -> bool:
        names = {p.metadata.name: p for p in await cluster.pods() if not is_terminating(p)}
        shared = names.get("shared")
        return "dangling" not in names and shared is not None and \
            [r.name for r in shared.metadata.owner_references] == ["keeper"]

    await until(settled, message="dangling collected, shared kept with only its live owner")
