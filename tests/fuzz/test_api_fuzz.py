"""A property-based fuzzer of the object API: generated objects of every kind against a real master over gRPC.

Design. One real etcd and one real `kyb-master` (API only) serve the whole module (tests/fuzz/conftest.py);
every example sends its requests through `FuzzApi` (tests/fuzz/api.py), which checks the properties on each
answer: never INTERNAL or UNKNOWN and the master alive; every refusal INVALID_ARGUMENT, ABORTED, NOT_FOUND,
ALREADY_EXISTS (or OUT_OF_RANGE / RESOURCE_EXHAUSTED, the limits' documented answers) with a field path or
the object named; a refused write changes no key under /registry/; an accepted write reads back exactly.
The five tests differ in what they send:

- `test_valid_objects_and_their_mutations`: a valid object of any kind, changed at up to two random field
  paths, created, then updated, status-updated and deleted with the version it read (each step mutated);
- `test_random_requests_of_every_method`: every field of a request of every method random (random unicode in
  every string, unknown enum values, extreme integers and timestamps, maps and lists);
- `test_huge_values`: a valid object with one huge value: a string of up to 1.2 MiB, a map or list of
  thousands of entries (objects over the 1 MiB limit must be INVALID_ARGUMENT naming the largest field);
- `test_stale_and_future_resource_versions`: writes of a stored object carrying an older, a newer, a
  malformed or an out-of-range resourceVersion;
- `test_undecodable_requests`: wire bytes no protobuf parser accepts as the method's request: random bytes,
  truncated or flipped valid requests, invalid UTF-8 inside a string field;
- `test_watches`: Watch requests, all random or built from the vocabulary (kinds and their aliases, selectors,
  resourceVersions stale, future, malformed), over an example namespace that holds an object of the kind;
  each accepted watch is read for half a second (tests/fuzz/api.py), so this test has a quarter of the cases.

Each example works in a namespace of its own (and suffixes cluster-scoped names), so examples do not collide,
and deletes what it made at the end (those deletes are checked writes too). Every case counts in the figures
printed at the end of the run. Profiles: tests/conftest.py ("short" in the suite, "long" on demand).
"""

from __future__ import annotations

import itertools
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.core.api import kinds
from kybernetes.core.api.kinds import KINDS, ApiObject, Kind
from kybernetes.proto import api_pb2
from tests.fuzz.api import FIGURES, Answer, FuzzApi
from tests.fuzz.strategies import VOCABULARY, Draw, mutate, random_message, unicode, valid_object

# The suite's 300 s per test fits the short profile; the long one (ten times the cases, on a loaded machine)
# gets a second per case.
pytestmark = [pytest.mark.etcd, pytest.mark.timeout(max(300, settings.default.max_examples))]

_SCOPES = itertools.count(1)
RESOURCES = tuple(k.resource for k in KINDS)
kind_strategy = st.sampled_from(KINDS)
# Request fields of the read and delete methods, by field name (the object's own fields: strategies.VOCABULARY).
VOCABULARY.update({
    "resource": (*RESOURCES, "po", "Deployment", "namespaces", "configmaps", ""),
    "label_selector": ("app=web", "app in (web,db)", "!app", "app==", "a b", "app notin ()", "x" * 300),
    "field_selector": ("metadata.name=a", "spec.nodeName=n1", "status.phase!=Running", "spec.bogus=1", "=",
                       "metadata.name"),
    "continue_token": ("eyJ2IjogMX0=", "not-base64!", "e30=", ""),
    "propagation_policy": ("Background", "Foreground", "Orphan", "Sideways"),
})


