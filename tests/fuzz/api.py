"""The fuzzer's side of the wire: a blocking gRPC client of a real master that checks every answer.

`FuzzApi` sends requests to the ObjectAPI of a real `kyb-master` process (mutual TLS, the admin's
credentials) and checks the fuzzer's properties on each answer:

- no answer is INTERNAL or UNKNOWN, and the master never stops answering (UNAVAILABLE, a deadline: a crash or
  a hang); every refusal has one of the `REFUSALS` codes;
- an INVALID_ARGUMENT or OUT_OF_RANGE refusal names a field path followed by one of Kubernetes' rule forms
  (`metadata.name: Invalid value: ...`), and ABORTED, NOT_FOUND and ALREADY_EXISTS name the object's resource
  (`pods "web" not found`);
- a refused write changes no key under /registry/ (every object and every claim: clusterIPs, nodePorts,
  podCIDRs). The master writes its own keys in the background (presence, the CA, join tokens) under
  /kybernetes/, which is left out. The check reads the number of keys under /registry/ and the highest
  mod_revision among them before and after: a put raises the highest, a delete lowers the count;
- an accepted write reads back exactly: Get answers the very object the write answered (byte for byte,
  deterministic serialization), or NOT_FOUND when the write deleted it;
- a watch is refused as a unary call is, or streams events of the four types, each object whole and in the
  namespace asked for. A watch that is accepted never ends by itself, so the client reads it for
  `WATCH_LOOK` seconds (or `WATCH_EVENTS` events) and ends it: a deadline there is the answer "watching", not
  a failure. The one thing this cannot see is a refusal slower than WATCH_LOOK, counted as watching.

The calls are blocking (grpc's synchronous channel, etcd's KV stub on another) because hypothesis runs each
example as a plain function; the master and etcd are child processes, so nothing here shares their loop.
`FIGURES` counts cases and answers by code for the summary pytest prints at the end of a run.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc
from google.protobuf.message import Message

from kybernetes.core.api import kinds
from kybernetes.core.identity.credentials import Credentials
from kybernetes.master.store.etcdtls import EtcdClientTLS
from kybernetes.proto import api_pb2, api_pb2_grpc
from kybernetes.proto import objects_pb2 as pb

REFUSALS = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    # A continue token etcd has compacted is OUT_OF_RANGE (Expired, docs/limits.md). RESOURCE_EXHAUSTED is the
    # documented answer only for watches, streams and messages over 64 MiB, which the fuzzer does not send.
    grpc.StatusCode.OUT_OF_RANGE,
})
_PATH = r"[A-Za-z][A-Za-z0-9]*(?:\[[^\]]*\])*(?:\.[A-Za-z][A-Za-z0-9]*(?:\[[^\]]*\])*)*"
_RULES = ("Required value", "Invalid value", "Unsupported value", "Duplicate value", "Forbidden", "Too long",
          "Expired")
FIELD_PATH = re.compile(rf"(?:^|[ ,:(]){_PATH}: (?:{'|'.join(_RULES)})")
NAMES_OBJECT = re.compile(r'[a-z]+ "[^"]*"')
CALL_TIMEOUT = 60.0
RESPONSES: dict[str, Any] = {"Create": pb.Object, "Get": pb.Object, "Update": pb.Object, "UpdateStatus": pb.Object,
                             "List": api_pb2.ObjectList, "Delete": api_pb2.DeleteResponse}
REGISTRY, REGISTRY_END = b"/registry/", b"/registry0"
WATCH_LOOK = 0.5
WATCH_EVENTS = 20
WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


@dataclass
class Figures:
    """What a run did: cases per test, answers by code, accepted writes and reads back."""

    cases: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    read_back: int = 0

    def summary(self) -> list[str]:
        if not self.cases:
            return []
        total = sum(self.cases.values())
        lines = [f"API fuzzer: {total} cases ({', '.join(f'{t} {n}' for t, n in sorted(self.cases.items()))})",
                 f"  answers by code: {', '.join(f'{c} {n}' for c, n in self.answers.most_common())}",
                 f"  accepted writes read back exactly: {self.read_back}"]
        return lines


FIGURES = Figures()


class FuzzFailure(AssertionError):
    """A property of the fuzzer does not hold."""


@dataclass
class Answer:
    """One call's outcome: the response, or the refusal's code and message."""

    method: str
    response: Any = None
    code: grpc.StatusCode | None = None
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None


def _registry_state(kv: rpc.KVStub) -> tuple[int, int]:
    """(number of keys, highest mod_revision) under /registry/: any put or delete there changes it."""
    resp = kv.Range(rpc.RangeRequest(key=REGISTRY, range_end=REGISTRY_END, keys_only=True, limit=1,
                                     sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.MOD),
                    timeout=CALL_TIMEOUT)
    return resp.count, (resp.kvs[0].mod_revision if resp.kvs else 0)


class FuzzApi:
    """A checked client of one master and a reader of its etcd."""

    def __init__(self, *, address: str, credentials: Credentials, etcd_endpoint: str, etcd_tls: EtcdClientTLS,
                 master_pid: int, master_log: Path) -> None:
        options = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
                   ("grpc.max_send_message_length", 256 * 1024 * 1024)]
        self.channel = grpc.secure_channel(address, credentials.channel_credentials(), options=options)
        self.stub = api_pb2_grpc.ObjectAPIStub(self.channel)
        ca, cert, key = etcd_tls.read()
        self.etcd_channel = grpc.secure_channel(
            etcd_endpoint.split("://", 1)[-1], grpc.ssl_channel_credentials(ca, key, cert),
            options=[("grpc.ssl_target_name_override", "127.0.0.1"), *options])
        self.kv = rpc.KVStub(self.etcd_channel)
        self.master_pid = master_pid
        self.master_log = master_log
        self.examples = 0

    def close(self) -> None:
        self.channel.close()
        self.etcd_channel.close()

    # ---------------------------------------------------------------- calls

    def call(self, method: str, request: Message | bytes) -> Answer:
        """One unary call (a message, or raw bytes sent as they are), checked for the codes allowed."""
        if isinstance(request, bytes):
            rpc_call = self.channel.unary_unary(f"/kyb.v1.ObjectAPI/{method}",
                                                response_deserializer=RESPONSES[method].FromString)
        else:
            rpc_call = getattr(self.stub, method)
        try:
            answer = Answer(method, response=rpc_call(request, timeout=CALL_TIMEOUT))
        except grpc.RpcError as err:
            answer = Answer(method, code=err.code(), details=err.details() or "")
        FIGURES.answers[answer.code.name if answer.code else "OK"] += 1
        self._check_code(answer, request)
        return answer

    def watch(self, request: api_pb2.WatchRequest) -> Answer:
        """One watch, read for WATCH_LOOK seconds: its refusal checked as a call's, or its events checked."""
        events: list[api_pb2.WatchEvent] = []
        stream = self.stub.Watch(request, timeout=WATCH_LOOK)
        try:
            for event in stream:
                events.append(event)
                if len(events) >= WATCH_EVENTS:
                    stream.cancel()
                    break
            answer = Answer("Watch", response=events)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                answer = Answer("Watch", response=events)
            else:
                answer = Answer("Watch", code=err.code(), details=err.details() or "")
        FIGURES.answers[answer.code.name if answer.code else "OK"] += 1
        self._check_code(answer, request)
        for event in events:
            self._check_event(event, request)
        return answer

    def _check_event(self, event: api_pb2.WatchEvent, request: api_pb2.WatchRequest) -> None:
        if event.type not in WATCH_TYPES:
            raise FuzzFailure(f"a watch event of no known type: {_short(event)}\nrequest: {_short(request)}")
        if event.type == "BOOKMARK":
            return
        try:
            obj = kinds.unwrap(event.object)
        except Exception as err:  # any failure to read it is the finding
            raise FuzzFailure(f"a watch event whose object does not read ({err!r}): {_short(event)}") from err
        if request.namespace and kinds.kind_of(obj).namespaced and obj.metadata.namespace != request.namespace:
            raise FuzzFailure(f"a watch of namespace {request.namespace!r} sent an object of "
                              f"{obj.metadata.namespace!r}: {_short(event)}")

    def _check_code(self, answer: Answer, request: Message | bytes) -> None:
        if answer.ok:
            return
        shown = f"{answer.method} answered {answer.code}: {answer.details[:2000]!r}\nrequest: {_short(request)}"
        if answer.code not in REFUSALS:
            raise FuzzFailure(f"not a refusal the API may answer: {shown}\nmaster alive: {self.master_alive()}")
        if answer.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            if not FIELD_PATH.search(answer.details):
                raise FuzzFailure(f"a refusal that names no field path: {shown}")
        elif not NAMES_OBJECT.search(answer.details):
            raise FuzzFailure(f"a refusal that names no object: {shown}")

    def write(self, method: str, request: Message | bytes) -> Answer:
        """A write: refused, it must leave /registry/ as it was; accepted, it must read back exactly."""
        before = _registry_state(self.kv)
        answer = self.call(method, request)
        if not answer.ok:
            after = _registry_state(self.kv)
            if after != before:
                raise FuzzFailure(f"a refused write changed etcd (keys, newest revision) {before} -> {after}: "
                                  f"{method} {answer.code} {answer.details[:500]!r}\nrequest: {_short(request)}")
            return answer
        if method == "Delete":
            response: api_pb2.DeleteResponse = answer.response
            self.read_back(response.object, gone=response.deleted)
        elif isinstance(answer.response, pb.Object):
            meta = kinds.unwrap(answer.response).metadata
            # An update that removes a terminating object's last finalizer deletes it (and answers its last
            # state), unless a kubelet still has to confirm a bound pod's end: either may be the case.
            ending = method == "Update" and meta.HasField("deletion_timestamp") and not meta.finalizers
            self.read_back(answer.response, gone=None if ending else False)
        return answer

    def read_back(self, envelope: pb.Object, *, gone: bool | None) -> None:
        """Get the object a write answered: the same bytes (gone False), NOT_FOUND (gone True), or either."""
        obj = kinds.unwrap(envelope)
        kind = kinds.kind_of(obj)
        got = self.call("Get", api_pb2.GetRequest(resource=kind.resource, namespace=obj.metadata.namespace,
                                                  name=obj.metadata.name))
        if got.code == grpc.StatusCode.NOT_FOUND and gone is not False:
            FIGURES.read_back += 1
            return
        if not got.ok:
            raise FuzzFailure(f"an accepted write does not read back: Get answered {got.code} {got.details!r}\n"
                              f"write: {_short(envelope)}")
        if gone:
            raise FuzzFailure(f"a deleted object still reads back: {_short(got.response)}")
        if envelope.SerializeToString(deterministic=True) != got.response.SerializeToString(deterministic=True):
            raise FuzzFailure(f"read back differs from what the write answered:\nwrite: {_short(envelope)}\n"
                              f"get:   {_short(got.response)}")
        FIGURES.read_back += 1

    def master_alive(self) -> bool:
        """The master process exists and is no zombie."""
        try:
            state = Path(f"/proc/{self.master_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        return state not in ("Z", "X")

    def check_alive(self) -> None:
        if not self.master_alive():
            raise FuzzFailure(f"the master died; its log is {self.master_log}")


def _short(value: Message | bytes, limit: int = 3000) -> str:
    text = repr(value[:200]) if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
