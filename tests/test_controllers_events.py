"""The event recorder against real etcd and the real object service: counting repeats, naming, failures."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.builders import make_pod
from kybernetes.ctl.client import UnavailableError
from kybernetes.master.api.local_client import LocalClient
from kybernetes.master.api.objects import ObjectService
from kybernetes.master.events import EventRecorder
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.master.store.etcd import Store
from kybernetes.proto import objects_pb2 as pb
from tests.test_controllers_support import make_node


@pytest.fixture
async def client(etcd: EtcdProcess) -> AsyncIterator[LocalClient]:
    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        yield LocalClient(ObjectService(store=store))
    finally:
        await store.close()


async def events(client: LocalClient) -> list[pb.Event]:
    return (await client.list("events")).items


async def test_repeats_are_counted_on_one_event_and_new_messages_make_new_events(client: LocalClient):
    pod = await client.create(make_pod("web-1"))
    clock = [1_000_000.0]
    recorder = EventRecorder(client=client, component="default-scheduler", clock=lambda: clock[0])
    await recorder.record(pod, type="Warning", reason="FailedScheduling", message="0/1 nodes are available")
    clock[0] += 30
    await recorder.record(pod, type="Warning", reason="FailedScheduling", message="0/1 nodes are available")
    (event,) = await events(client)
    assert event.count == 2 and event.type == "Warning" and event.reason == "FailedScheduling"
    assert event.first_timestamp.seconds == 1_000_000 and event.last_timestamp.seconds == 1_000_030
    assert re.fullmatch(r"web-1\.[0-9a-f]+", event.metadata.name) and event.metadata.namespace == "default"
    ref = event.involved_object
    assert (ref.kind, ref.name, ref.uid, ref.api_version) == ("Pod", "web-1", pod.metadata.uid, "v1")
    assert (event.source.component, event.source.host) == ("default-scheduler", "")

    await recorder.record(pod, type="Normal", reason="Scheduled", message="Successfully assigned default/web-1 to n1")
    assert sorted((e.reason, e.count) for e in await events(client)) == [("FailedScheduling", 2), ("Scheduled", 1)]


async def test_cluster_scoped_objects_get_events_in_default_and_kubelet_events_keep_their_source(
        client: LocalClient):
    node = await client.create(make_node("n1"))
    recorder = EventRecorder(client=client, component="kubelet")
    built = pb.Event(reason="Pulled", message='Successfully pulled image "kyb/hello:v1"', type="Normal",
                     involved_object=pb.ObjectReference(kind="Node", name="n1", uid=node.metadata.uid),
                     source=pb.EventSource(component="kubelet", host="n1"))
    await recorder.record_event(built)
    await recorder.record_event(built)
    (event,) = await events(client)
    assert event.metadata.namespace == "default" and event.count == 2
    assert (event.source.component, event.source.host) == ("kubelet", "n1")


async def test_an_expired_event_is_created_again(client: LocalClient):
    pod = await client.create(make_pod("web-1"))
    recorder = EventRecorder(client=client, component="replicaset-controller")
    await recorder.record(pod, type="Normal", reason="SuccessfulCreate", message="Created pod: web-1")
    (first,) = await events(client)
    await client.delete("events", first.metadata.name, unconditional=True)  # as the lease would
    await recorder.record(pod, type="Normal", reason="SuccessfulCreate", message="Created pod: web-1")
    (second,) = await events(client)
    assert second.count == 1 and second.metadata.name != first.metadata.name


class BrokenClient:
    """Every call fails as if etcd were unreachable."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> None:
            raise UnavailableError("etcd unreachable")

        return fail


async def test_recording_never_raises_into_the_caller():
    recorder = EventRecorder(client=BrokenClient(), component="scheduler")
    pod = make_pod("p")
    await recorder.record(pod, type="Normal", reason="Scheduled", message="m")
    await recorder.record_event(pb.Event(reason="X", message="y"))
    recorder.record_nowait(pod, type="Normal", reason="Scheduled", message="m")
    await recorder.flush()
    await recorder.record(object(), type="Normal", reason="Bad", message="not an object")  # type: ignore[arg-type]
