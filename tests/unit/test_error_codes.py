"""One error hierarchy, one table: every API error is answered with its own status code, and anything else
is our bug, answered INTERNAL and logged with its traceback, never INVALID_ARGUMENT.

The real ObjectAPI servicer runs in-process on loopback over a stand-in object service whose calls raise,
behind the master's real mutual TLS and authentication interceptor (an admin certificate from a fresh CA).
"""

from __future__ import annotations

import grpc
import pytest
import structlog

from kybernetes.core.api import errors
from kybernetes.core.api.labels import SelectorError
from kybernetes.core.identity.certs import MASTERS_GROUP, Identity
from kybernetes.ctl.client import Client, Credentials
from kybernetes.master.api.decoding import DecodingInterceptor
from kybernetes.master.api.grpc_service import MAX_STATUS_MESSAGE_BYTES, ObjectAPIServicer, fit_status_message
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.auth.authn import AuthenticationInterceptor
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.serving import ServingCredentials
from kybernetes.proto import api_pb2, api_pb2_grpc


class RaisingService:
    """Stands in for ObjectService: `get` raises whatever the test put in `error`."""

    def __init__(self) -> None:
        self.error: BaseException = RuntimeError("unset")

    async def get(self, resource: str, name: str, namespace: str) -> object:
        raise self.error


@pytest.fixture
async def served() -> object:
    service = RaisingService()
    authority = ClusterAuthority.create()
    server = grpc.aio.server(interceptors=[AuthenticationInterceptor(), DecodingInterceptor()])  # as master.app
    api_pb2_grpc.add_ObjectAPIServicer_to_server(
        ObjectAPIServicer(service=service, access=AccessControl()), server)  # type: ignore[arg-type]
    port = server.add_secure_port("127.0.0.1:0", ServingCredentials(authority, names=["127.0.0.1"]).api_port())
    await server.start()
    admin = authority.issue_client(Identity(user="admin", groups=(MASTERS_GROUP,)))
    assert admin.key is not None
    credentials = Credentials(ca=authority.certificate_pem, certificate=admin.certificate, key=admin.key)
    try:
        async with Client(f"127.0.0.1:{port}", credentials=credentials) as client:
            yield service, client
    finally:
        await server.stop(None)


@pytest.mark.parametrize(("error", "code"), [
    (errors.NotFoundError('pods "x" not found'), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError('pods "x" already exists'), grpc.StatusCode.ALREADY_EXISTS),
    (errors.ConflictError("the object has been modified"), grpc.StatusCode.ABORTED),
    (errors.InvalidError("spec.replicas: Invalid value: -1"), grpc.StatusCode.INVALID_ARGUMENT),
    (SelectorError("unable to parse requirement"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnavailableError("etcd unavailable"), grpc.StatusCode.UNAVAILABLE),
    (errors.ExpiredError("too old resource version"), grpc.StatusCode.OUT_OF_RANGE),
    (errors.ForbiddenError('pods "x" is forbidden'), grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnauthorizedError("Unauthorized"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.TooManyRequestsError("too many watches"), grpc.StatusCode.RESOURCE_EXHAUSTED),
])
async def test_api_errors_keep_their_code_and_message(served, error: errors.ApiError, code: grpc.StatusCode):
    service, client = served
    service.error = error
    with pytest.raises(errors.ApiError) as raised:
        await client.get("pods", "x")
    assert raised.value.code == code
    assert raised.value.message == error.message
    assert type(raised.value) is (errors.InvalidError if isinstance(error, SelectorError) else type(error))


@pytest.mark.parametrize("bug", [ValueError("int() base 10: 'x'"), KeyError("spec"), TypeError("NoneType"),
                                 AttributeError("'Pod' has no attribute 'x'")])
async def test_our_bugs_are_internal_and_logged_with_a_traceback(served, bug: Exception):
    service, client = served
    service.error = bug
    with structlog.testing.capture_logs() as logs, pytest.raises(errors.ApiError) as raised:
        await client.get("pods", "x")
    assert raised.value.code == grpc.StatusCode.INTERNAL
    assert not isinstance(raised.value, errors.InvalidError)
    assert "internal error" in raised.value.message
    [line] = [entry for entry in logs if entry["event"] == "internal error"]
    assert line["log_level"] == "error" and line["method"] == "Get"
    assert line["exc_info"] is bug and bug.__traceback__ is not None


@pytest.mark.parametrize(("raw", "path", "problem"), [
    # GetRequest.name (field 3) holding bytes that are no UTF-8: found by the API fuzzer answered UNKNOWN.
    (b"\x0a\x04pods\x1a\x02\xff\xfe", "name", "string is not valid UTF-8"),
    (b"\xff\xff\xff", "request", "truncated field tag"),
    (b"\x0a\x09pods", "resource", "truncated"),
])
async def test_a_request_that_does_not_parse_is_invalid_argument_naming_the_field(served, raw: bytes, path: str,
                                                                                 problem: str):
    service, client = served
    call = client.channel.unary_unary("/kyb.v1.ObjectAPI/Get")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(raw)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"{path}: Invalid value: not a valid kyb.v1.GetRequest: {problem}"


async def test_a_field_deep_in_an_undecodable_request_is_named_by_its_path(served):
    service, client = served
    marker = "\x01mark\x01"
    request = api_pb2.CreateRequest()
    request.object.pod.metadata.labels["app"] = marker
    raw = request.SerializeToString().replace(marker.encode(), b"\xc3\x28" * 3)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.channel.unary_unary("/kyb.v1.ObjectAPI/Create")(raw)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("object.pod.metadata.labels.value: Invalid value: ")


async def test_a_refusal_too_long_for_grpc_metadata_is_cut_not_lost(served):
    # Found by the API fuzzer: a refusal quoting a 1.2 MB value reached the client as RESOURCE_EXHAUSTED
    # ("received metadata size exceeds hard limit"), so the caller never learned what was wrong.
    service, client = served
    service.error = errors.InvalidError("metadata.name: Invalid value: " + "é" * 1_000_000)
    with pytest.raises(errors.InvalidError) as raised:
        await client.get("pods", "x")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith("metadata.name: Invalid value: éé")
    assert raised.value.message.endswith("... (message cut: 1000030 characters)")


def test_fit_status_message_counts_percent_encoding():
    assert fit_status_message("spec: Invalid value: 1") == "spec: Invalid value: 1"
    cut = fit_status_message("x: " + "\u20ac" * 10_000)  # 3 UTF-8 bytes, 9 once percent-encoded
    assert len(cut.encode()) * 3 <= MAX_STATUS_MESSAGE_BYTES * 3 and len(cut) < MAX_STATUS_MESSAGE_BYTES // 9 + 60
