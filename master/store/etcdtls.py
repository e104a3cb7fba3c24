"""etcd behind mutual TLS: its own small CA, a serving certificate, and the client certificate the masters use.

etcd gets `--client-cert-auth`: nothing reaches it without a certificate from this CA, not even a process on
the same machine (a hostNetwork pod could otherwise write to 127.0.0.1:2379). The etcd CA is separate from the
cluster CA, as kubeadm's etcd/ca is: the cluster CA lives *in* etcd, so etcd's own credentials must exist
before it, on disk next to etcd's data.

`ensure_pki(folder, hosts=...)` makes what is missing and reuses what is there (0600 keys, 0700 folder):

    ca.crt ca.key           the etcd CA (10 years)
    server.crt server.key   etcd's serving certificate: SANs = the hosts given, 127.0.0.1, localhost; also the
                            member's peer certificate (peers present it to each other: --peer-client-cert-auth)
    client.crt client.key   CN kyb-master: what a master (or an operator's etcdctl) presents

A server certificate that lacks one of the hosts asked for, or a leaf that this CA did not sign (a CA copied
in from another member), is issued again. Several members share one CA: make it on one machine, copy
ca.crt/ca.key (and client.crt/client.key) to the others, and run this on each with `--host` for every
member's address. Every member's certificate then names every member: a master's etcd channel checks all of
them against the name of its first endpoint (master.store.etcd.Store).

Run as `python -m kybernetes.master.store.etcdtls DIR [--host H]...` by the provisioning scripts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kybernetes.core.identity.certs import CertificateError, Identity, load_certificate
from kybernetes.core.identity.credentials import write_private
from kybernetes.master.pki.authority import ClusterAuthority


@dataclass(frozen=True, slots=True)
class EtcdClientTLS:
    """Files a client of etcd presents and trusts."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


@dataclass(frozen=True, slots=True)
class EtcdServerTLS:
    """Files etcd serves with, and the CA whose client certificates it accepts."""

    ca: Path
    cert: Path
    key: Path

    def args(self) -> list[str]:
        return [f"--cert-file={self.cert}", f"--key-file={self.key}", "--client-cert-auth",
                f"--trusted-ca-file={self.ca}", f"--peer-cert-file={self.cert}", f"--peer-key-file={self.key}",
                "--peer-client-cert-auth", f"--peer-trusted-ca-file={self.ca}"]


def _reusable(cert: Path, key: Path, authority: ClusterAuthority, names: Sequence[str] = ()) -> bool:
    """Whether a leaf on disk was signed by `authority` and names every one of `names`."""
    if not (cert.exists() and key.exists()):
        return False
    try:
        certificate = load_certificate(cert.read_bytes())
        certificate.verify_directly_issued_by(authority.certificate)
    except (CertificateError, ValueError, TypeError, InvalidSignature):
        return False
    if not names:
        return True
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    return set(names) <= have


def ensure_pki(folder: Path, *, hosts: Sequence[str] = ()) -> tuple[EtcdServerTLS, EtcdClientTLS]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = folder / "ca.crt", folder / "ca.key"
    if ca_crt.exists() and ca_key.exists():
        authority = ClusterAuthority.load(certificate_pem_bytes=ca_crt.read_bytes(), key_pem_bytes=ca_key.read_bytes())
    else:
        authority = ClusterAuthority.create(name="kybernetes-etcd-ca")
        write_private(ca_key, authority.key_pem)
        write_private(ca_crt, authority.certificate_pem, mode=0o644)
    server = EtcdServerTLS(ca=ca_crt, cert=folder / "server.crt", key=folder / "server.key")
    names = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
    if not _reusable(server.cert, server.key, authority, names):
        issued = authority.issue_server(names=names, peer=True)
        assert issued.key is not None
        write_private(server.key, issued.key)
        write_private(server.cert, issued.certificate, mode=0o644)
    client = EtcdClientTLS(ca=ca_crt, cert=folder / "client.crt", key=folder / "client.key")
    if not _reusable(client.cert, client.key, authority):
        issued = authority.issue_client(Identity(user="kyb-master"))
        assert issued.key is not None
        write_private(client.key, issued.key)
        write_private(client.cert, issued.certificate, mode=0o644)
    return server, client


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kybernetes.master.store.etcdtls",
                                     description="Make (or keep) etcd's CA, serving and client certificates.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--host", action="append", default=[], help="An address or name etcd is reached by.")
    args = parser.parse_args(argv)
    ensure_pki(args.dir, hosts=args.host)


if __name__ == "__main__":
    main()