class Example:
    """One example's namespace and the objects it made (deleted at its end)."""

    def __init__(self, api: FuzzApi, test: str) -> None:
        self.api = api
        self.scope = next(_SCOPES)
        self.namespace = f"fz{self.scope}"
        self.made: dict[tuple[str, str, str], None] = {}
        FIGURES.cases[test] += 1

    def place(self, obj: ApiObject, kind: Kind) -> None:
        """Move an object into this example's namespace (a cluster-scoped one gets a suffixed name)."""
        if kind.namespaced:
            obj.metadata.namespace = self.namespace
        else:
            obj.metadata.name = f"{obj.metadata.name}-{self.scope}"

    def write(self, method: str, obj: ApiObject) -> ApiObject | None:
        """Create, Update or UpdateStatus one object; the stored object when accepted."""
        request: Any = api_pb2.CreateRequest(object=kinds.wrap(obj)) if method == "Create" else \
            api_pb2.UpdateRequest(object=kinds.wrap(obj))
        answer = self.api.write(method, request)
        return self._note(answer)

    def _note(self, answer: Answer) -> ApiObject | None:
        if not answer.ok:
            return None
        if answer.method == "Delete":
            obj = kinds.unwrap(answer.response.object)
            if answer.response.deleted:
                self.made.pop(_key(obj), None)
                return None
            return obj
        obj = kinds.unwrap(answer.response)
        self.made[_key(obj)] = None
        return obj

    def delete(self, obj: ApiObject, *, resource_version: str = "", grace: int | None = None) -> ApiObject | None:
        request = api_pb2.DeleteRequest(resource=kinds.kind_of(obj).resource, namespace=obj.metadata.namespace,
                                        name=obj.metadata.name, resource_version=resource_version,
                                        unconditional=not resource_version)
        if grace is not None:
            request.grace_period_seconds = grace
        return self._note(self.api.write("Delete", request))

    def close(self) -> None:
        """Delete what the example made (a pod bound to a node at once; finalizers keep an object terminating)."""
        for resource, namespace, name in list(self.made):
            self.api.write("Delete", api_pb2.DeleteRequest(resource=resource, namespace=namespace, name=name,
                                                           unconditional=True, grace_period_seconds=0))
        self.api.check_alive()


def _key(obj: ApiObject) -> tuple[str, str, str]:
    return kinds.kind_of(obj).resource, obj.metadata.namespace, obj.metadata.name


def _copy(obj: ApiObject) -> Any:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def _mutations(draw: Draw, obj: Any, most: int, *, huge: bool = False) -> None:
    for _ in range(draw(st.integers(0, most))):
        mutate(draw, obj, huge=huge)


def _status_of(kind: Kind) -> bool:
    return any(f.name == "status" for f in kind.message.DESCRIPTOR.fields)


@given(data=st.data())
def test_valid_objects_and_their_mutations(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "valid+mutated")
    kind = data.draw(kind_strategy, label="kind")
    obj = data.draw(valid_object(kind), label="object")
    example.place(obj, kind)
    _mutations(data.draw, obj, 2)
    current = example.write("Create", obj)
    for step in data.draw(st.lists(st.sampled_from(("update", "status", "delete")), max_size=3), label="steps"):
        if current is None:
            break
        new = _copy(current)
        if step == "update":
            _mutations(data.draw, new, 2)
            current = example.write("Update", new) or current
        elif step == "status":
            if _status_of(kind):
                _mutations(data.draw, new.status, 2)
            else:
                _mutations(data.draw, new, 1)
            current = example.write("UpdateStatus", new) or current
        else:
            grace = data.draw(st.one_of(st.none(), st.integers(-1, 30)), label="grace")
            current = example.delete(current, resource_version=current.metadata.resource_version, grace=grace)
    example.close()


