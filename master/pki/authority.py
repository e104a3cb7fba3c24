"""The cluster CA: made once, at the first master's start; it signs every certificate of the cluster.

Certificates carry Kubernetes' identities (`kybernetes.core.identity.certs`). A serving certificate is for
TLS servers (the master's API and node link); a client certificate for the callers (kybctl, the Python
client, kubelets, other masters). When the master signs a joining Node's request it takes only the public
key from it: the subject is the identity the master decided (`system:node:<name>` in `system:nodes`), so a
request cannot ask for more.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kybernetes.core.identity.certs import (
    CertificateError,
    Identity,
    ca_hash,
    certificate_pem,
    key_pem,
    load_certificate,
    load_key,
    load_request,
    new_key,
    subject_for,
)

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
# Issued certificates start a little in the past, so a peer whose clock is slightly behind accepts them.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key, both PEM (the key is None when the holder made it: a signed request)."""

    certificate: bytes
    key: bytes | None


class ClusterAuthority:
    """The CA's certificate and key, and what they sign."""

    def __init__(self, *, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self.key = key

    @classmethod
    def create(cls, *, name: str = "kybernetes-ca", now: dt.datetime | None = None) -> ClusterAuthority:
        """A new self-signed CA."""
        now = now or dt.datetime.now(dt.UTC)
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate=certificate, key=key)

    @classmethod
    def load(cls, *, certificate_pem_bytes: bytes, key_pem_bytes: bytes) -> ClusterAuthority:
        certificate = load_certificate(certificate_pem_bytes)
        key = load_key(key_pem_bytes)
        if certificate.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise CertificateError("ca: the key does not belong to the certificate")
        return cls(certificate=certificate, key=key)

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def hash(self) -> str:
        """`sha256:<hex>` of the CA's public key: what join tokens pin."""
        return ca_hash(self.certificate)

    def issue_server(self, *, names: Iterable[str], now: dt.datetime | None = None,
                     validity: dt.timedelta = LEAF_VALIDITY, peer: bool = False) -> Issued:
        """A serving certificate (and a new key) for every address and DNS name in `names`; with `peer`, also
        good as a client certificate (etcd members present theirs to each other)."""
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(names):  # keep order, drop repeats
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        if not sans:
            raise CertificateError("names: a serving certificate needs at least one address or DNS name")
        key = new_key()
        certificate = self._sign(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kyb-master")]),
                                 public_key=key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                                 sans=sans, now=now, validity=validity,
                                 also=(ExtendedKeyUsageOID.CLIENT_AUTH,) if peer else ())
        return Issued(certificate=certificate_pem(certificate), key=key_pem(key))

    def issue_client(self, identity: Identity, *, now: dt.datetime | None = None,
                     validity: dt.timedelta = LEAF_VALIDITY) -> Issued:
        """A client certificate (and a new key) for `identity`."""
        key = new_key()
        certificate = self._sign(subject=subject_for(identity), public_key=key.public_key(),
                                 usage=ExtendedKeyUsageOID.CLIENT_AUTH, now=now, validity=validity)
        return Issued(certificate=certificate_pem(certificate), key=key_pem(key))

    def sign_request(self, request_pem: bytes, identity: Identity, *, now: dt.datetime | None = None,
                     validity: dt.timedelta = LEAF_VALIDITY) -> Issued:
        """A client certificate for the key of a certificate request, with the identity the master decided.

        The request's own subject is ignored: what a Node may be is the master's decision, not its own.
        """
        request = load_request(request_pem)
        public_key = request.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CertificateError(f"request: the key must be ECDSA, is {type(public_key).__name__}")
        certificate = self._sign(subject=subject_for(identity), public_key=public_key,
                                 usage=ExtendedKeyUsageOID.CLIENT_AUTH, now=now, validity=validity)
        return Issued(certificate=certificate_pem(certificate), key=None)

    def _sign(self, *, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, usage: x509.ObjectIdentifier,
              now: dt.datetime | None, validity: dt.timedelta,
              sans: list[x509.GeneralName] | None = None,
              also: tuple[x509.ObjectIdentifier, ...] = ()) -> x509.Certificate:
        now = now or dt.datetime.now(dt.UTC)
        backdate = min(_BACKDATE, validity / 10)  # a short-lived certificate is not mostly past
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - backdate).not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage, *also]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())
