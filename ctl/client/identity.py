"""The identity calls of a `Client`: join tokens, certificates, whoami and access reviews (can-i).

    async with Client() as kyb:
        token = await create_token(kyb, ttl_seconds=3600, description="rack 3")
        allowed, reason = await review(kyb, verb="delete", resource="pods", namespace="default")

Errors are the same `ApiError`s as the object API's (Forbidden for a caller RBAC refuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from kybernetes.core.api.errors import error_from_rpc
from kybernetes.core.identity.certs import Identity, key_pem, new_key, new_request
from kybernetes.core.identity.credentials import Credentials
from kybernetes.ctl.client.client import Client
from kybernetes.proto import identity_pb2, identity_pb2_grpc


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    description: str
    created: int
    expires: int  # 0 = never
    token: str = ""  # the whole token: only right after create


async def _call(client: Client, method: Any, request: Any) -> Any:
    try:
        return await method(request, timeout=client.timeout)
    except grpc.RpcError as err:
        raise error_from_rpc(err) from None


def _info(token: identity_pb2.Token) -> TokenInfo:
    return TokenInfo(id=token.id, description=token.description, created=token.created, expires=token.expires,
                     token=token.token)


async def create_token(client: Client, *, ttl_seconds: int = 0, description: str = "") -> TokenInfo:
    stub = identity_pb2_grpc.TokensStub(client.channel)
    return _info(await _call(client, stub.Create, identity_pb2.CreateTokenRequest(ttl_seconds=ttl_seconds,
                                                                                  description=description)))


async def list_tokens(client: Client) -> list[TokenInfo]:
    stub = identity_pb2_grpc.TokensStub(client.channel)
    return [_info(t) for t in (await _call(client, stub.List, identity_pb2.ListTokensRequest())).items]


async def delete_token(client: Client, token_id: str) -> None:
    stub = identity_pb2_grpc.TokensStub(client.channel)
    await _call(client, stub.Delete, identity_pb2.DeleteTokenRequest(id=token_id))


async def issue_certificate(client: Client, identity: Identity, *, validity_seconds: int = 0) -> Credentials:
    """Credentials for `identity`: the key is made here and never sent; the master signs its request."""
    key = new_key()
    stub = identity_pb2_grpc.CertificatesStub(client.channel)
    out = await _call(client, stub.Issue, identity_pb2.IssueCertificateRequest(
        user=identity.user, groups=list(identity.groups), certificate_request=new_request(identity, key),
        validity_seconds=validity_seconds))
    return Credentials(ca=out.ca_certificate, certificate=out.certificate, key=key_pem(key))


async def renew_certificate(client: Client) -> Credentials:
    """New credentials for the caller's own identity (a new key)."""
    key = new_key()
    stub = identity_pb2_grpc.CertificatesStub(client.channel)
    out = await _call(client, stub.Renew, identity_pb2.RenewCertificateRequest(
        certificate_request=new_request(client.credentials.identity, key)))
    return Credentials(ca=out.ca_certificate, certificate=out.certificate, key=key_pem(key))


async def whoami(client: Client) -> Identity:
    stub = identity_pb2_grpc.AccessStub(client.channel)
    out = await _call(client, stub.WhoAmI, identity_pb2.WhoAmIRequest())
    return Identity(user=out.user, groups=tuple(out.groups))


async def review(client: Client, *, verb: str, resource: str, namespace: str = "", name: str = "",
                 as_user: str = "", as_groups: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Whether the caller (or `as_user`, which needs impersonation rights) may do this: (allowed, reason)."""
    stub = identity_pb2_grpc.AccessStub(client.channel)
    out = await _call(client, stub.Review, identity_pb2.AccessReviewRequest(
        verb=verb, resource=resource, namespace=namespace, name=name, user=as_user, groups=list(as_groups)))
    return out.allowed, out.reason
