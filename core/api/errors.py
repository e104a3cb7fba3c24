"""The one error hierarchy of the API, from the store to the wire, and its one table of gRPC codes.

Every error the API answers is an `ApiError` subclass named after Kubernetes' reasons. The store raises
them (etcd unreachable: `UnavailableError`; a stale resourceVersion: `ConflictError`; a compacted watch
version: `ExpiredError`), validation raises `InvalidError` naming the field and the rule, the gRPC service
maps them to status codes with `code_of`, and the client maps a status code back with `error_from_rpc`.
Anything else that escapes a handler is our own bug: the service answers INTERNAL and logs the traceback;
it is never reported as the caller's fault (no bare ValueError becomes INVALID_ARGUMENT).
"""

from __future__ import annotations

import grpc


class ApiError(Exception):
    """An error answered by the API (or the absence of one)."""

    reason = "InternalError"
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFoundError(ApiError):
    reason, code = "NotFound", grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ApiError):
    reason, code = "AlreadyExists", grpc.StatusCode.ALREADY_EXISTS


class ConflictError(ApiError):
    reason, code = "Conflict", grpc.StatusCode.ABORTED


class InvalidError(ApiError):
    reason, code = "Invalid", grpc.StatusCode.INVALID_ARGUMENT


class UnavailableError(ApiError):
    reason, code = "ServiceUnavailable", grpc.StatusCode.UNAVAILABLE


class ExpiredError(ApiError):
    """A watch's resourceVersion has been compacted: re-list."""

    reason, code = "Expired", grpc.StatusCode.OUT_OF_RANGE


class ForbiddenError(ApiError):
    """The caller's identity is not allowed this (RBAC, the Node authorizer)."""

    reason, code = "Forbidden", grpc.StatusCode.PERMISSION_DENIED


class UnauthorizedError(ApiError):
    """No verified identity: no valid client certificate, or a join token that is refused."""

    reason, code = "Unauthorized", grpc.StatusCode.UNAUTHENTICATED


class TooManyRequestsError(ApiError):
    """A limit of the server is reached (Kubernetes' 429 TooManyRequests): the message names the limit and its
    flag; retry when the caller holds less (fewer watches, fewer sessions)."""

    reason, code = "TooManyRequests", grpc.StatusCode.RESOURCE_EXHAUSTED


# The table: status code <-> error class. DEADLINE_EXCEEDED reads as the API being unavailable.
_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    c.code: c for c in (NotFoundError, AlreadyExistsError, ConflictError, InvalidError, UnavailableError,
                        ExpiredError, ForbiddenError, UnauthorizedError, TooManyRequestsError)
}
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = UnavailableError


def code_of(err: ApiError) -> grpc.StatusCode:
    """The gRPC status code an API error is answered with."""
    return err.code


def error_from_rpc(err: grpc.RpcError) -> ApiError:
    """Our error type for a gRPC error."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, ApiError)
    return cls(details or code.name, code=code)
