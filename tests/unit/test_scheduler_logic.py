"""Scheduler pieces without a cluster: incremental accounting, filters, messages, scores, queue, decisions."""

from __future__ import annotations

import random
from collections import Counter

from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.controllers.scheduler import filters
from kybernetes.master.controllers.scheduler.cache import PodInfo, SchedulerCache
from kybernetes.master.controllers.scheduler.queue import SchedulingQueue
from kybernetes.master.controllers.scheduler.scheduler import Scheduler, feasible_nodes_to_find
from kybernetes.master.controllers.scheduler.scores import select_host
from kybernetes.proto import objects_pb2 as pb


def node(name: str, *, cpu: str = "2", memory: str = "4Gi", pods: str = "110", ready: str = "True",
         labels: dict[str, str] | None = None, unschedulable: bool = False,
         taints: tuple[tuple[str, str, str], ...] = ()) -> pb.Node:
    n = pb.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    n.spec.unschedulable = unschedulable
    for key, value, effect in taints:
        n.spec.taints.add(key=key, value=value, effect=effect)
    n.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": pods})
    n.status.conditions.add(type="Ready", status=ready)
    return n


def pod(name: str, *, cpu: str = "", memory: str = "", node_name: str = "", owner: str = "",
        host_port: int = 0, limit_cpu: str = "") -> pb.Pod:
    p = pb.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.node_name = node_name
    c = p.spec.containers.add(name="main", image="x")
    if cpu:
        c.resources.requests["cpu"] = cpu
    if memory:
        c.resources.requests["memory"] = memory
    if limit_cpu:
        c.resources.limits["cpu"] = limit_cpu
    if host_port:
        c.ports.add(container_port=80, host_port=host_port, protocol="TCP")
    if owner:
        p.metadata.owner_references.add(uid=owner, kind="ReplicaSet", name="rs", api_version="apps/v1",
                                        controller=True)
    return p


def test_accounting_is_incremental_through_assume_confirm_forget_and_delete():
    cache = SchedulerCache()
    cache.set_node(node("n1"))
    info = cache.nodes["n1"]
    bound = pod("a", cpu="500m", memory="1Gi", node_name="n1", owner="rs1", host_port=8080)
    cache.set_pod(bound)
    assert (info.requested_cpu, info.requested_memory, len(info.pods)) == (500, 1 << 30, 1)
    assert info.host_ports[("TCP", 8080)] == 1 and info.owners["rs1"] == 1

    pending = pod("b", cpu="250m")
    cache.assume(PodInfo.from_pod(pending), "n1")
    assert cache.is_assumed("default/b") and info.requested_cpu == 750
    cache.set_pod(pending)  # an older, unbound view of the pod must not undo the assumption
    assert cache.is_assumed("default/b") and info.requested_cpu == 750
    confirmed = pod("b", cpu="250m", node_name="n1")
    cache.set_pod(confirmed)
    assert not cache.is_assumed("default/b") and info.requested_cpu == 750 and len(info.pods) == 2

    cache.assume(PodInfo.from_pod(pod("c", cpu="100m")), "n1")
    cache.forget("default/c")
    assert info.requested_cpu == 750

    finished = pod("a", cpu="500m", memory="1Gi", node_name="n1", owner="rs1", host_port=8080)
    finished.status.phase = "Succeeded"
    cache.set_pod(finished)  # terminal pods hold nothing
    assert info.requested_cpu == 250 and not info.host_ports and not info.owners
    cache.remove_pod(confirmed)
    assert (info.requested_cpu, info.requested_memory, len(info.pods)) == (0, 0, 0)


def test_pods_on_a_node_not_yet_seen_are_accounted_when_it_appears():
    cache = SchedulerCache()
    cache.set_pod(pod("early", cpu="1", node_name="late"))
    assert cache.node_names() == []  # no Node object: not a candidate
    cache.set_node(node("late"))
    assert cache.node_names() == ["late"] and cache.nodes["late"].requested_cpu == 1000
    cache.remove_node("late")
    assert cache.node_names() == [] and cache.nodes["late"].requested_cpu == 1000


def test_limits_count_as_requests_when_requests_are_missing():
    assert PodInfo.from_pod(pod("p", limit_cpu="300m")).cpu == 300
    empty = PodInfo.from_pod(pod("q"))
    assert empty.cpu == 0 and empty.nonzero_cpu == 100 and empty.nonzero_memory == 200 * 1024 * 1024


def test_filters_and_the_explanation():
    cache = SchedulerCache()
    for n in (node("cordoned", unschedulable=True), node("small1", memory="1Gi"), node("small2", memory="1Gi"),
              node("down", ready="Unknown"), node("tainted", taints=(("gpu", "yes", "NoSchedule"),)),
              node("full", pods="0")):
        cache.set_node(n)
    big = PodInfo.from_pod(pod("big", memory="2Gi"))
    reasons: Counter[str] = Counter()
    for name in cache.node_names():
        reasons.update(filters.run_filters(big, cache.nodes[name]))
    assert filters.fit_error_message(6, reasons) == (
        "0/6 nodes are available: 2 Insufficient memory, 1 Too many pods, 1 node(s) had untolerated taint "
        "{gpu: yes}, 1 node(s) were not ready, 1 node(s) were unschedulable.")
    assert filters.fit_error_message(0, Counter()) == "0/0 nodes are available: no nodes available to schedule pods."


