"""Faults around a real node: kubelet SIGKILL and restart, master restart, and bad pods the kubelet must survive."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING

import pytest

from harness.builders import make_pod
from harness.waiting import until
from kybernetes.proto import objects_pb2 as pb
from tests.test_kubelet_pods import ready, running

if TYPE_CHECKING:
    from harness.kubelet import Node
    from harness.registry import Registry

pytestmark = pytest.mark.containerd
# The `node` and `cluster_master` fixtures.

LOG_LIMIT = 2**20  # the node fixtures' --container-log-max-size


def kubelet_log_count(node: Node, event: str) -> int:
    """How many lines of the kubelet's (JSON) log record `event`."""
    count = 0
    for line in node.kubelet.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            count += 1
    return count


async def relist_passes(node: Node, pod: pb.Pod, passes: int) -> None:
    """Return once the kubelet has been through `passes` more passes of its periodic relist loop.

    Each pass rotates the container logs grown past the size limit, then relists the runtime's containers.
    The pod's container must be quiet: its log is padded past the limit and the rotation awaited, `passes`
    times, so that at least `passes - 1` relists have run since the call.
    """
    meta = pod.metadata
    log = node.containerd.root_dir / "pods" / f"{meta.namespace}_{meta.name}_{meta.uid}" / "main" / "0.log"

    async def rotated() -> bool:
        return log.stat().st_size <= LOG_LIMIT

    for _ in range(passes):
        with log.open("ab") as handle:
            handle.write(b"padding\n" * (LOG_LIMIT // 8 + 1))
        await until(rotated, timeout=30)


async def test_kubelet_sigkill_and_restart_keeps_containers_and_removes_unbound_pods(node: Node):
    await node.create(make_pod("keep", command=["sleep", "3600"], grace_seconds=1))
    await node.create(make_pod("drop", command=["sleep", "3600"], grace_seconds=1))
    keep = await node.pod_where("keep", lambda p: running(p) and ready(p))
    drop = await node.pod_where("drop", running)
    keep_id = keep.status.container_statuses[0].container_id
    drop_id = drop.status.container_statuses[0].container_id
    keep_pid = node.task_pid(keep_id)

    await node.kubelet.kill()
    # While the kubelet is dead, "drop" is deleted for good (a force delete: nobody confirms it).
    await node.client.delete("pods", "drop", unconditional=True, grace_period_seconds=0)
    assert node.task_pid(drop_id)  # nothing on the node noticed yet

    registrations = node.kubelet.registrations()
    await node.kubelet.start()
    assert node.kubelet.registrations() == registrations + 1

    async def drop_removed() -> bool:
        return drop_id not in node.container_ids()

    await until(drop_removed, timeout=30)
    # A few relists later the adopted pod is untouched: same container, same process, no restart.
    await relist_passes(node, keep, 3)
    keep = await node.client.get("pods", "keep")
    status = keep.status.container_statuses[0]
    assert status.container_id == keep_id and status.restart_count == 0 and running(keep) and ready(keep)
    assert node.task_pid(keep_id) == keep_pid
    # And it is still managed: a crash is restarted by the new kubelet.
    os.kill(keep_pid or 0, signal.SIGKILL)
    await node.pod_where("keep", lambda p: running(p) and p.status.container_statuses[0].restart_count == 1)


async def test_master_restart_leaves_pods_alone_and_status_reporting_resumes(node: Node):
    await node.create(make_pod("steady", command=["sleep", "3600"], grace_seconds=1))
    pod = await node.pod_where("steady", running)
    container_id = pod.status.container_statuses[0].container_id
    pid = node.task_pid(container_id)

    await node.master.process.stop()
    # With the master away the pod keeps running, and changes still happen on the node.
    os.kill(pid or 0, signal.SIGKILL)

    async def restarted_locally() -> bool:
        new = [cid for cid in node.container_ids() if cid != container_id]
        return bool(new) and any(node.task_pid(cid) for cid in new)

    await until(restarted_locally, timeout=30)

    registrations = node.kubelet.registrations()
    await node.master.process.start()
    await node.kubelet.wait_registered(registrations + 1)
    pod = await node.pod_where("steady", lambda p: running(p) and p.status.container_statuses[0].restart_count == 1,
                               message="the change made while the master was away reported")
    assert pod.status.container_statuses[0].container_id != container_id
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 137


async def test_missing_image_reports_err_image_pull_then_backoff_and_deletes(node: Node, registry: Registry):
    await node.create(make_pod("ghost", image=registry.reference("kyb/does-not-exist:1"), grace_seconds=1))
    reasons: set[str] = set()

    def waiting(p: pb.Pod) -> bool:
        if p.status.container_statuses:
            reasons.add(p.status.container_statuses[0].state.waiting.reason)
        return {"ErrImagePull", "ImagePullBackOff"} <= reasons

    pod = await node.pod_where("ghost", waiting, message="ErrImagePull, then ImagePullBackOff", timeout=40)
    assert pod.status.phase == "Pending"
    pull_error = [e for e in (await node.client.list("events", namespace="default")).items
                  if e.involved_object.name == "ghost" and e.reason == "Failed"]
    assert pull_error and "does-not-exist" in pull_error[0].message
    assert node.kubelet.alive

    pod = await node.client.get("pods", "ghost")
    await node.client.delete("pods", "ghost", resource_version=pod.metadata.resource_version)
    await node.gone("ghost")


async def test_unreachable_registry_and_missing_command_give_reasons(node: Node):
    await node.create(make_pod("offline", image="127.0.0.1:1/kyb/busybox:1", grace_seconds=1))
    await node.create(make_pod("nocmd", command=["/bin/no-such-command"], grace_seconds=1))
    await node.create(make_pod("fine", command=["sleep", "3600"], grace_seconds=1))

    pod = await node.pod_where("offline", lambda p: p.status.container_statuses and
                               p.status.container_statuses[0].state.waiting.reason in ("ErrImagePull",
                                                                                       "ImagePullBackOff"))
    assert "127.0.0.1:1" in pod.status.container_statuses[0].state.waiting.message or \
        pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    pod = await node.pod_where("nocmd", lambda p: p.status.container_statuses and
                               p.status.container_statuses[0].state.waiting.reason == "RunContainerError")
    assert "no-such-command" in pod.status.container_statuses[0].state.waiting.message
    assert pod.status.phase == "Pending"
    await node.pod_where("fine", running)
    assert node.kubelet.alive


async def test_image_pulled_from_an_insecure_registry(node: Node, pushed_test_images: dict[str, str]):
    pod = make_pod("pulled", image=pushed_test_images["kyb/hello:v2"], grace_seconds=1)
    pod.spec.containers[0].image_pull_policy = "Always"
    await node.create(pod)
    await node.pod_where("pulled", lambda p: running(p) and ready(p), timeout=60)
    events = await node.client.list("events", namespace="default")
    reasons = {e.reason for e in events.items if e.involved_object.name == "pulled"}
    assert {"Pulling", "Pulled", "Started"} <= reasons
    code, out, _ = await node.exec("pulled", ["cat", "/www/index.html"])
    assert code == 0 and b"version v2" in out



async def test_containerd_restart_is_survived(restartable_node: Node):
    node = restartable_node
    daemon = node.restartable
    await node.create(make_pod("durable", command=["sleep", "3600"], grace_seconds=1))
    pod = await node.pod_where("durable", running)
    container_id = pod.status.container_statuses[0].container_id
    pid = node.task_pid(container_id)

    failed = kubelet_log_count(node, "relist failed")
    daemon.stop()

    async def relists_failed() -> bool:
        return kubelet_log_count(node, "relist failed") >= failed + 2

    await until(relists_failed, timeout=30)  # a few relists fail meanwhile; nothing is torn down
    assert node.kubelet.alive
    os.kill(pid or 0, 0)  # the container outlives its daemon
    daemon.start()

    # Back in business: a few relists later, the same container...
    await relist_passes(node, pod, 3)
    pod = await node.client.get("pods", "durable")
    assert pod.status.container_statuses[0].container_id == container_id and running(pod)
    # ...which ran until now (it is the one that dies next), and a crash is noticed and restarted.
    os.kill(node.task_pid(container_id) or 0, signal.SIGKILL)
    pod = await node.pod_where("durable",
                               lambda p: running(p) and p.status.container_statuses[0].restart_count == 1)
    assert pod.status.container_statuses[0].last_state.terminated.container_id == container_id
