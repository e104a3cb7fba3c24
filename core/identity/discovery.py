"""Finding the cluster CA from nothing but a join token: the first step of a join (docs/identity.md §5).

The joiner does not know the CA yet, so it cannot verify the master. It opens one TLS connection without
verification, reads the chain the master sends (its serving certificate, then the CA), and keeps the CA only
if the sha256 of its public key equals the hash in the token. Nothing is sent before that check: a
man in the middle gets no token. From then on every connection verifies the master against this CA.

Python's `ssl` gives the unverified chain through `SSLObject.get_unverified_chain()` (public from 3.13,
present as a private method on the SSL object in 3.11 and 3.12). ALPN offers `h2`, as gRPC does.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509

from kybernetes.core.identity.certs import ca_hash, certificate_pem


class DiscoveryError(Exception):
    """The master's CA could not be read, or it is not the one the token names."""


async def served_chain(address: str, *, timeout: float = 10.0) -> list[x509.Certificate]:
    """The certificates `address` sends in its TLS handshake, unverified (serving certificate first)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=context, server_hostname=None), timeout)
    except (OSError, TimeoutError, ValueError) as err:
        raise DiscoveryError(f"cannot reach the master at {address} to read its CA: {err or type(err).__name__}") \
            from None
    try:
        chain = _unverified_chain(writer.get_extra_info("ssl_object"))
    finally:
        # Abort, not close: a graceful TLS close waits for the server's close_notify, which a gRPC server
        # that has not seen an HTTP/2 preface may never send.
        writer.transport.abort()
    return [x509.load_der_x509_certificate(der) for der in chain]


async def served_ca(address: str, *, timeout: float = 10.0) -> bytes:
    """The PEM of the CA `address` serves (the last of its chain), unverified: trust on first use, for a caller
    that authenticates what it receives by other means (a master joining with the server token)."""
    chain = await served_chain(address, timeout=timeout)
    if len(chain) < 2:
        raise DiscoveryError(f"the master at {address} sent no CA with its certificate")
    return certificate_pem(chain[-1])


async def discover_ca(address: str, *, expected_hash: str, timeout: float = 10.0) -> bytes:
    """The PEM of the CA that `address` serves, when its hash is `expected_hash`; DiscoveryError otherwise."""
    chain = await served_chain(address, timeout=timeout)
    for certificate in chain:
        if ca_hash(certificate) == expected_hash:
            return certificate_pem(certificate)
    seen = ", ".join(ca_hash(c) for c in chain[1:]) or "none"
    raise DiscoveryError(f"the master at {address} serves a CA whose hash ({seen}) does not match the token's "
                         f"({expected_hash}): refusing to connect (wrong token, or not our master)")


def _unverified_chain(ssl_object: Any) -> list[bytes]:
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:  # Python 3.11, 3.12
        getter = ssl_object._sslobj.get_unverified_chain
    chain = getter() or []
    der = getattr(ssl, "ENCODING_DER", None)
    if der is None:  # not re-exported by ssl before 3.13
        import _ssl

        der = _ssl.ENCODING_DER
    return [c if isinstance(c, bytes) else c.public_bytes(der) for c in chain]
