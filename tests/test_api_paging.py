"""List paging, as Kubernetes' limit and continue: pages of at most `limit` items, every page read at the first
page's revision (one consistent list), selectors filling pages, and clear errors for a bad or expired token."""

from __future__ import annotations

import grpc
import pytest

from harness.builders import make_pod
from harness.master import MasterProcess
from kybernetes.core.api.errors import ExpiredError
from kybernetes.ctl.client import Client, InvalidError
from kybernetes.master.store.embedded import EtcdProcess


async def test_pages_are_one_consistent_list(client: Client):
    for i in range(7):
        await client.create(make_pod(f"p{i}", labels={"parity": "even" if i % 2 == 0 else "odd"}))
    first = await client.list("pods", limit=3)
    assert [p.metadata.name for p in first.items] == ["p0", "p1", "p2"] and first.continue_token
    await client.create(make_pod("p9"))  # after the first page: not in this list
    await client.delete("pods", "p6", unconditional=True)  # still in this list
    second = await client.list("pods", limit=3, continue_token=first.continue_token)
    third = await client.list("pods", limit=3, continue_token=second.continue_token)
    assert [p.metadata.name for p in second.items + third.items] == ["p3", "p4", "p5", "p6"]
    assert not third.continue_token
    assert first.resource_version == second.resource_version == third.resource_version

    evens = await client.list("pods", label_selector="parity=even", limit=2)
    assert [p.metadata.name for p in evens.items] == ["p0", "p2"] and evens.continue_token
    rest = await client.list("pods", label_selector="parity=even", limit=2, continue_token=evens.continue_token)
    assert [p.metadata.name for p in rest.items] == ["p4"]  # p6 deleted since, p9 has no label

    whole = await client.list_chunked("pods", chunk_size=2)
    assert [p.metadata.name for p in whole.items] == ["p0", "p1", "p2", "p3", "p4", "p5", "p9"]
    assert [p.metadata.name for p in (await client.list_chunked("pods", chunk_size=0)).items] == \
        [p.metadata.name for p in whole.items]


async def test_a_bad_continue_token_or_limit_is_invalid(client: Client):
    with pytest.raises(InvalidError) as bad:
        await client.list("pods", limit=1, continue_token="not-a-token")
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and bad.value.message.startswith("continue:")
    await client.create(make_pod("a"))
    await client.create(make_pod("b"))
    token = (await client.list("pods", limit=1)).continue_token
    with pytest.raises(InvalidError) as other:  # a token of another resource's list
        await client.list("services", limit=1, continue_token=token)
    assert other.value.message.startswith("continue:")
    with pytest.raises(InvalidError) as negative:
        await client.list("pods", limit=-1)
    assert negative.value.message.startswith("limit:")


async def test_an_expired_continue_token_says_so(etcd: EtcdProcess, master: MasterProcess, client: Client):
    from kybernetes.master.store.etcd import Store

    await client.create(make_pod("a"))
    await client.create(make_pod("b"))
    token = (await client.list("pods", limit=1)).continue_token
    await client.create(make_pod("c"))
    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        await store.compact(await store.revision())
    finally:
        await store.close()
    with pytest.raises(ExpiredError) as expired:
        await client.list("pods", limit=1, continue_token=token)
    assert expired.value.code == grpc.StatusCode.OUT_OF_RANGE and expired.value.message.startswith("continue:")


async def test_kybctl_get_pages_through_a_large_list(master: MasterProcess, client: Client):
    from tests.test_kybctl import ok

    for i in range(5):
        await client.create(make_pod(f"q{i}"))
    for chunk in ("2", "0", "500"):
        result = await ok(master, "get", "pods", "-o", "name", "--chunk-size", chunk)
        assert result.out.split() == [f"pod/q{i}" for i in range(5)], (chunk, result.out)