@given(data=st.data())
def test_random_requests_of_every_method(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "random")
    method = data.draw(st.sampled_from(("Create", "Update", "UpdateStatus", "Get", "List", "Delete")),
                       label="method")
    if method in ("Create", "Update", "UpdateStatus"):
        kind = data.draw(kind_strategy, label="kind")
        obj = data.draw(random_message(kind.message), label="object")
        if data.draw(st.booleans(), label="placed"):
            example.place(obj, kind)
        example.write(method, obj)
    elif method == "Get":
        fuzz_api.call("Get", data.draw(random_message(api_pb2.GetRequest), label="request"))
    elif method == "List":
        fuzz_api.call("List", data.draw(random_message(api_pb2.ListRequest), label="request"))
    else:
        example._note(fuzz_api.write("Delete", data.draw(random_message(api_pb2.DeleteRequest), label="request")))
    example.close()


@given(data=st.data())
def test_huge_values(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "huge")
    kind = data.draw(kind_strategy, label="kind")
    obj = data.draw(valid_object(kind), label="object")
    example.place(obj, kind)
    if data.draw(st.booleans(), label="on create"):
        mutate(data.draw, obj, huge=True)
        example.write("Create", obj)
    else:
        stored = example.write("Create", obj)
        if stored is not None:
            new = _copy(stored)
            mutate(data.draw, new, huge=True)
            example.write("Update", new)
    example.close()


@given(data=st.data())
def test_stale_and_future_resource_versions(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "resourceVersion")
    kind = data.draw(kind_strategy, label="kind")
    obj = data.draw(valid_object(kind), label="object")
    example.place(obj, kind)
    first = example.write("Create", obj)
    if first is None:
        example.close()
        return
    current = first
    if data.draw(st.booleans(), label="updated once"):
        current = example.write("Update", _copy(first)) or first
    rv = int(current.metadata.resource_version)
    versions = st.one_of(
        st.integers(1, 50).map(lambda back: str(max(rv - back, 1))),  # stale (or, at 1, long gone)
        st.integers(1, 2**40).map(lambda ahead: str(rv + ahead)),  # a version etcd has not reached
        st.just(first.metadata.resource_version),  # the version before an update
        st.sampled_from(("0", "-1", "+5", " 5", "5.0", "0x10", "9" * 30, str(2**63), str(2**64 + rv), "")),
        unicode(12),
    )
    for _ in range(data.draw(st.integers(1, 3), label="writes")):
        version = data.draw(versions, label="resourceVersion")
        method = data.draw(st.sampled_from(("Update", "UpdateStatus", "Delete")), label="method")
        new = _copy(current)
        new.metadata.resource_version = version
        _mutations(data.draw, new, 1)
        if method == "Delete":
            if version:
                current = example.delete(new, resource_version=version) or current
        else:
            current = example.write(method, new) or current
    example.close()


# ---------------------------------------------------------------- undecodable requests

_MARK = "\x01fuzz-bad-utf8\x01"
_REQUESTS: dict[str, type] = {"Create": api_pb2.CreateRequest, "Update": api_pb2.UpdateRequest,
                              "UpdateStatus": api_pb2.UpdateRequest, "Get": api_pb2.GetRequest,
                              "List": api_pb2.ListRequest, "Delete": api_pb2.DeleteRequest}


def _string_slots(msg: Any) -> list[tuple[Any, str, int | str | None]]:
    """Every string stored in `msg` at any depth: (container, field name, index or map key or None)."""
    slots: list[tuple[Any, str, int | str | None]] = []
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == field.TYPE_STRING:
                slots.extend((msg, field.name, key) for key in value)
        elif field.type == field.TYPE_MESSAGE:
            for element in (value if field.is_repeated else [value]):
                slots.extend(_string_slots(element))
        elif field.type == field.TYPE_STRING:
            if field.is_repeated:
                slots.extend((msg, field.name, i) for i in range(len(value)))
            else:
                slots.append((msg, field.name, None))
    return slots


