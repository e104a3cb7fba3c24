"""The Certificates service: an admin issues a certificate for any identity (`kybctl certificate issue`), and
any caller renews its own (a kubelet before its certificate expires).

Issue needs RBAC's `create` on the cluster-scoped resource `certificates`. With a certificate request only its
public key is used; without one the master makes the key and returns it once, over the mutual-TLS channel.
Renew certifies the caller's own identity, read from the certificate it connected with, for a new key.
"""

from __future__ import annotations

import datetime as dt

import grpc

from kybernetes.core.api.errors import InvalidError
from kybernetes.core.identity.certs import CertificateError, Identity
from kybernetes.core.log import get_logger
from kybernetes.master.api.grpc_service import unary_rpc
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.auth.authn import caller
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.proto import identity_pb2, identity_pb2_grpc

log = get_logger("pki")

MAX_VALIDITY = dt.timedelta(days=3650)


class CertificatesServicer(identity_pb2_grpc.CertificatesServicer):
    def __init__(self, *, authority: ClusterAuthority, access: AccessControl, validity: dt.timedelta) -> None:
        self.authority = authority
        self.access = access
        self.validity = validity

    def _issued(self, identity: Identity, request_pem: bytes, validity: dt.timedelta) -> identity_pb2.IssuedCertificate:
        try:
            if request_pem:
                issued = self.authority.sign_request(request_pem, identity, validity=validity)
            else:
                issued = self.authority.issue_client(identity, validity=validity)
        except CertificateError as err:
            raise InvalidError(f"certificate_request: {err}") from None
        return identity_pb2.IssuedCertificate(certificate=issued.certificate, key=issued.key or b"",
                                              ca_certificate=self.authority.certificate_pem)

    @unary_rpc
    async def Issue(self, request: identity_pb2.IssueCertificateRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> identity_pb2.IssuedCertificate:
        who = self.access.require(verb="create", resource="certificates", name=request.user)
        if not request.user:
            raise InvalidError("user: Required value")
        for field, value in [("user", request.user), *(("groups", g) for g in request.groups)]:
            if not value or len(value) > 128 or any(ord(c) < 32 for c in value):
                raise InvalidError(f'{field}: Invalid value: "{value}": must be 1-128 printable characters')
        if not 0 <= request.validity_seconds <= MAX_VALIDITY.total_seconds():
            raise InvalidError(f"validity_seconds: Invalid value: must be 0 (the default) up to "
                               f"{int(MAX_VALIDITY.total_seconds())}")
        validity = dt.timedelta(seconds=request.validity_seconds) if request.validity_seconds else self.validity
        identity = Identity(user=request.user, groups=tuple(request.groups))
        out = self._issued(identity, request.certificate_request, validity)
        log.info("certificate issued", user=identity.user, groups=",".join(identity.groups), by=who.user)
        return out

    @unary_rpc
    async def Renew(self, request: identity_pb2.RenewCertificateRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> identity_pb2.IssuedCertificate:
        if not request.certificate_request:
            raise InvalidError("certificate_request: Required value")
        identity = caller()
        out = self._issued(identity, request.certificate_request, self.validity)
        log.info("certificate renewed", user=identity.user)
        return out
