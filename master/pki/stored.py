"""The cluster CA's one home: etcd, sealed with the server token (docs/identity.md §3).

At its first start a master finds no CA in etcd, makes one, seals it and writes it with a create-if-absent
transaction. Two masters starting at once cannot both win: the loser reads the winner's CA. Every later start
(this master's or another's) opens the CA from etcd with the server token; a master given another cluster's
token refuses to start rather than serve a CA nobody trusts.

The server token itself is a secret of the masters: `--token`, else a file in the master's data dir, made
at the first start (0600). A second master needs the same token (the HA work).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from kybernetes.core.identity.credentials import write_private
from kybernetes.core.log import get_logger
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.bundle import BundleError, open_sealed, seal
from kybernetes.master.store.etcd import RawKeys, Store

log = get_logger("pki")

CA_KEY = "ca"
SERVER_TOKEN_FILE = "server-token"


class AuthorityError(Exception):
    """The CA in etcd cannot be opened with this master's server token."""


def server_token(*, given: str, data_dir: Path) -> str:
    """`given` when set; else the token in `data_dir`, made (random, 0600) when there is none."""
    if given:
        return given.strip()
    path = data_dir / SERVER_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    write_private(path, token.encode() + b"\n")
    log.info("made the server token", path=str(path))
    return token


async def cluster_authority(store: Store, *, token: str) -> ClusterAuthority:
    """The cluster CA from etcd, made and stored at the first start."""
    keys = RawKeys(store, "pki")
    sealed = await keys.get(CA_KEY)
    if sealed is None:
        authority = ClusterAuthority.create()
        if await keys.create(CA_KEY, seal(authority, server_token=token)):
            log.info("made the cluster CA", ca_hash=authority.hash)
            return authority
        sealed = await keys.get(CA_KEY)  # another master made it first
        assert sealed is not None
    try:
        authority = open_sealed(sealed, server_token=token)
    except BundleError as err:
        raise AuthorityError(f"the cluster CA in etcd: {err}") from None
    log.info("opened the cluster CA", ca_hash=authority.hash)
    return authority
