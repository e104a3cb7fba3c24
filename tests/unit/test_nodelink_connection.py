"""A kubelet's outbound mailbox on the master: snapshots coalesce (latest wins per kind), ordered messages are
bounded in bytes, and going over the bound closes the connection instead of growing."""

from __future__ import annotations

import asyncio

from kybernetes.master.nodelink.connections import NodeConnection
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb


def service_sync(count: int) -> node_pb2.MasterMessage:
    services = [pb.Service() for _ in range(count)]
    for i, svc in enumerate(services):
        svc.metadata.name = f"s{i}"
    return node_pb2.MasterMessage(service_sync=node_pb2.ServiceSync(services=services))


def upsert(name: str, *, padding: int = 0) -> node_pb2.MasterMessage:
    pod = pb.Pod()
    pod.metadata.name = name
    if padding:
        pod.metadata.annotations["pad"] = "x" * padding
    return node_pb2.MasterMessage(pod_upsert=node_pb2.PodUpsert(pod=pod))


async def test_snapshots_coalesce_to_the_newest_and_ordered_messages_keep_their_order():
    conn = NodeConnection(node="n1")
    conn.send(upsert("a"))
    for count in range(1, 1001):  # a thousand Service changes while the kubelet does not read
        conn.send(service_sync(count))
    conn.send(upsert("b"))
    assert conn.pending() == 3
    got = [await conn.next() for _ in range(3)]
    assert [m.WhichOneof("message") for m in got if m is not None] == ["pod_upsert", "pod_upsert", "service_sync"]
    assert got[0] is not None and got[0].pod_upsert.pod.metadata.name == "a"
    assert got[2] is not None and len(got[2].service_sync.services) == 1000
    waiting = asyncio.create_task(conn.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    conn.close()
    assert await waiting is None


async def test_ordered_messages_over_the_bound_close_the_connection():
    conn = NodeConnection(node="n1", max_pending_bytes=64 * 1024)
    sent = 0
    while not conn.closed:
        conn.send(upsert(f"p{sent}", padding=1024))
        sent += 1
    assert conn.overflowed and 60 <= sent <= 64
    assert conn.pending() == 0 and conn.pending_bytes == 0  # what waited is dropped: the reconnect resends all
    conn.send(upsert("late"))
    assert await conn.next() is None
