"""x509 pieces both sides of a link need, on the `cryptography` package.

Identities follow Kubernetes: a certificate's subject CN is the user (`system:node:node1` for a Node) and
its O entries are the groups (`system:nodes`, `system:masters`). Keys are ECDSA P-256: small, fast to make
and to verify, and accepted by every TLS stack gRPC uses.

The CA hash pins a cluster's CA the way kubeadm's discovery hash does: sha256 of the CA certificate's
DER-encoded SubjectPublicKeyInfo, written `sha256:<hex>`. It survives re-issuing the CA certificate with
the same key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
MASTERS_GROUP = "system:masters"


class CertificateError(ValueError):
    """A certificate or request that cannot be read or does not hold what it must."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a certificate says its holder is."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def node_name(self) -> str | None:
        """The Node name of a node identity (`system:node:<name>` in `system:nodes`), else None."""
        if self.user.startswith(NODE_USER_PREFIX) and NODES_GROUP in self.groups:
            return self.user[len(NODE_USER_PREFIX):] or None
        return None


def node_identity(node_name: str) -> Identity:
    return Identity(user=NODE_USER_PREFIX + node_name, groups=(NODES_GROUP,))


def subject_for(identity: Identity) -> x509.Name:
    """CN = user, one O per group (in order)."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.user)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
    return x509.Name(attributes)


def identity_of(name: x509.Name) -> Identity:
    """The identity a subject names; CertificateError without exactly one CN."""
    common_names = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(common_names) != 1 or not common_names[0]:
        raise CertificateError(f"subject: must have exactly one non-empty CN, has {len(common_names)}")
    groups = tuple(str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return Identity(user=common_names[0], groups=groups)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as err:
        raise CertificateError(f"key: not a PEM private key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"key: must be an ECDSA key, is {type(key).__name__}")
    return key


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise CertificateError(f"certificate: not a PEM certificate: {err}") from None


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def ca_hash(ca_certificate: x509.Certificate) -> str:
    """`sha256:<hex>` of the CA's DER SubjectPublicKeyInfo: what a join token pins."""
    spki = ca_certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def new_request(identity: Identity, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PEM certificate signing request for `identity`, signed by `key`."""
    request = x509.CertificateSigningRequestBuilder().subject_name(subject_for(identity)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def load_request(pem: bytes) -> x509.CertificateSigningRequest:
    """A certificate request whose self-signature verifies; CertificateError otherwise."""
    try:
        request = x509.load_pem_x509_csr(pem)
    except ValueError as err:
        raise CertificateError(f"request: not a PEM certificate request: {err}") from None
    if not request.is_signature_valid:
        raise CertificateError("request: its signature does not verify")
    return request
