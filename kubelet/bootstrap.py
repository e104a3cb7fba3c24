"""The kubelet's credentials helper (`python -m kybernetes.kubelet.bootstrap obtain|renew`, a short-lived
process started by kubelet.credentials): join with a token once, keep the certificate, renew it.

Join (TLS bootstrap, docs/identity.md §5):
1. read the master's CA from the bootstrap port without trusting it, and keep it only when its hash equals the
   token's (core.identity.discovery): nothing is sent before that check, so a wrong master gets no token;
2. make a key here (it never leaves the Node) and send a certificate request with the token, over TLS that
   now verifies the master against that CA;
3. store the CA, the certificate (CN `system:node:<name>`, O `system:nodes`) and the key under
   `<root-dir>/pki/<node>/` (0600), and connect with them from then on: a restart needs no token.

A stored certificate is used as long as it is valid and belongs to the token's cluster (when a token is
given: a cluster rebuilt with a new CA is joined again). Renewal: once two thirds of its validity have
passed, the kubelet asks for a new certificate over its current mutual-TLS channel (Certificates.Renew, its
own identity), stores it, and reconnects with it.

A refusal that retrying cannot fix (the CA does not match the token, the token is refused) is a
`JoinRefused`: the helper exits 3 with the reason, and the kubelet says so in one line and exits. An
unreachable master is retried.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from kybernetes.core.identity.certs import (
    CertificateError,
    ca_hash,
    key_pem,
    load_certificate,
    new_key,
    new_request,
    node_identity,
)
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.identity.discovery import DiscoveryError, discover_ca
from kybernetes.core.identity.tokens import JoinToken, TokenError, parse
from kybernetes.core.log import configure, get_logger
from kybernetes.core.machinery.backoff import retry_delay
from kybernetes.kubelet.credentials import CERT_NAME, REFUSED_EXIT, JoinRefused, pki_dir
from kybernetes.proto import identity_pb2, identity_pb2_grpc

log = get_logger("kubelet")


def stored(folder: Path, *, token: JoinToken | None, node_name: str) -> Credentials | None:
    """The stored credentials when they can be used: readable, this Node's, unexpired, the token's cluster."""
    try:
        credentials = Credentials.read(folder, name=CERT_NAME)
        credentials.check()
        if credentials.identity != node_identity(node_name):
            return None
        if credentials.not_after <= dt.datetime.now(dt.UTC):
            log.warning("stored certificate expired: joining again", node=node_name)
            return None
        if token is not None and ca_hash(load_certificate(credentials.ca)) != token.ca_hash:
            log.warning("stored credentials belong to another cluster's CA: joining again", node=node_name)
            return None
    except (OSError, CertificateError):
        return None
    return credentials


@dataclass
class Joiner:
    """Gets a Node its credentials: stored ones, or a join with the token."""

    node_name: str
    root_dir: Path
    bootstrap: str
    token: JoinToken | None

    @property
    def folder(self) -> Path:
        return pki_dir(self.root_dir, self.node_name)

    async def credentials(self) -> Credentials:
        have = stored(self.folder, token=self.token, node_name=self.node_name)
        if have is not None:
            return have
        if self.token is None:
            raise JoinRefused(f"no credentials in {self.folder} and no join token: give --token or --token-file "
                              f"(kybctl token create makes one)")
        attempt = 0
        while True:
            try:
                credentials = await self._join(self.token)
                break
            except (DiscoveryError, grpc.aio.AioRpcError) as err:
                retryable = (isinstance(err, grpc.aio.AioRpcError) and err.code() in
                             (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)) or \
                            (isinstance(err, DiscoveryError) and "cannot reach" in str(err))
                message = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
                if not retryable:
                    raise JoinRefused(message or "join refused") from None
                attempt += 1
                log.warning("cannot join yet, retrying", node=self.node_name, master=self.bootstrap,
                            error=message)
                await asyncio.sleep(retry_delay(attempt - 1, base=0.2, cap=5.0))
        credentials.write(self.folder, name=CERT_NAME)
        log.info("joined the cluster", node=self.node_name, ca_hash=self.token.ca_hash,
                 not_after=credentials.not_after.isoformat())
        return credentials

    async def _join(self, token: JoinToken) -> Credentials:
        ca = await discover_ca(self.bootstrap, expected_hash=token.ca_hash)
        key = new_key()
        request = identity_pb2.JoinRequest(token=str(token), node_name=self.node_name,
                                           certificate_request=new_request(node_identity(self.node_name), key))
        async with grpc.aio.secure_channel(self.bootstrap, grpc.ssl_channel_credentials(root_certificates=ca)) \
                as channel:
            out = await identity_pb2_grpc.BootstrapStub(channel).Join(request, timeout=15)
        if ca_hash(load_certificate(out.ca_certificate)) != token.ca_hash:
            raise JoinRefused("the master answered with a CA that does not match the token")
        return Credentials(ca=out.ca_certificate, certificate=out.certificate, key=key_pem(key))


async def renew(*, master: str, current: Credentials, folder: Path) -> Credentials:
    """A new certificate (and key) for the same identity, asked with the current one, stored in `folder`."""
    key = new_key()
    async with secure_channel(master, current) as channel:
        out = await identity_pb2_grpc.CertificatesStub(channel).Renew(identity_pb2.RenewCertificateRequest(
            certificate_request=new_request(current.identity, key)), timeout=15)
    fresh = Credentials(ca=out.ca_certificate, certificate=out.certificate, key=key_pem(key))
    fresh.write(folder, name=CERT_NAME)
    return fresh


def _meta(node: str, credentials: Credentials) -> str:
    return json.dumps({"node": node, "not_before": credentials.not_before.timestamp(),
                       "not_after": credentials.not_after.timestamp()})


async def _obtain(*, nodes: list[str], root_dir: Path, bootstrap: str, token: JoinToken | None) -> list[str]:
    joiners = [Joiner(node_name=n, root_dir=root_dir, bootstrap=bootstrap, token=token) for n in nodes]
    got = await asyncio.gather(*(j.credentials() for j in joiners))
    return [_meta(n, c) for n, c in zip(nodes, got, strict=True)]


def main(argv: list[str] | None = None) -> None:
    """The helper's command line (kubelet.credentials starts it; not meant for people)."""
    parser = argparse.ArgumentParser(prog="python -m kybernetes.kubelet.bootstrap")
    parser.add_argument("command", choices=["obtain", "renew"])
    parser.add_argument("--root-dir", type=Path, required=True)
    parser.add_argument("--node", action="append", required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--master", default="")
    args = parser.parse_args(argv)
    configure(level=os.environ.get("KYB_LOG_LEVEL", "info"))
    try:
        if args.command == "obtain":
            text = os.environ.get("KYB_JOIN_TOKEN", "").strip()
            token = parse(text) if text else None
            lines = asyncio.run(_obtain(nodes=args.node, root_dir=args.root_dir, bootstrap=args.bootstrap,
                                        token=token))
        else:
            folder = pki_dir(args.root_dir, args.node[0])
            fresh = asyncio.run(renew(master=args.master, current=Credentials.read(folder, name=CERT_NAME),
                                      folder=folder))
            lines = [_meta(args.node[0], fresh)]
    except (JoinRefused, TokenError) as err:
        print(json.dumps({"refused": str(err)}), flush=True)
        raise SystemExit(REFUSED_EXIT) from None
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    main()
