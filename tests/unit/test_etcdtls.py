"""etcd's own PKI (master.store.etcdtls): several members share one CA, each names every member."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

from cryptography import x509

from kybernetes.master.store.etcdtls import ensure_pki


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def test_pki_is_made_once_and_reused(tmp_path: Path):
    server, client = ensure_pki(tmp_path / "pki")
    assert sans(server.cert) == {"127.0.0.1", "localhost"}
    before = {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    ensure_pki(tmp_path / "pki")
    assert {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()} == before
    assert (server.key.stat().st_mode & 0o777) == 0o600 and (client.key.stat().st_mode & 0o777) == 0o600


def test_a_server_certificate_missing_a_host_is_issued_again(tmp_path: Path):
    server, _ = ensure_pki(tmp_path / "pki")
    old_ca = server.ca.read_bytes()
    ensure_pki(tmp_path / "pki", hosts=["10.99.0.10", "10.99.0.9", "10.99.0.8"])
    assert sans(server.cert) == {"10.99.0.10", "10.99.0.9", "10.99.0.8", "127.0.0.1", "localhost"}
    assert server.ca.read_bytes() == old_ca  # the CA stays
    # A subset of what it names: kept.
    kept = server.cert.read_bytes()
    ensure_pki(tmp_path / "pki", hosts=["10.99.0.9"])
    assert server.cert.read_bytes() == kept


def test_members_share_a_copied_ca_and_leaves_of_another_ca_are_replaced(tmp_path: Path):
    members = ["10.99.0.10", "10.99.0.9", "10.99.0.8"]
    first, first_client = ensure_pki(tmp_path / "m1", hosts=members)
    # Another member made its own PKI before the CA was copied in: its leaves belong to another CA.
    second_dir = tmp_path / "m2"
    ensure_pki(second_dir, hosts=members)
    for name in ("ca.crt", "ca.key", "client.crt", "client.key"):
        shutil.copy2(tmp_path / "m1" / name, second_dir / name)
    second, second_client = ensure_pki(second_dir, hosts=members)
    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    for cert in (second.cert, second_client.cert):
        x509.load_pem_x509_certificate(cert.read_bytes()).verify_directly_issued_by(ca)
    assert second.cert.read_bytes() != first.cert.read_bytes()  # a key of its own
    assert second_client.cert.read_bytes() == first_client.cert.read_bytes()
    assert all(ipaddress.ip_address(h) for h in members) and sans(second.cert) >= set(members)
