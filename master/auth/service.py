"""The Access service: `kybctl auth whoami` and `kybctl auth can-i`.

Review answers with the very AccessControl the servicers enforce with, so can-i and the server agree.
Asking on behalf of someone else (`--as`) needs RBAC's `impersonate` on `users`, as in Kubernetes.
"""

from __future__ import annotations

import grpc

from kybernetes.core.api.errors import InvalidError
from kybernetes.core.identity.certs import Identity
from kybernetes.master.api.grpc_service import unary_rpc
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.auth.authn import caller
from kybernetes.proto import identity_pb2, identity_pb2_grpc


class AccessServicer(identity_pb2_grpc.AccessServicer):
    def __init__(self, *, access: AccessControl) -> None:
        self.access = access

    @unary_rpc
    async def WhoAmI(self, request: identity_pb2.WhoAmIRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> identity_pb2.UserInfo:
        me = caller()
        return identity_pb2.UserInfo(user=me.user, groups=list(me.groups))

    @unary_rpc
    async def Review(self, request: identity_pb2.AccessReviewRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> identity_pb2.AccessReviewResponse:
        if not request.verb:
            raise InvalidError("verb: Required value")
        if not request.resource:
            raise InvalidError("resource: Required value")
        subject = caller()
        if request.user:
            self.access.require(verb="impersonate", resource="users", name=request.user)
            subject = Identity(user=request.user, groups=tuple(request.groups))
        decision = self.access.review(subject, verb=request.verb, resource=request.resource,
                                      namespace=request.namespace, name=request.name)
        return identity_pb2.AccessReviewResponse(allowed=decision.allowed, reason=decision.reason)
