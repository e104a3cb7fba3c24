"""The object API against a real etcd and a real kyb-master process, through the Python client."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from harness.builders import make_pod
from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.ctl.client import (
    AlreadyExistsError,
    Client,
    ConflictError,
    ExpiredError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from kybernetes.proto import api_pb2
from kybernetes.proto import objects_pb2 as pb


async def test_crud_with_selectors(client: Client):
    a = await client.create(make_pod("a", labels={"app": "web", "tier": "fe", "env": "prod"}, node="n1"))
    await client.create(make_pod("b", labels={"app": "web", "tier": "db", "env": "dev"}, node="n2"))
    await client.create(make_pod("c", labels={"app": "api"}, namespace="other"))
    assert a.metadata.uid and a.metadata.generation == 1 and a.status.phase == "Pending"
    assert a.spec.termination_grace_period_seconds == 30 and a.spec.restart_policy == "Always"

    got = await client.get("pods", "a")
    assert got.metadata.resource_version == a.metadata.resource_version

    names = lambda r: sorted(o.metadata.name for o in r.items)  # noqa: E731
    assert names(await client.list("pods")) == ["a", "b", "c"]
    assert names(await client.list("pods", namespace="default")) == ["a", "b"]
    assert names(await client.list("pods", label_selector="app=web,tier!=db")) == ["a"]
    assert names(await client.list("pods", label_selector="env in (dev,qa)")) == ["b"]
    assert names(await client.list("pods", label_selector="!env")) == ["c"]
    assert names(await client.list("pods", field_selector="spec.nodeName=n2")) == ["b"]
    assert names(await client.list("pods", field_selector="metadata.namespace=other")) == ["c"]
    assert names(await client.list("po", field_selector="status.phase=Pending,metadata.name!=a")) == ["b", "c"]
    listed = await client.list("pods")
    assert int(listed.resource_version) >= max(int(o.metadata.resource_version) for o in listed.items)

    with pytest.raises(AlreadyExistsError):
        await client.create(make_pod("a"))
    with pytest.raises(NotFoundError, match='pods "nope" not found'):
        await client.get("pods", "nope")
    with pytest.raises(InvalidError, match="field label not supported"):
        await client.list("pods", field_selector="spec.bogus=1")

    # A metadata change keeps generation; a spec change bumps it; status is not written by Update.
    a.metadata.labels["x"] = "y"
    a.status.phase = "Running"
    a2 = await client.update(a)
    assert a2.metadata.generation == 1 and a2.status.phase == "Pending"
    a2.spec.containers[0].image = "kyb/busybox:2"
    a3 = await client.update(a2)
    assert a3.metadata.generation == 2
    a3.status.phase = "Running"
    a4 = await client.update_status(a3)
    assert a4.status.phase == "Running" and a4.metadata.generation == 2

    # Delete needs the version read, or an explicit unconditional.
    b = await client.get("pods", "b")
    with pytest.raises(InvalidError, match="resourceVersion"):
        await client.delete("pods", "b")
    with pytest.raises(ConflictError):
        await client.delete("pods", "b", resource_version=a.metadata.resource_version)
    c = await client.delete("pods", "c", namespace="other", unconditional=True)
    assert c.deleted
    with pytest.raises(NotFoundError):
        await client.get("pods", "c", namespace="other")
    # b is bound to a node: graceful deletion waits for its kubelet (a zero grace period confirms).
    res = await client.delete("pods", "b", resource_version=b.metadata.resource_version)
    assert not res.deleted and res.object.metadata.HasField("deletion_timestamp")
    assert res.object.metadata.deletion_grace_period_seconds == 30
    res = await client.delete("pods", "b", unconditional=True, grace_period_seconds=0)
    assert res.deleted
    with pytest.raises(NotFoundError):
        await client.get("pods", "b")


async def test_finalizers_make_deletion_two_step(client: Client):
    pod = make_pod("fin")
    pod.metadata.finalizers.append("example.com/hold")
    pod = await client.create(pod)
    res = await client.delete("pods", "fin", resource_version=pod.metadata.resource_version)
    assert not res.deleted
    held = await client.get("pods", "fin")
    assert held.metadata.HasField("deletion_timestamp")
    del held.metadata.finalizers[:]
    await client.update(held)
    with pytest.raises(NotFoundError):
        await client.get("pods", "fin")


async def test_concurrent_updaters_exactly_one_wins(client: Client):
    base = await client.create(make_pod("race"))
    results = []

    async def updater(label: str) -> None:
        mine = pb.Pod()
        mine.CopyFrom(base)
        mine.metadata.labels["writer"] = label
        try:
            await client.update(mine)
            results.append(("ok", label))
        except ConflictError:
            results.append(("aborted", label))

    await asyncio.gather(*(updater(str(i)) for i in range(8)))
    winners = [label for outcome, label in results if outcome == "ok"]
    assert len(winners) == 1, results
    assert len([r for r in results if r[0] == "aborted"]) == 7
    assert (await client.get("pods", "race")).metadata.labels["writer"] == winners[0]


async def test_invalid_objects_are_refused_with_the_field_and_nothing_is_written(client: Client):
    before = (await client.list("pods")).resource_version
    bad_name = make_pod("Bad_Name")
    bad_image = make_pod("ok1", image="UPPER/Case:tag")
    bad_port = make_pod("ok2")
    bad_port.spec.containers[0].ports.add(container_port=70000)
    bad_policy = make_pod("ok3")
    bad_policy.spec.restart_policy = "Sometimes"
    bad_quantity = make_pod("ok4")
    bad_quantity.spec.containers[0].resources.limits["memory"] = "lots"
    bad_label = make_pod("ok5", labels={"bad key!": "v"})
    cases = [(bad_name, "metadata.name"), (bad_image, "spec.containers[0].image"),
             (bad_port, "spec.containers[0].ports[0].containerPort"), (bad_policy, "spec.restartPolicy"),
             (bad_quantity, "spec.containers[0].resources.limits[memory]"), (bad_label, "metadata.labels")]
    for obj, path in cases:
        with pytest.raises(InvalidError) as err:
            await client.create(obj)
        assert path in err.value.message, err.value.message
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

    dep = pb.Deployment()
    dep.metadata.name = "web"
    dep.spec.replicas = -1
    dep.spec.selector.match_labels["app"] = "web"
    dep.spec.template.metadata.labels["app"] = "web"
    dep.spec.template.spec.containers.add(name="web", image="kyb/hello:v1")
    with pytest.raises(InvalidError, match=r"spec\.replicas"):
        await client.create(dep)
    # Nothing reached etcd: the store's revision did not move.
    assert (await client.list("pods")).resource_version == before


async def test_watch_streams_changes_with_selectors(client: Client):
    start = await client.list("pods")
    events: list[tuple[str, str]] = []

    async def collect() -> None:
        async for ev in client.watch("pods", label_selector="app=web", resource_version=start.resource_version):
            events.append((ev.type, ev.object.metadata.name))
            if len(events) == 4:
                return

    task = asyncio.create_task(collect())
    p = await client.create(make_pod("w1", labels={"app": "web"}))
    await client.create(make_pod("other", labels={"app": "db"}))
    p.metadata.labels["v"] = "2"
    p = await client.update(p)
    p.metadata.labels["app"] = "gone"  # stops matching: DELETED for this watcher
    p = await client.update(p)
    p.metadata.labels["app"] = "web"  # matches again: ADDED
    await client.update(p)
    await asyncio.wait_for(task, 15)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "w1")]


async def test_watch_resume_loses_nothing_and_repeats_nothing(client: Client, master: MasterProcess):
    """1,000 writes while a watcher drops its stream and reconnects again and again."""
    start = (await client.list("pods")).resource_version
    written: list[int] = []

    async def writer() -> None:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                obj = await client.create(make_pod(f"p{i:04d}"))
                written.append(int(obj.metadata.resource_version))

        await asyncio.gather(*(one(i) for i in range(1000)))

    seen: list[int] = []
    writing = asyncio.create_task(writer())
    rv = start
    reconnects = 0
    async with master.client() as watcher:
        while len(seen) < 1000:
            stream = watcher.watch_once("pods", resource_version=rv)
            taken = 0
            async for ev in stream:
                seen.append(int(ev.resource_version))
                rv = ev.resource_version
                taken += 1
                if taken == 97 or len(seen) == 1000:
                    break  # drop the stream mid-flight
            await stream.aclose()
            reconnects += 1
    await writing
    assert reconnects >= 10
    assert seen == sorted(written), "every revision exactly once, in order"


async def test_compaction_gives_out_of_range_and_the_client_relists(client: Client, etcd):
    a = await client.create(make_pod("old-a"))
    await client.create(make_pod("old-b"))
    old_rv = a.metadata.resource_version
    await client.delete("pods", "old-a", unconditional=True)
    await client.create(make_pod("new-c"))
    current = (await client.list("pods")).resource_version
    from kybernetes.master.store.etcd import Store

    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    await store.compact(int(current))
    await store.close()

    with pytest.raises(ExpiredError, match="too old"):
        async for _ in client.watch_once("pods", resource_version=old_rv):
            pass

    # The resilient watch re-lists: it reports old-a as deleted relative to what it had seen (nothing),
    # so it brings the consumer to the current state, then carries on with new changes.
    got: list[tuple[str, str]] = []

    async def consume() -> None:
        async for ev in client.watch("pods", resource_version=old_rv):
            got.append((ev.type, ev.object.metadata.name))
            if ("ADDED", "after") in got:
                return

    task = asyncio.create_task(consume())
    await until(lambda: _truthy(len(got) >= 2))
    await client.create(make_pod("after"))
    await asyncio.wait_for(task, 15)
    assert sorted(got[:2]) == [("ADDED", "new-c"), ("ADDED", "old-b")]
    assert got[-1] == ("ADDED", "after")


async def _truthy(value: object) -> object:
    return value


async def test_etcd_down_is_unavailable_and_recovers_without_restarting_master(client: Client, etcd,
                                                                                master: MasterProcess):
    await client.create(make_pod("before"))
    await etcd.stop()
    with pytest.raises(UnavailableError):
        await client.get("pods", "before")
    with pytest.raises(UnavailableError):
        await client.create(make_pod("during"))
    await etcd.start()
    got = await until(lambda: client.get("pods", "before"), timeout=30)
    assert got.metadata.name == "before"
    await client.create(make_pod("after"))
    assert master.proc is not None and master.proc.returncode is None


async def test_three_member_etcd_survives_one_member_killed(etcd_cluster, tmp_path):
    proc = MasterProcess(etcd=[m.endpoint for m in etcd_cluster], etcd_tls=etcd_cluster[0].client_tls,
                         log_path=tmp_path / "master.log",
                         extra_args=["--controllers="])
    await proc.start()
    try:
        async with proc.client() as c:
            await c.create(make_pod("x0"))
            await etcd_cluster[0].kill()
            # The channel fails over to a live member; give it a moment, then every call must work.
            await until(lambda: c.create(make_pod("x1")), timeout=20)
            for i in range(2, 22):
                await c.create(make_pod(f"x{i}"))
            assert len((await c.list("pods")).items) == 22
    finally:
        await proc.stop()


async def test_reflection_lists_the_services(master: MasterProcess):
    # The reflection database is synchronous; run it in a thread against a blocking channel (mutual TLS too).
    def services() -> list[str]:
        with grpc.secure_channel(master.address, master.credentials().channel_credentials()) as channel:
            return list(ProtoReflectionDescriptorDatabase(channel).get_services())

    names = await asyncio.to_thread(services)
    assert "kyb.v1.ObjectAPI" in names and "grpc.health.v1.Health" in names


async def test_events_expire_through_a_lease_that_updates_keep(client: Client, etcd):
    from aetcd import rpc

    from kybernetes.master.store.etcd import Store

    ev = pb.Event()
    ev.metadata.name = "web.1"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "web"
    ev.reason, ev.message = "Started", "Started container"
    created = await client.create(ev)
    created.count = 2
    await client.update(created)
    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        resp = await store._kv.Range(rpc.RangeRequest(key=b"/registry/events/default/web.1"))
        lease = resp.kvs[0].lease
        assert lease != 0, "an updated Event must keep its lease"
        ttl = await store._lease.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lease))
        assert 3600 <= ttl.TTL <= 3700
    finally:
        await store.close()


async def test_a_burst_of_events_is_written_in_few_transactions_and_a_taken_name_fails_alone(etcd):
    from aetcd import rpc

    from kybernetes.core.api.errors import AlreadyExistsError
    from kybernetes.core.api.kinds import kind_of
    from kybernetes.master.store.batch import CreateBatcher
    from kybernetes.master.store.etcd import Store

    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        lease = await store.grant_lease(60)
        batcher = CreateBatcher(store=store, max_batch=100)

        def event(name: str) -> pb.Event:
            ev = pb.Event(reason="Started", message="Started container")
            ev.metadata.name, ev.metadata.namespace = name, "default"
            ev.involved_object.kind, ev.involved_object.name = "Pod", "web"
            return ev

        await store.create(event("web.taken"))
        names = [f"web.{i}" for i in range(150)]
        results = await asyncio.gather(*(batcher.create(event(n), lease=lease) for n in names),
                                       batcher.create(event("web.taken"), lease=lease), return_exceptions=True)
        assert isinstance(results[-1], AlreadyExistsError)
        assert all(isinstance(r, pb.Event) and r.metadata.resource_version for r in results[:-1]), results[:3]
        # 151 creates waiting at once: the first alone, then batches of at most 100 (the one with the taken
        # name falls back to single creates), far fewer transactions than creates.
        assert batcher.transactions <= 4, batcher.transactions
        listed, _ = await store.list(kind_of(pb.Event()), "default")
        assert {e.metadata.name for e in listed} == {*names, "web.taken"}
        resp = await store._kv.Range(rpc.RangeRequest(key=b"/registry/events/default/web.149"))
        assert resp.kvs[0].lease == lease
    finally:
        await store.close()


async def _refused_unwritten(client: Client, call, path: str, rule: str) -> str:
    """Run a write that must be refused with INVALID_ARGUMENT naming `path` and `rule`, and change nothing (no
    object of the kinds written here: etcd's revision itself also moves with the master's own background
    writes, its leader Lease and presence)."""
    before = await _objects(client)
    with pytest.raises(InvalidError) as refused:
        await call
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{path}: " in refused.value.message and rule in refused.value.message, refused.value.message
    assert await _objects(client) == before, "a refused write reached etcd"
    return refused.value.message


async def _objects(client: Client) -> dict[tuple[str, str, str], str]:
    """(resource, namespace, name) -> resourceVersion of every object of the kinds the refusal tests write."""
    return {(resource, item.metadata.namespace, item.metadata.name): item.metadata.resource_version
            for resource in ("pods", "endpoints", "nodes", "events")
            for item in (await client.list(resource)).items}


async def test_a_bound_pod_keeps_its_node_and_spec_but_may_change_its_image(client: Client):
    unbound = await client.create(make_pod("moving", labels={"app": "web"}))
    bound = copy_pod(unbound)
    bound.spec.node_name = "n1"
    bound = await client.update(bound)  # the binding: nodeName set once
    moved = copy_pod(bound)
    moved.spec.node_name = "n2"
    await _refused_unwritten(client, client.update(moved), "spec.nodeName", "field is immutable once set")
    host = copy_pod(bound)
    host.spec.host_network = True
    message = await _refused_unwritten(client, client.update(host), "spec",
                                       "Forbidden: pod updates may not change fields other than")
    assert "spec.hostNetwork" in message
    extra = copy_pod(bound)
    extra.spec.containers.add(name="sidecar", image="kyb/busybox:1")
    await _refused_unwritten(client, client.update(extra), "spec", "pod updates may not change fields")
    image = copy_pod(bound)
    image.spec.containers[0].image = "kyb/busybox:2"
    image.metadata.labels["app"] = "api"
    updated = await client.update(image)
    assert (updated.spec.containers[0].image, updated.spec.node_name) == ("kyb/busybox:2", "n1")


def copy_pod(pod: pb.Pod) -> pb.Pod:
    out = pb.Pod()
    out.CopyFrom(pod)
    return out


async def test_addresses_a_node_would_act_on_are_refused_and_nothing_is_written(client: Client):
    pod = await client.create(make_pod("addr", node="n1"))
    for ip in ("fd00::5", "10.9.9.9", "10.244.1.5; rm -rf /"):
        bad = copy_pod(pod)
        bad.status.pod_ip = ip
        await _refused_unwritten(client, client.update_status(bad), "status.podIP", "cluster's pod range")
    good = copy_pod(pod)
    good.status.pod_ip = "10.244.1.5"
    assert (await client.update_status(good)).status.pod_ip == "10.244.1.5"
    for ip, rule in (("169.254.169.254", "link-local"), ("127.0.0.1", "loopback"), ("fd00::5", "IPv4")):
        ep = pb.Endpoints()
        ep.metadata.name = "web"
        ep.subsets.add().addresses.add(ip=ip)
        await _refused_unwritten(client, client.create(ep), "subsets[0].addresses[0].ip", rule)
    probed = make_pod("probed")
    probed.spec.containers[0].liveness_probe.http_get.host = "169.254.169.254"
    probed.spec.containers[0].liveness_probe.http_get.port.int_val = 80
    await _refused_unwritten(client, client.create(probed), "spec.containers[0].livenessProbe.httpGet.host",
                             "must be an IPv4 address in the cluster's pod range")
    node = pb.Node()
    node.metadata.name = "hijack"
    node.spec.pod_cidr = "0.0.0.0/1"
    await _refused_unwritten(client, client.create(node), "spec.podCIDR", "must lie within the cluster CIDR")


async def test_an_object_over_one_mib_is_invalid_argument_naming_it(client: Client):
    for size in (1024 * 1024 + 1, 2 * 1024 * 1024):  # under etcd's 1.5 MiB request limit, and over it
        ev = pb.Event()
        ev.metadata.name = "huge.1"
        ev.involved_object.kind, ev.involved_object.name = "Pod", "web"
        ev.message = "x" * size
        message = await _refused_unwritten(client, client.create(ev), "message", "more than the 1 MiB limit")
        assert message.startswith('Event "huge.1" is invalid: message: Too long: the object is ')


async def test_one_oversized_event_fails_alone_and_its_batch_is_committed(etcd):
    """40 Events of 64 KiB queued at once (2.5 MiB: more than etcd takes in one request) and one too large for
    etcd on its own (written past the API's check, straight to the batcher): the huge one fails with
    INVALID_ARGUMENT, every other one is written."""
    from kybernetes.core.api.errors import InvalidError as StoreInvalid
    from kybernetes.core.api.kinds import kind_of
    from kybernetes.master.store.batch import CreateBatcher
    from kybernetes.master.store.etcd import Store

    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        batcher = CreateBatcher(store=store, max_batch=100)

        def event(name: str, size: int = 10) -> pb.Event:
            ev = pb.Event(reason="Started", message="x" * size)
            ev.metadata.name, ev.metadata.namespace = name, "default"
            ev.involved_object.kind, ev.involved_object.name = "Pod", "web"
            return ev

        names = [f"web.{i}" for i in range(40)]
        writes = [batcher.create(event(n, 64 * 1024)) for n in names[:20]]
        writes.append(batcher.create(event("huge", 2 * 1024 * 1024)))
        writes.extend(batcher.create(event(n, 64 * 1024)) for n in names[20:])
        results = await asyncio.gather(*writes, return_exceptions=True)
        huge = results[20]
        assert isinstance(huge, StoreInvalid), huge
        assert "huge" in huge.message and "too large" in huge.message, huge.message
        others = results[:20] + results[21:]
        assert all(isinstance(r, pb.Event) and r.metadata.resource_version for r in others), others[:2]
        listed, _ = await store.list(kind_of(pb.Event()), "default")
        assert {e.metadata.name for e in listed} == set(names)
    finally:
        await store.close()


async def test_refusals_found_by_the_fuzzer_name_their_field(client: Client):
    # Each of these was answered without a field path before the API fuzzer (tests/fuzz) found it.
    with pytest.raises(InvalidError, match=r'^labelSelector: Invalid value: "app in \(web": '):
        await client.list("pods", label_selector="app in (web")
    with pytest.raises(InvalidError, match=r'^fieldSelector: Invalid value: "spec.bogus=1": field label not'):
        await client.list("pods", field_selector="spec.bogus=1")
    ev = pb.Event()
    ev.metadata.name = "web.1"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "web"
    created = await client.create(ev)
    await _refused_unwritten(client, client.update_status(created), "status", "Forbidden: events have no status")


async def test_a_resource_version_beyond_int64_or_not_plain_digits_is_invalid_argument(client: Client):
    # A watch from 10**30 was INTERNAL (etcd's request takes an int64) until the fuzzer's watches found it;
    # " 5", "+5" and "5_0" were taken for 5 and 50 by int().
    for value in ("1" + "0" * 30, str(2**63), " 5", "+5", "5_0"):
        with pytest.raises(InvalidError, match=r"^resourceVersion: Invalid value: "):
            async for _ in client.watch_once("pods", resource_version=value):
                pass
    pod = await client.create(make_pod("versioned"))
    stale = pb.Pod()
    stale.CopyFrom(pod)
    stale.metadata.resource_version = str(2**64)
    with pytest.raises(InvalidError, match=r"^metadata.resourceVersion: Invalid value: .*between 1 and"):
        await client.update(stale)


async def test_an_undecodable_or_huge_write_is_invalid_argument_naming_the_field(client: Client,
                                                                                master: MasterProcess):
    # Found by the API fuzzer: bytes that are no UTF-8 in a string field were answered UNKNOWN (grpc's own
    # answer to a DecodeError), and a refusal quoting a 1.2 MB value was lost as RESOURCE_EXHAUSTED.
    before = (await client.list("pods")).resource_version
    marker = "\x01mark\x01"
    raw = api_pb2.CreateRequest(object=pb.Object(pod=make_pod(marker))).SerializeToString()
    async with master.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/kyb.v1.ObjectAPI/Create")(raw.replace(marker.encode(), b"\xff" * 6))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == ("object.pod.metadata.name: Invalid value: not a valid kyb.v1.CreateRequest: "
                                      "string is not valid UTF-8")
    message = await _refused_unwritten(client, client.create(make_pod("huge", image="x" * 1_200_000)),
                                       "spec.containers[0].image", "Invalid value")
    assert "... (1200002 characters)" in message and len(message) < 4000
    assert (await client.list("pods")).resource_version == before