def test_toleration_matching_follows_kubernetes():
    taint = pb.Taint(key="k", value="v", effect="NoSchedule")
    assert filters.tolerates_taint([pb.Toleration(key="k", operator="Equal", value="v", effect="NoSchedule")], taint)
    assert filters.tolerates_taint([pb.Toleration(key="k", operator="Exists")], taint)
    assert filters.tolerates_taint([pb.Toleration(operator="Exists")], taint)  # empty key + Exists: everything
    assert not filters.tolerates_taint([pb.Toleration(key="k", operator="Equal", value="w")], taint)
    assert not filters.tolerates_taint([pb.Toleration(key="k", operator="Exists", effect="NoExecute")], taint)


def test_scores_spread_an_owner_first_then_prefer_the_least_allocated():
    cache = SchedulerCache()
    for name in ("a", "b", "c"):
        cache.set_node(node(name, cpu="4"))
    cache.set_pod(pod("x1", node_name="a", owner="rs1"))
    cache.set_pod(pod("busy", cpu="3", node_name="b"))
    new = PodInfo.from_pod(pod("x2", owner="rs1"))
    nodes = [cache.nodes[n] for n in ("a", "b", "c")]
    assert select_host(new, nodes).name == "c"  # b and c have no rs1 pod; c is emptier
    cache.set_pod(pod("x3", node_name="c", owner="rs1"))
    assert select_host(new, nodes).name == "b"  # spreading wins over allocation
    ties = Counter(select_host(PodInfo.from_pod(pod("free")), [cache.nodes["a"], cache.nodes["c"]],
                               random.Random(seed)).name for seed in range(200))
    assert ties["a"] > 50 and ties["c"] > 50  # equal nodes share the load


def test_feasible_node_search_shrinks_with_cluster_size():
    assert feasible_nodes_to_find(50) == 50
    assert feasible_nodes_to_find(1000) == 420  # 42 %
    assert feasible_nodes_to_find(5000) == 500  # 10 %
    assert feasible_nodes_to_find(20000) == 1000  # the 5 % floor


async def test_queue_backoff_pool_and_moves():
    now = [100.0]
    q = SchedulingQueue(initial_backoff=1.0, max_backoff=4.0, clock=lambda: now[0])
    q.add("p")
    assert await q.pop() == "p"
    q.mark_unschedulable("p")
    q.done("p")
    assert q.is_unschedulable("p") and len(q) == 0
    q.move_all_to_active()
    assert not q.is_unschedulable("p") and q.active.is_waiting("p")  # waiting out its 1 s back-off
    assert 0.9 < q.backoff_remaining("p") <= 1.0
    now[0] += 5
    assert q.backoff_remaining("p") == 0.0

    # A cluster change while the pod was being decided on sends it back instead of into the pool.
    q2 = SchedulingQueue(clock=lambda: now[0])
    q2.add("r")
    assert await q2.pop() == "r"
    q2.move_all_to_active()
    q2.mark_unschedulable("r")
    q2.done("r")
    assert not q2.is_unschedulable("r") and q2.active.is_waiting("r")

    # Pods stuck in the pool for too long are retried anyway.
    q3 = SchedulingQueue(flush_after=60, clock=lambda: now[0])
    q3.add("s")
    await q3.pop()
    q3.mark_unschedulable("s")
    q3.done("s")
    now[0] += 61
    q3.flush_unschedulable()
    assert not q3.is_unschedulable("s")


class _NoClient:
    """The scheduler's decision path never calls the API; the bind path is not exercised here."""


async def test_a_thousand_pods_are_decided_without_scanning_pods():
    informers = InformerFactory(client=_NoClient())
    scheduler = Scheduler(client=_NoClient(), informers=informers, recorder=None, rng=random.Random(1))
    for i in range(100):
        scheduler.cache.set_node(node(f"n{i}", cpu="64", memory="256Gi"))
    for i in range(5000):  # pods already bound: accounting only
        scheduler.cache.set_pod(pod(f"old{i}", cpu="10m", node_name=f"n{i % 100}", owner="rs-old"))
    placements: Counter[str] = Counter()
    for i in range(1000):
        info = PodInfo.from_pod(pod(f"new{i}", cpu="100m", owner="rs-new"))
        chosen, message = scheduler.find_node(info)
        assert chosen is not None, message
        scheduler.cache.assume(info, chosen.name)
        placements[chosen.name] += 1
    assert set(placements.values()) == {10}  # perfectly spread by owner