def with_bad_utf8(draw: Draw, request: Any) -> bytes:
    """The request's wire bytes with one string field's bytes replaced by bytes that are not UTF-8."""
    slots = _string_slots(request)
    if not slots:
        return b"\x0a\x02\xff\xfe"  # field 1, two bytes that are no UTF-8
    container, name, where = draw(st.sampled_from(slots))
    if where is None:
        setattr(container, name, _MARK)
    else:  # a list's index or a map's key
        getattr(container, name)[where] = _MARK
    raw = request.SerializeToString()
    bad = draw(st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")))
    replacement = (bad * len(_MARK))[:len(_MARK.encode())]
    return raw.replace(_MARK.encode(), replacement, 1)


def _valid_request(draw: Draw, method: str, namespace: str) -> Any:
    kind = draw(kind_strategy)
    obj = draw(valid_object(kind))
    if kind.namespaced:
        obj.metadata.namespace = namespace
    if method in ("Update", "UpdateStatus"):
        obj.metadata.resource_version = "1"
        return api_pb2.UpdateRequest(object=kinds.wrap(obj))
    if method == "Create":
        return api_pb2.CreateRequest(object=kinds.wrap(obj))
    if method == "Get":
        return api_pb2.GetRequest(resource=kind.resource, namespace=namespace, name=obj.metadata.name)
    if method == "List":
        return api_pb2.ListRequest(resource=kind.resource, namespace=namespace, label_selector="app=web")
    return api_pb2.DeleteRequest(resource=kind.resource, namespace=namespace, name=obj.metadata.name,
                                 resource_version="1")


@given(data=st.data())
def test_undecodable_requests(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "undecodable")
    method = data.draw(st.sampled_from(tuple(_REQUESTS)), label="method")
    request = _valid_request(data.draw, method, example.namespace)
    how = data.draw(st.sampled_from(("bad utf-8", "truncated", "flipped", "random")), label="how")
    if how == "bad utf-8":
        raw = with_bad_utf8(data.draw, request)
    elif how == "truncated":
        whole = request.SerializeToString()
        raw = whole[:data.draw(st.integers(0, max(len(whole) - 1, 0)), label="length")]
    elif how == "flipped":
        raw = bytearray(request.SerializeToString())
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            if raw:
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    else:
        raw = data.draw(st.binary(min_size=1, max_size=300), label="bytes")
    answer = fuzz_api.write(method, raw) if method not in ("Get", "List") else fuzz_api.call(method, raw)
    if how == "bad utf-8":
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, (answer.code, answer.details)
    if method not in ("Get", "List"):
        example._note(answer)
    example.close()


# ---------------------------------------------------------------- watches


@settings(max_examples=max(1, settings.default.max_examples // 4))
@given(data=st.data())
def test_watches(fuzz_api: FuzzApi, data: st.DataObject) -> None:
    example = Example(fuzz_api, "watch")
    kind = data.draw(kind_strategy, label="kind")
    obj = data.draw(valid_object(kind), label="object")
    example.place(obj, kind)
    stored = example.write("Create", obj)
    if data.draw(st.booleans(), label="all random"):
        request = data.draw(random_message(api_pb2.WatchRequest), label="request")
    else:
        rv = int(stored.metadata.resource_version) if stored is not None else 1
        request = api_pb2.WatchRequest(
            resource=data.draw(st.sampled_from((kind.resource, *VOCABULARY["resource"])), label="resource"),
            namespace=data.draw(st.sampled_from((example.namespace, "", "default", "no-such", "Bad_NS")),
                                label="namespace"),
            label_selector=data.draw(st.sampled_from(("", *VOCABULARY["label_selector"])), label="labels"),
            field_selector=data.draw(st.sampled_from(("", *VOCABULARY["field_selector"])), label="fields"),
            resource_version=data.draw(st.one_of(
                st.just(""), st.integers(-3, 50).map(lambda back: str(rv - back)),
                st.sampled_from(("0", "-1", "x", "9" * 30, str(2**63), " 5")), unicode(12)), label="resourceVersion"),
            allow_bookmarks=data.draw(st.booleans(), label="bookmarks"))
    fuzz_api.watch(request)
    fuzz_api.check_alive()
    example.close()
