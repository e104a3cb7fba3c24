"""Who is calling: the verified client certificate of every call, and the first gate on each method.

The API port's TLS handshake already refused anyone without a certificate from the cluster CA (expired,
another CA's, none at all). This interceptor reads the certificate gRPC verified (`auth_context()`), turns its
subject into an `Identity` (CN = user, O = groups; parsed once per certificate and cached), and makes it the
call's `caller()` (a context variable: each call runs in its own task). Then it applies the method's gate:

- `/kyb.v1.NodeLink/*` is for node identities only (`system:node:<name>` in `system:nodes`); the servicer
  checks the name (master.auth.node);
- health checks, reflection, `Access/*` and `Certificates/Renew` are for any verified identity;
- everything else is for any verified identity too, and the servicer asks RBAC about the exact request
  (verb, resource, namespace, name), since only it knows them.

`/kyb.v1.Bootstrap/Join` is served on the bootstrap port only, without a certificate: it checks a join token.
A call with no verified identity on any other method is UNAUTHENTICATED; a refused one is PERMISSION_DENIED,
logged with the identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from kybernetes.core.identity.certs import CertificateError, Identity, identity_of, load_certificate
from kybernetes.core.log import get_logger

log = get_logger("auth")

BOOTSTRAP_METHOD = "/kyb.v1.Bootstrap/Join"
# How long a refused streaming call waits for the caller's first message before ending (see `_refuse`).
FIRST_MESSAGE_WAIT = 2.0
NODE_SERVICE_PREFIX = "/kyb.v1.NodeLink/"

_caller: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("caller", default=None)


def caller() -> Identity:
    """The verified identity of the call being served (RuntimeError outside an authenticated call)."""
    identity = _caller.get()
    if identity is None:
        raise RuntimeError("no authenticated caller in this context")
    return identity


def set_caller(identity: Identity | None) -> contextvars.Token[Identity | None]:
    """For in-process callers (the master's own loops) and tests."""
    return _caller.set(identity)


@functools.lru_cache(maxsize=4096)
def _identity_of_pem(pem: bytes) -> Identity:
    return identity_of(load_certificate(pem).subject)


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    """The identity in the peer's verified certificate, or None without one."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    try:
        return _identity_of_pem(pems[0])
    except CertificateError:
        return None


def _gate(method: str, identity: Identity) -> str | None:
    """Why `identity` may not call `method` at all, or None."""
    if method.startswith(NODE_SERVICE_PREFIX) and identity.node_name is None:
        return f'user "{identity.user}" is not a node identity: only kubelets use the node link'
    return None


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):
    """Sets `caller()` for every call on the API port, or ends the call before the servicer runs."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return handler._replace(**{kind: _guarded(method, behavior, streaming=kind.startswith("stream"))})
        return handler


async def _refuse(context: grpc.aio.ServicerContext, request: Any, *, streaming: bool, code: grpc.StatusCode,
                  message: str) -> None:
    if streaming:
        # Take the caller's first message before ending the call: a client whose first write races the
        # status would otherwise see its own failed write (INTERNAL) instead of the refusal.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(request.__anext__(), FIRST_MESSAGE_WAIT)
    await context.abort(code, message)


async def _admit(method: str, context: grpc.aio.ServicerContext, request: Any, *, streaming: bool) -> None:
    identity = peer_identity(context)
    if identity is None:
        await _refuse(context, request, streaming=streaming, code=grpc.StatusCode.UNAUTHENTICATED,
                      message="Unauthorized: a client certificate signed by the cluster CA is required")
        return
    refusal = _gate(method, identity)
    if refusal is not None:
        log.warning("call refused", method=method, user=identity.user, groups=",".join(identity.groups),
                    reason=refusal)
        await _refuse(context, request, streaming=streaming, code=grpc.StatusCode.PERMISSION_DENIED,
                      message=refusal)
    _caller.set(identity)


def _guarded(method: str, behavior: Callable[..., Any], *, streaming: bool) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(method, context, request, streaming=streaming)
            async for response in behavior(request, context):
                yield response

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _admit(method, context, request, streaming=streaming)
        result = behavior(request, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    return unary
