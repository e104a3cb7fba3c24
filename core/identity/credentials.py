"""A holder's TLS credentials (CA, certificate, key) and the gRPC channels they open.

Every link is mutual TLS: the channel checks the master's certificate against the cluster CA (and its address
against the certificate's names), and presents the holder's client certificate, whose subject is who the
holder is. `Credentials` is what a kubeconfig context, a kubelet's pki folder or a test's issued certificate
turn into; `secure_channel` is the only way our code opens a channel to a master.

Holding and presenting credentials needs only their PEM bytes; the checks (`check`, `identity`, the validity
dates) load the `cryptography` package on first use, so a long-running process that only connects (the
kubelet) never pays its ~10 MiB.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from kybernetes.core.channel import channel_target

if TYPE_CHECKING:
    from kybernetes.core.identity.certs import Identity


@dataclass(frozen=True, slots=True)
class Credentials:
    """PEM bytes: the cluster CA that vouches for the master, and the holder's certificate and key."""

    ca: bytes
    certificate: bytes
    key: bytes

    def check(self) -> None:
        """CertificateError when any part is not what it must be (read before the first connection)."""
        from kybernetes.core.identity.certs import load_certificate, load_key

        load_certificate(self.ca)
        load_certificate(self.certificate)
        load_key(self.key)

    @property
    def identity(self) -> Identity:
        from kybernetes.core.identity.certs import identity_of, load_certificate

        return identity_of(load_certificate(self.certificate).subject)

    @property
    def not_after(self) -> dt.datetime:
        from kybernetes.core.identity.certs import load_certificate

        return load_certificate(self.certificate).not_valid_after_utc

    @property
    def not_before(self) -> dt.datetime:
        from kybernetes.core.identity.certs import load_certificate

        return load_certificate(self.certificate).not_valid_before_utc

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.certificate)

    # ------------------------------------------------------------------ files

    def write(self, folder: Path, *, name: str) -> None:
        """`ca.crt`, `<name>.crt` and `<name>.key` (0600) in `folder` (0700), each replaced atomically."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(folder / "ca.crt", self.ca, mode=0o644)
        write_private(folder / f"{name}.key", self.key)
        write_private(folder / f"{name}.crt", self.certificate, mode=0o644)

    @classmethod
    def read(cls, folder: Path, *, name: str) -> Credentials:
        return cls(ca=(folder / "ca.crt").read_bytes(), certificate=(folder / f"{name}.crt").read_bytes(),
                   key=(folder / f"{name}.key").read_bytes())


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write through a temporary file created with `mode` and renamed over `path`: never readable by others,
    never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def secure_channel(address: str, credentials: Credentials, *,
                   options: Sequence[tuple[str, object]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to a master (or to the first answering of several comma-separated addresses,
    core.channel.channel_target), mutual TLS with `credentials`."""
    target, extra = channel_target(address)
    return grpc.aio.secure_channel(target, credentials.channel_credentials(), options=[*options, *extra])
