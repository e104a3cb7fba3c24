"""The master's TLS: its serving certificate, rotated without a restart, and the two ports' credentials.

gRPC's dynamic server credentials call `fetch()` at every new handshake (in a gRPC thread); it answers None
(keep the configuration) or a new one. The serving certificate is issued by the master itself at start and
issued again once two thirds of its validity has passed, so a long-running master never serves an expired
certificate and clients see the new one at their next connection. Connections already open keep theirs.

The chain sent is the serving certificate and then the CA: that lets a joiner read the CA before it trusts
it (core.identity.discovery).

- The API port requires a client certificate signed by the CA: a caller without one fails the handshake.
- The bootstrap port asks for none; it serves only Bootstrap.Join, which checks a join token.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable

import grpc

from kybernetes.core.channel import MASTER_NAME
from kybernetes.core.identity.certs import load_certificate
from kybernetes.core.log import get_logger
from kybernetes.master.pki.authority import ClusterAuthority

log = get_logger("pki")

SERVING_VALIDITY = dt.timedelta(days=365)


def serving_names(*, listen: str, extra: Iterable[str] = ()) -> list[str]:
    """Every name the master is reached by: its listen address (unless a wildcard), loopback, its hostname,
    and whatever --tls-san adds."""
    host = listen.rpartition(":")[0].strip("[]")
    names = list(extra)
    try:
        if not ipaddress.ip_address(host).is_unspecified:
            names.append(host)
    except ValueError:
        if host:
            names.append(host)
    # MASTER_NAME: the name a client of several masters checks (core.channel.channel_target).
    names += ["127.0.0.1", "::1", "localhost", socket.gethostname(), MASTER_NAME]
    return list(dict.fromkeys(n for n in names if n))


class ServingCredentials:
    """The serving certificate and the two server credentials that present it."""

    def __init__(self, authority: ClusterAuthority, *, names: list[str],
                 validity: dt.timedelta = SERVING_VALIDITY) -> None:
        self.authority = authority
        self.names = names
        self.validity = validity
        self._lock = threading.Lock()
        self._renew_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.certificate = b""
        self.rotations = 0
        self._config = self._issue()

    def _issue(self) -> grpc.ServerCertificateConfiguration:
        issued = self.authority.issue_server(names=self.names, validity=self.validity)
        assert issued.key is not None
        certificate = load_certificate(issued.certificate)
        start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        self._renew_at = start + (end - start) * 2 / 3
        self.certificate = issued.certificate
        log.info("serving certificate issued", names=",".join(self.names), not_after=end.isoformat(),
                 serial=format(certificate.serial_number, "x"))
        return grpc.ssl_server_certificate_configuration(
            [(issued.key, issued.certificate + self.authority.certificate_pem)],
            root_certificates=self.authority.certificate_pem)

    def rotate(self) -> None:
        """Issue a new serving certificate now; new connections on both ports get it."""
        with self._lock:
            self._config = self._issue()
            self.rotations += 1

    def _fetcher(self) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
        """One port's fetch(): the configuration when it changed since this port last took it, else None."""
        seen = self.rotations

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal seen
            with self._lock:
                if dt.datetime.now(dt.UTC) >= self._renew_at:
                    self._config = self._issue()
                    self.rotations += 1
                if seen == self.rotations:
                    return None
                seen = self.rotations
                return self._config

        return fetch

    def api_port(self) -> grpc.ServerCredentials:
        """Mutual TLS: the handshake fails without a client certificate from the cluster CA."""
        return grpc.dynamic_ssl_server_credentials(self._config, self._fetcher(),
                                                   require_client_authentication=True)

    def bootstrap_port(self) -> grpc.ServerCredentials:
        """Server TLS only (the caller has a token, not yet a certificate)."""
        return grpc.dynamic_ssl_server_credentials(self._config, self._fetcher(),
                                                   require_client_authentication=False)
