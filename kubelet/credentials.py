"""A kubelet's credentials as the long-running kubelet holds them: PEM bytes and validity dates, nothing more.

Everything that needs x509 (reading the master's CA from the chain, making keys and certificate requests,
checking stored certificates) runs in a short-lived helper process, `python -m kybernetes.kubelet.bootstrap`
(see there for the join itself). The kubelet thus never loads the `cryptography` package (~10 MiB of
resident memory for as long as it runs). One helper serves every Node of the process at once (a hollow
kubelet runs hundreds), at start and at each renewal.

The helper prints one JSON object per Node on stdout (`node`, `not_before`, `not_after`, epoch seconds) and
logs on stderr, which the kubelet passes through to its own. It exits 3 with `{"refused": "..."}` when joining
cannot succeed by retrying (the master's CA does not match the token, the token is refused, no token and no
stored certificate): the kubelet then says so in one line and exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kybernetes.core.identity.credentials import Credentials

CERT_NAME = "kubelet"
REFUSED_EXIT = 3


class JoinRefused(Exception):  # noqa: N818 - a refusal, not a bug
    """Joining cannot succeed by retrying: the master's CA is not the token's, or the token is refused."""


class HelperFailed(Exception):
    """The credentials helper failed for another reason (its log says why); renewal retries later."""


def pki_dir(root_dir: Path, node_name: str) -> Path:
    return root_dir / "pki" / node_name


def bootstrap_address(master: str) -> str:
    """The bootstrap port's default address: the (first) master's host, the API port + 1."""
    host, _, port = master.split(",")[0].strip().rpartition(":")
    return f"{host}:{int(port) + 1}"


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    node: str
    credentials: Credentials
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def renew_at(self) -> dt.datetime:
        """Two thirds into the certificate's validity."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


async def _helper(args: Sequence[str], *, token: str = "") -> list[dict[str, object]]:
    env = {**os.environ, "KYB_JOIN_TOKEN": token} if token else \
        {k: v for k, v in os.environ.items() if k != "KYB_JOIN_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kybernetes.kubelet.bootstrap", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=None, env=env)
    out, _ = await proc.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    if proc.returncode == REFUSED_EXIT:
        raise JoinRefused(str(lines[-1].get("refused", "join refused")) if lines else "join refused")
    if proc.returncode != 0:
        raise HelperFailed(f"the credentials helper exited with {proc.returncode}")
    return lines


def _read(root_dir: Path, meta: dict[str, object]) -> NodeCredentials:
    node = str(meta["node"])
    return NodeCredentials(
        node=node, credentials=Credentials.read(pki_dir(root_dir, node), name=CERT_NAME),
        not_before=dt.datetime.fromtimestamp(float(meta["not_before"]), dt.UTC),  # type: ignore[arg-type]
        not_after=dt.datetime.fromtimestamp(float(meta["not_after"]), dt.UTC))  # type: ignore[arg-type]


async def obtain(*, nodes: Sequence[str], root_dir: Path, bootstrap: str, token: str) -> list[NodeCredentials]:
    """Each Node's credentials: the stored ones when still good, else a join with `token` (retried while the
    master is unreachable). JoinRefused when that cannot succeed."""
    args = ["obtain", "--root-dir", str(root_dir), "--bootstrap", bootstrap]
    for node in nodes:
        args += ["--node", node]
    by_node = {str(m["node"]): m for m in await _helper(args, token=token)}
    return [_read(root_dir, by_node[node]) for node in nodes]


async def renew(*, node: str, root_dir: Path, master: str) -> NodeCredentials:
    """A new certificate (and key) for the same identity, asked over mutual TLS with the current one."""
    (meta,) = await _helper(["renew", "--root-dir", str(root_dir), "--master", master, "--node", node])
    return _read(root_dir, meta)
