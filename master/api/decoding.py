"""Requests that do not parse: INVALID_ARGUMENT naming the field, instead of grpc's UNKNOWN.

grpc parses a request with the method's deserializer before any servicer code runs, and a `DecodeError`
there (invalid UTF-8 in a string field, a corrupt or truncated message) is answered UNKNOWN, "Unexpected
<class 'DecodeError'>", though it is the caller's input and not our bug. `DecodingInterceptor` wraps the
deserializer of every method whose request is a single message (unary-unary and unary-stream, on every
service of the API port): a request that does not parse becomes an `Undecodable` marker, and the method's
handler answers INVALID_ARGUMENT before it runs, naming the field path the bad bytes are at, as validation
does:

    object.pod.metadata.name: Invalid value: not a valid kyb.v1.CreateRequest: string is not valid UTF-8

`locate` finds that path by walking the wire format against the request's descriptor (JSON names, as
Kubernetes spells paths); where the bytes break the wire format itself, it names the innermost field that
encloses them, or `request` for the top level. Methods whose requests stream in (the node link, exec
input) keep grpc's own handling.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the wrapped deserializer returns for bytes that are not a valid request: the answer's message."""

    message: str


class _Corrupt(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Corrupt("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def locate(descriptor: Descriptor, data: bytes, path: str = "") -> tuple[str, str] | None:
    """(field path, problem) of the first bytes of `data` that are not a valid `descriptor` message, or None."""
    pos = 0
    while pos < len(data):
        try:
            key, pos = _varint(data, pos)
        except _Corrupt:
            return path, "truncated field tag"
        number, wire = key >> 3, key & 7
        field: FieldDescriptor | None = descriptor.fields_by_number.get(number)
        here = f"{path}.{field.json_name}" if path and field is not None else (field.json_name if field else path)
        if number == 0:
            return path, "field number 0"
        try:
            if wire == _WIRE_VARINT:
                _, pos = _varint(data, pos)
            elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
                pos += 8 if wire == _WIRE_FIXED64 else 4
            elif wire == _WIRE_LENGTH:
                length, pos = _varint(data, pos)
                chunk = data[pos:pos + length]
                pos += length
                if len(chunk) < length:
                    return here, "truncated"
                if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return here, "string is not valid UTF-8"
                elif field is not None and field.message_type is not None:
                    inner = locate(field.message_type, chunk, here)
                    if inner is not None:
                        return inner
            else:
                return here, f"wire type {wire} is not supported"
        except _Corrupt as err:
            return here, str(err)
        if pos > len(data):
            return here, "truncated"
    return None


def tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`parse` (a message class's FromString), answering an `Undecodable` instead of raising DecodeError."""
    descriptor: Descriptor | None = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as err:
            known = descriptor
            if known is None:
                return Undecodable(f"request: Invalid value: {err}")
            found = locate(known, data)
            path, problem = found if found is not None and found[0] else ("request", found[1] if found else str(err))
            return Undecodable(f"{path}: Invalid value: not a valid {known.full_name}: {problem}")

    return deserialize


def _refusing(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """`behavior`, answering INVALID_ARGUMENT for an `Undecodable` request before it runs."""
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for response in behavior(request, context):
                yield response

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        result = behavior(request, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    return unary


class DecodingInterceptor(grpc.aio.ServerInterceptor):
    """Undecodable requests of unary-request methods answered INVALID_ARGUMENT naming the field (see module)."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        behavior = getattr(handler, kind)
        if behavior is None:
            return handler
        return handler._replace(**{"request_deserializer": tolerant(handler.request_deserializer),
                                   kind: _refusing(behavior)})
