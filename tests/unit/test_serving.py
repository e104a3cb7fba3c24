"""The master's TLS, in process on loopback: the chain a joiner reads, rotation without a restart, and the
refusals of the authentication gate (a real grpc.aio server with the master's credentials and interceptor)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kybernetes.core.identity.certs import MASTERS_GROUP, Identity, ca_hash, node_identity
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.identity.discovery import DiscoveryError, discover_ca
from kybernetes.master.auth.authn import AuthenticationInterceptor
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.serving import ServingCredentials, serving_names
from kybernetes.proto import node_pb2, node_pb2_grpc


@dataclass
class Served:
    authority: ClusterAuthority
    tls: ServingCredentials
    address: str

    def credentials(self, identity: Identity) -> Credentials:
        issued = self.authority.issue_client(identity)
        assert issued.key is not None
        return Credentials(ca=self.authority.certificate_pem, certificate=issued.certificate, key=issued.key)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    authority = ClusterAuthority.create()
    tls = ServingCredentials(authority, names=serving_names(listen="127.0.0.1:0"))
    server = grpc.aio.server(interceptors=[AuthenticationInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    node_pb2_grpc.add_NodeLinkServicer_to_server(node_pb2_grpc.NodeLinkServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", tls.api_port())
    await server.start()
    try:
        yield Served(authority=authority, tls=tls, address=f"127.0.0.1:{port}")
    finally:
        await server.stop(None)


def _serial_seen(address: str) -> int:
    """The serial of the serving certificate a new TLS connection gets."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    import socket

    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_serving_names_cover_the_listen_address_loopback_and_extras():
    names = serving_names(listen="10.99.0.10:6443", extra=["master.lab"])
    assert names[:2] == ["master.lab", "10.99.0.10"]
    assert {"127.0.0.1", "::1", "localhost"} <= set(names)
    assert "0.0.0.0" not in serving_names(listen="0.0.0.0:6443")


async def test_a_joiner_reads_the_ca_from_the_chain_and_checks_its_hash(served: Served):
    pem = await discover_ca(served.address, expected_hash=served.authority.hash)
    assert pem == served.authority.certificate_pem
    with pytest.raises(DiscoveryError, match="does not match the token's"):
        await discover_ca(served.address, expected_hash="sha256:" + "0" * 64)
    assert ca_hash(x509.load_pem_x509_certificate(pem)) == served.authority.hash


async def test_the_serving_certificate_rotates_without_a_restart(served: Served):
    before = await asyncio.to_thread(_serial_seen, served.address)
    admin = served.credentials(Identity("admin", (MASTERS_GROUP,)))
    async with secure_channel(served.address, admin) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        served.tls.rotate()
        after = await asyncio.to_thread(_serial_seen, served.address)
        assert after != before, "a new connection gets the new certificate"
        assert after == x509.load_pem_x509_certificate(served.tls.certificate).serial_number
        # The connection made before the rotation keeps working.
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    # New clients verify the new certificate against the same CA.
    async with secure_channel(served.address, admin) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


async def test_the_node_link_is_for_node_identities_only(served: Served):
    admin = served.credentials(Identity("admin", (MASTERS_GROUP,)))
    async with secure_channel(served.address, admin) as channel:
        call = node_pb2_grpc.NodeLinkStub(channel).Connect(iter([node_pb2.NodeMessage()]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert 'user "admin" is not a node identity' in (raised.value.details() or "")
    # A node identity passes the gate (and reaches the servicer, here one that implements nothing).
    node = served.credentials(node_identity("n1"))
    async with secure_channel(served.address, node) as channel:
        call = node_pb2_grpc.NodeLinkStub(channel).Connect(iter([node_pb2.NodeMessage()]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
