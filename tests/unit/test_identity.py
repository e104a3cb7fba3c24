"""Join tokens, the cluster CA, certificates and the sealed CA bundle (issue: identity on every link).

Certificates are checked the way a TLS peer would: signature by the CA, validity window, key usage,
subject identity and SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from kybernetes.core.identity import certs, tokens
from kybernetes.master.pki import bundle
from kybernetes.master.pki.authority import ClusterAuthority

SERVER_TOKEN = "a-server-token-of-this-cluster"


@pytest.fixture(scope="module")
def ca() -> ClusterAuthority:
    return ClusterAuthority.create()


def _verify(ca: ClusterAuthority, pem: bytes) -> x509.Certificate:
    certificate = x509.load_pem_x509_certificate(pem)
    certificate.verify_directly_issued_by(ca.certificate)
    now = dt.datetime.now(dt.UTC)
    assert certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc
    return certificate


# ---------------------------------------------------------------- tokens


def test_token_round_trips_and_hides_its_secret(ca: ClusterAuthority):
    token = tokens.generate(ca.hash)
    text = str(token)
    assert text.startswith("KYB1") and "::" in text and token.secret in text
    assert tokens.parse(text) == token
    assert tokens.parse(f"  {text}\n") == token
    assert token.secret not in repr(token)
    assert tokens.secret_matches(token, token.secret_hash)
    other = tokens.generate(ca.hash)
    assert not tokens.secret_matches(other, token.secret_hash)


@pytest.mark.parametrize(("text", "rule"), [
    ("K10abc::user:pass", "must start with KYB1"),
    ("KYB1" + "a" * 64, "must be KYB1<ca hash>::<id>.<secret>"),
    ("KYB1" + "A" * 64 + "::abcdef.0123456789abcdef", "CA hash must be 64 lowercase hex digits"),
    ("KYB1" + "a" * 63 + "::abcdef.0123456789abcdef", "CA hash must be 64 lowercase hex digits"),
    ("KYB1" + "a" * 64 + "::abcde.0123456789abcdef", "the id must be 6 characters"),
    ("KYB1" + "a" * 64 + "::abcdef0123456789abcdef", "the id must be 6 characters"),
    ("KYB1" + "a" * 64 + "::abcdef.0123456789abcde", "the secret must be 16 characters"),
    ("KYB1" + "a" * 64 + "::abcdef.0123456789ABCDEF", "the secret must be 16 characters"),
])
def test_bad_tokens_name_the_rule_and_never_echo_the_secret(text: str, rule: str):
    with pytest.raises(tokens.TokenError) as raised:
        tokens.parse(text)
    assert rule in str(raised.value)
    assert "0123456789" not in str(raised.value)


def test_generate_refuses_a_malformed_ca_hash():
    with pytest.raises(tokens.TokenError, match="ca hash: must be sha256:<64 lowercase hex digits>"):
        tokens.generate("md5:abc")


# ---------------------------------------------------------------- the CA and what it signs


def test_ca_is_a_ca_and_its_hash_pins_its_key(ca: ClusterAuthority):
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert ca.hash.startswith("sha256:") and len(ca.hash) == len("sha256:") + 64
    assert certs.ca_hash(ca.certificate) == ca.hash
    assert ClusterAuthority.create().hash != ca.hash
    reloaded = ClusterAuthority.load(certificate_pem_bytes=ca.certificate_pem, key_pem_bytes=ca.key_pem)
    assert reloaded.hash == ca.hash


def test_load_refuses_a_key_of_another_ca(ca: ClusterAuthority):
    with pytest.raises(certs.CertificateError, match="does not belong"):
        ClusterAuthority.load(certificate_pem_bytes=ca.certificate_pem, key_pem_bytes=ClusterAuthority.create().key_pem)


def test_serving_certificate_names_every_address_and_name(ca: ClusterAuthority):
    issued = ca.issue_server(names=["127.0.0.1", "10.99.0.10", "master", "127.0.0.1", "::1"])
    certificate = _verify(ca, issued.certificate)
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(a) for a in
                                                        ("127.0.0.1", "10.99.0.10", "::1")]
    assert sans.get_values_for_type(x509.DNSName) == ["master"]
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert issued.key is not None and certs.load_key(issued.key).public_key().public_numbers() == \
        certificate.public_key().public_numbers()
    with pytest.raises(certs.CertificateError, match="at least one"):
        ca.issue_server(names=[])


def test_client_certificate_carries_user_and_groups(ca: ClusterAuthority):
    issued = ca.issue_client(certs.Identity(user="admin", groups=("system:masters",)))
    certificate = _verify(ca, issued.certificate)
    assert certs.identity_of(certificate.subject) == certs.Identity("admin", ("system:masters",))
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_signed_request_gets_the_identity_the_master_decides(ca: ClusterAuthority):
    key = certs.new_key()
    # The request asks to be an admin; the master signs it as node1.
    request = certs.new_request(certs.Identity("admin", ("system:masters",)), key)
    issued = ca.sign_request(request, certs.node_identity("node1"))
    certificate = _verify(ca, issued.certificate)
    identity = certs.identity_of(certificate.subject)
    assert identity == certs.Identity("system:node:node1", ("system:nodes",))
    assert identity.node_name == "node1"
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    assert issued.key is None


def test_what_is_not_a_certificate_request_is_refused(ca: ClusterAuthority):
    pem = certs.new_request(certs.node_identity("node1"), certs.new_key())
    with pytest.raises(certs.CertificateError, match="request: not a PEM"):
        ca.sign_request(b"garbage", certs.node_identity("node1"))
    assert ca.sign_request(pem, certs.node_identity("node1")).certificate


def test_certificates_expire_and_another_ca_does_not_verify(ca: ClusterAuthority):
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = x509.load_pem_x509_certificate(
        ca.issue_client(certs.Identity("old"), now=long_ago, validity=dt.timedelta(days=1)).certificate)
    assert expired.not_valid_after_utc < dt.datetime.now(dt.UTC)
    stranger = x509.load_pem_x509_certificate(ClusterAuthority.create().issue_client(certs.Identity("x")).certificate)
    with pytest.raises(InvalidSignature):  # same issuer name, another key
        stranger.verify_directly_issued_by(ca.certificate)


def test_identity_needs_exactly_one_common_name():
    assert certs.Identity("system:node:", ("system:nodes",)).node_name is None
    assert certs.Identity("system:node:n1", ()).node_name is None
    with pytest.raises(certs.CertificateError, match="exactly one non-empty CN"):
        certs.identity_of(x509.Name([]))


def test_keys_are_ecdsa_p256():
    key = certs.load_key(certs.key_pem(certs.new_key()))
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    with pytest.raises(certs.CertificateError, match="not a PEM private key"):
        certs.load_key(b"nope")


# ---------------------------------------------------------------- the sealed CA


def test_sealed_ca_opens_only_with_its_server_token(ca: ClusterAuthority):
    sealed = bundle.seal(ca, server_token=SERVER_TOKEN)
    assert ca.key_pem not in sealed and b"PRIVATE KEY" not in sealed
    opened = bundle.open_sealed(sealed, server_token=SERVER_TOKEN)
    assert opened.hash == ca.hash and opened.key_pem == ca.key_pem
    with pytest.raises(bundle.BundleError, match="cannot be opened with this server token"):
        bundle.open_sealed(sealed, server_token="another-cluster")
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(bundle.BundleError):
        bundle.open_sealed(damaged, server_token=SERVER_TOKEN)
    with pytest.raises(bundle.BundleError, match="not a sealed Kybernetes CA"):
        bundle.open_sealed(b"KYBCA1short", server_token=SERVER_TOKEN)
    with pytest.raises(bundle.BundleError, match="Required value"):
        bundle.seal(ca, server_token="")
