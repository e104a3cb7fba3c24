"""The informer against a scripted fake API: list then watch, indexes, handlers, resume, re-list on expiry.

The fake stands in for the API so that disconnects and compaction happen exactly when
the test says; the informer's behaviour against the real master is covered by the
controller integration tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.waiting import until
from kybernetes.core.machinery.informer import Informer, by_node_name, by_owner_uid, object_key, split_key
from kybernetes.ctl.client import ExpiredError, ListResult, UnavailableError, WatchEvent
from kybernetes.proto import objects_pb2 as pb


def pod(name: str, rv: int, *, node: str = "", owner: str = "", namespace: str = "default") -> pb.Pod:
    p = pb.Pod()
    p.metadata.name, p.metadata.namespace = name, namespace
    p.metadata.uid = f"uid-{name}"
    p.metadata.resource_version = str(rv)
    p.spec.node_name = node
    if owner:
        p.metadata.owner_references.add(uid=owner, kind="ReplicaSet", name="rs", api_version="apps/v1",
                                        controller=True)
    return p


class FakeApi:
    """list() answers `self.items`; each watch_once() plays a script of events and errors."""

    def __init__(self) -> None:
        self.items: dict[str, pb.Pod] = {}
        self.rv = 0
        self.lists = 0
        self.watch_versions: list[str] = []
        self.streams: asyncio.Queue[asyncio.Queue[Any]] = asyncio.Queue()

    async def list(self, resource: str, **_: Any) -> ListResult:
        self.lists += 1
        return ListResult(list(self.items.values()), str(self.rv))

    async def watch_once(self, resource: str, *, resource_version: str = "", **_: Any):
        self.watch_versions.append(resource_version)
        stream: asyncio.Queue[Any] = asyncio.Queue()
        await self.streams.put(stream)
        while True:
            item = await stream.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                return
            yield item

    def put(self, p: pb.Pod) -> WatchEvent:
        self.rv += 1
        p.metadata.resource_version = str(self.rv)
        etype = "MODIFIED" if object_key(p) in self.items else "ADDED"
        self.items[object_key(p)] = p
        return WatchEvent(etype, p, str(self.rv))

    def remove(self, key: str) -> WatchEvent:
        self.rv += 1
        p = self.items.pop(key)
        return WatchEvent("DELETED", p, str(self.rv))


@pytest.fixture
async def setup():
    api = FakeApi()
    api.put(pod("a", 0, node="n1", owner="rs1"))
    api.put(pod("b", 0, node="n2", owner="rs1"))
    informer = Informer(client=api, resource="pods", indexers={"node": by_node_name, "owner": by_owner_uid},
                        max_backoff=0.01)
    log: list[tuple[str, str]] = []
    informer.add_handler(on_add=lambda o: log.append(("add", o.metadata.name)),
                         on_update=lambda old, new: log.append(("update", new.metadata.name)),
                         on_delete=lambda o: log.append(("delete", o.metadata.name)))
    task = asyncio.create_task(informer.run())
    yield api, informer, log
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_keys():
    assert object_key(pod("a", 1)) == "default/a"
    n = pb.Node()
    n.metadata.name = "n1"
    assert object_key(n) == "n1"
    assert split_key("default/a") == ("default", "a") and split_key("n1") == ("", "n1")


async def test_lists_then_watches_from_the_list_version_with_indexes_and_handlers(setup):
    api, informer, log = setup
    await informer.wait_synced(2)
    assert informer.has_synced
    assert sorted(log) == [("add", "a"), ("add", "b")]
    stream = await asyncio.wait_for(api.streams.get(), 2)
    assert api.watch_versions == ["2"]
    assert {p.metadata.name for p in informer.by_index("node", "n1")} == {"a"}
    assert informer.index_keys("owner", "rs1") == {"default/a", "default/b"}

    moved = pod("a", 0, node="n3", owner="rs1")
    await stream.put(api.put(moved))
    await stream.put(api.put(pod("c", 0)))
    await stream.put(api.remove("default/b"))
    await until(lambda: len(log) == 5, timeout=2.0, interval=0.005)
    assert log[2:] == [("update", "a"), ("add", "c"), ("delete", "b")]
    assert informer.by_index("node", "n1") == [] and [p.metadata.name for p in informer.by_index("node", "n3")] == ["a"]
    assert informer.index_keys("owner", "rs1") == {"default/a"}
    assert informer.get("default/c") is not None and informer.get_by_name("b", "default") is None
    assert informer.resource_version == "5"


async def test_resumes_from_the_last_version_after_a_disconnect_without_relisting(setup):
    api, informer, log = setup
    stream = await asyncio.wait_for(api.streams.get(), 2)
    await stream.put(api.put(pod("c", 0)))
    await stream.put(UnavailableError("connection reset"))
    stream = await asyncio.wait_for(api.streams.get(), 2)
    assert api.watch_versions == ["2", "3"] and api.lists == 1
    await stream.put(WatchEvent("BOOKMARK", None, "7"))
    await stream.put(None)  # the server ended the stream: resume from the bookmark
    await asyncio.wait_for(api.streams.get(), 2)
    assert api.watch_versions[-1] == "7" and api.lists == 1
    assert ("add", "c") in log


async def test_relists_on_expiry_and_notifies_the_difference(setup):
    api, informer, log = setup
    stream = await asyncio.wait_for(api.streams.get(), 2)
    # Changes the informer never sees as events (they were compacted away).
    api.remove("default/a")
    api.put(pod("b", 0, node="n9", owner="rs1"))
    api.put(pod("d", 0))
    await stream.put(ExpiredError("too old"))
    await asyncio.wait_for(api.streams.get(), 2)
    assert api.lists == 2
    assert sorted(log[2:]) == [("add", "d"), ("delete", "a"), ("update", "b")]
    assert informer.index_keys("node", "n9") == {"default/b"} and informer.index_keys("node", "n1") == set()
    assert api.watch_versions[-1] == str(api.rv)


async def test_a_failing_handler_does_not_stop_the_informer_and_late_handlers_see_the_cache(setup):
    api, informer, log = setup
    informer.add_handler(on_add=lambda o: 1 / 0)
    stream = await asyncio.wait_for(api.streams.get(), 2)
    await stream.put(api.put(pod("e", 0)))
    await until(lambda: ("add", "e") in log, timeout=2.0, interval=0.005)
    seen: list[str] = []
    informer.add_handler(on_add=lambda o: seen.append(o.metadata.name))
    assert sorted(seen) == ["a", "b", "e"]
