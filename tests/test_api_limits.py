"""Limits on streams against a real master: watches per client identity and streams per connection.

A watch is counted from the moment the server takes it; these tests ask for bookmarks and read up to the
initial BOOKMARK, which the server sends only after it counted the watch, so "open" is an observed fact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.core.identity.certs import Identity
from kybernetes.ctl.client import Client, Credentials
from kybernetes.ctl.client.identity import issue_certificate
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import api_pb2, api_pb2_grpc
from kybernetes.proto import objects_pb2 as pb


class OpenWatch:
    """One Watch call read up to its initial BOOKMARK (the server counts it by then), then left open."""

    def __init__(self, channel: grpc.aio.Channel, resource: str = "pods") -> None:
        self.call = api_pb2_grpc.ObjectAPIStub(channel).Watch(
            api_pb2.WatchRequest(resource=resource, allow_bookmarks=True))

    async def opened(self) -> OpenWatch:
        async for event in self.call:
            if event.type == "BOOKMARK":
                return self
        raise AssertionError("the watch ended before its bookmark")

    def close(self) -> None:
        self.call.cancel()


async def _refusal(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await OpenWatch(channel).opened()
    return raised.value


async def _viewer(client: Client, user: str) -> Credentials:
    binding = pb.ClusterRoleBinding()
    binding.metadata.name = f"{user}-views"
    binding.role_ref.CopyFrom(pb.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"))
    binding.subjects.add(kind="User", name=user)
    await client.create(binding)
    return await issue_certificate(client, Identity(user=user, groups=("devs",)))


async def test_watches_per_user_are_capped_with_resource_exhausted_and_masters_are_not(
        etcd: EtcdProcess, tmp_path: Path):
    args = ["--controllers=", "--max-watches-per-user", "2"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=args) as master, master.client() as admin:
        wendy = await _viewer(admin, "wendy")
        victor = await _viewer(admin, "victor")
        # Two connections of the same identity share its count.
        first, second = master.channel(wendy), master.channel(wendy)
        other = master.channel(victor)
        mine = master.channel()
        watches: list[OpenWatch] = []
        try:
            watches += [await OpenWatch(first).opened(), await OpenWatch(second, "services").opened()]
            refused = await _refusal(first)
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
            details = refused.details() or ""
            assert 'user "wendy"' in details and "--max-watches-per-user" in details and "(2)" in details, details
            assert (await _refusal(second)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Another user has a count of its own; system:masters (the admin, the masters) is not counted.
            watches += [await OpenWatch(other).opened(), await OpenWatch(other).opened()]
            watches += [await OpenWatch(mine).opened() for _ in range(4)]
            # A watch that ends gives its slot back (the client's cancel reaches the server asynchronously).
            watches.pop(0).close()

            async def reopened() -> OpenWatch | None:
                try:
                    return await OpenWatch(first).opened()
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    return None

            watches.append(await until(reopened, message="wendy's closed watch gave its slot back"))
            # Unary calls are not watches: wendy at her limit still lists.
            listed = await api_pb2_grpc.ObjectAPIStub(first).List(api_pb2.ListRequest(resource="pods"), timeout=10)
            assert not listed.items
        finally:
            for watch in watches:
                watch.close()
            for channel in (first, second, other, mine):
                await channel.close()


async def test_streams_beyond_the_connection_limit_wait_for_a_free_slot(etcd: EtcdProcess, tmp_path: Path):
    args = ["--controllers=", "--http2-max-streams-per-connection", "3"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=args) as master:
        busy, fresh = master.channel(), master.channel()
        watches: list[OpenWatch] = []
        try:
            watches = [await OpenWatch(busy).opened() for _ in range(3)]
            stub = api_pb2_grpc.ObjectAPIStub(busy)
            # A fourth stream on the same connection is not refused: it waits (here until its deadline).
            with pytest.raises(grpc.aio.AioRpcError) as waited:
                await stub.List(api_pb2.ListRequest(resource="pods"), timeout=2)
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, waited.value
            # Another connection is not held up by this one's streams.
            await api_pb2_grpc.ObjectAPIStub(fresh).List(api_pb2.ListRequest(resource="pods"), timeout=10)
            # A waiting call goes ahead once a stream ends.
            pending = asyncio.ensure_future(stub.List(api_pb2.ListRequest(resource="pods"), timeout=30))
            watches.pop().close()
            listed = await pending
            assert listed.resource_version
        finally:
            for watch in watches:
                watch.close()
            await busy.close()
            await fresh.close()
