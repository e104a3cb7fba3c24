"""The Bootstrap service (a join token and a certificate request in, a Node certificate out; and a master
joining the cluster's etcd, master.join.masters) and the Tokens service (create, list, delete).

Bootstrap.Join is the one call served without a client certificate, on its own port: the caller proved
nothing yet but holds a token. The token is checked (this cluster's CA hash, a known id, the right secret,
not expired); the certificate says `system:node:<node_name>` in `system:nodes` whatever the request's own
subject asks for. A kubelet may name itself as any Node, as with Kubernetes' bootstrap tokens: the token
is what the operator handed out to admit a machine; from then on the Node authorizer holds the machine to
that one name.

Tokens need RBAC's verbs on the cluster-scoped resource `tokens` (admins only, by default).
"""

from __future__ import annotations

import datetime as dt

import grpc

from kybernetes.core.api.errors import InvalidError, NotFoundError, UnauthorizedError
from kybernetes.core.api.formats import dns1123_subdomain
from kybernetes.core.identity.certs import CertificateError, node_identity
from kybernetes.core.identity.tokens import TokenError, parse
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.master.api.grpc_service import unary_rpc
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.join.masters import MasterJoinService
from kybernetes.master.join.tokens import TokenRecord, TokenRefused, TokenRegistry
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.proto import identity_pb2, identity_pb2_grpc

log = get_logger("join")


class BootstrapServicer(identity_pb2_grpc.BootstrapServicer):
    def __init__(self, *, authority: ClusterAuthority, tokens: TokenRegistry, validity: dt.timedelta,
                 masters: MasterJoinService) -> None:
        self.authority = authority
        self.tokens = tokens
        self.validity = validity
        self.masters = masters

    @unary_rpc
    async def JoinMaster(self, request: identity_pb2.MasterJoinRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext) -> identity_pb2.MasterJoinResponse:
        """A master joining the cluster's etcd (master.join.masters)."""
        return await self.masters.join(request)

    @unary_rpc
    async def Join(self, request: identity_pb2.JoinRequest,  # noqa: N802
                   context: grpc.aio.ServicerContext) -> identity_pb2.IssuedCertificate:
        try:
            token = parse(request.token)
        except TokenError as err:
            raise UnauthorizedError(f"Unauthorized: {err}") from None
        try:
            record = await self.tokens.verify(token)
        except TokenRefused as err:
            log.warning("join refused", token=token.token_id, node=request.node_name, reason=str(err))
            raise UnauthorizedError(f"Unauthorized: {err}") from None
        problems = dns1123_subdomain(request.node_name)
        if problems:
            raise InvalidError(f'node_name: Invalid value: "{request.node_name}": {problems[0]}')
        try:
            issued = self.authority.sign_request(request.certificate_request, node_identity(request.node_name),
                                                 validity=self.validity)
        except CertificateError as err:
            raise InvalidError(f"certificate_request: {err}") from None
        log.info("node joined", object=obj_ref("nodes", request.node_name), token=record.id)
        return identity_pb2.IssuedCertificate(certificate=issued.certificate,
                                              ca_certificate=self.authority.certificate_pem)


def _token_message(record: TokenRecord, *, whole: str = "") -> identity_pb2.Token:
    return identity_pb2.Token(id=record.id, token=whole, description=record.description, expires=record.expires,
                              created=record.created)


class TokensServicer(identity_pb2_grpc.TokensServicer):
    def __init__(self, *, tokens: TokenRegistry, access: AccessControl) -> None:
        self.tokens = tokens
        self.access = access

    @unary_rpc
    async def Create(self, request: identity_pb2.CreateTokenRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> identity_pb2.Token:
        who = self.access.require(verb="create", resource="tokens")
        if request.ttl_seconds < 0:
            raise InvalidError("ttl_seconds: Invalid value: must be 0 (never expires) or more")
        if len(request.description) > 256:
            raise InvalidError("description: Too long: must have at most 256 characters")
        token, record = await self.tokens.create(ttl_seconds=request.ttl_seconds, description=request.description)
        log.info("token created", token=record.id, user=who.user, expires=record.expires)
        return _token_message(record, whole=str(token))

    @unary_rpc
    async def List(self, request: identity_pb2.ListTokensRequest,  # noqa: N802
                   context: grpc.aio.ServicerContext) -> identity_pb2.TokenList:
        self.access.require(verb="list", resource="tokens")
        return identity_pb2.TokenList(items=[_token_message(r) for r in await self.tokens.list()])

    @unary_rpc
    async def Delete(self, request: identity_pb2.DeleteTokenRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> identity_pb2.DeleteTokenResponse:
        who = self.access.require(verb="delete", resource="tokens", name=request.id)
        if not await self.tokens.delete(request.id):
            raise NotFoundError(f'tokens "{request.id}" not found')
        log.info("token deleted", token=request.id, user=who.user)
        return identity_pb2.DeleteTokenResponse()
