"""Masters joining the cluster: each master runs an etcd member, and a new one joins through an existing one.

`kyb-master --cluster-init` starts the first master with its embedded etcd as a one-member cluster that listens
on the master's address (`--advertise-address`). `kyb-master --join https://ADDR:6443 --token SERVER_TOKEN`
adds a master (docs/ha.md §7), k3s' way:

1. The new master reads the chain ADDR's bootstrap port serves (API port + 1) without trusting it yet, and
   calls `Bootstrap.JoinMaster` with its member's name and URLs and a proof: an HMAC of those fields and the
   time, keyed by the server token. The token itself never crosses the wire.
2. The existing master checks the proof (constant-time; at most five minutes old), adds the member to etcd as
   a *learner* (no vote: a member that never starts costs the cluster nothing), and answers with every member
   and with the etcd CA sealed with the server token (`master.pki.bundle`). A man in the middle can neither
   read that CA nor forge it: the seal is authenticated encryption under the token.
3. The new master opens the etcd CA, issues its own etcd certificates, starts its member with
   `--initial-cluster-state=existing`, and promotes it to a voting member once it has caught up (etcd refuses
   before). From then on it is a master like the others: it opens the cluster CA from etcd with the same
   token and serves.

A joined master remembers its membership in `<data-dir>/etcd/member.json`; a restart reuses its etcd data and
does not join again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from kybernetes.core.api.errors import AlreadyExistsError, ApiError, InvalidError, UnauthorizedError
from kybernetes.core.api.formats import dns1123_subdomain
from kybernetes.core.identity.credentials import write_private
from kybernetes.core.identity.discovery import DiscoveryError, served_ca
from kybernetes.core.log import get_logger
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.bundle import BundleError, open_sealed, seal
from kybernetes.master.store.etcd import EtcdMember, Store
from kybernetes.proto import identity_pb2, identity_pb2_grpc

log = get_logger("join")

# How far the joiner's clock may be from ours (the proof's timestamp).
MAX_SKEW_SECONDS = 300
MEMBER_FILE = "member.json"


class JoinError(Exception):
    """The master could not join the cluster (the message says what to fix)."""


def proof(*, token: str, name: str, peer_url: str, client_url: str, timestamp: int) -> bytes:
    """HMAC-SHA256 of a join request's fields, keyed by (a hash of) the server token."""
    key = hashlib.sha256(b"kybernetes master join\0" + token.encode()).digest()
    message = "\0".join((name, peer_url, client_url, str(timestamp))).encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def _check_url(value: str, field: str) -> None:
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "https" or not parts.hostname or not port or parts.path not in ("", "/"):
        raise InvalidError(f'{field}: Invalid value: "{value}": must be https://HOST:PORT')


class MasterJoinService:
    """The answering side of `Bootstrap.JoinMaster` (served on the bootstrap port)."""

    def __init__(self, *, store: Store, token: str, etcd_ca: tuple[Path, Path] | None) -> None:
        self.store = store
        self.token = token
        # The etcd CA's certificate and key files; None when this master's etcd cannot take members (an
        # external etcd, or an embedded one started without --cluster-init).
        self.etcd_ca = etcd_ca

    async def join(self, request: identity_pb2.MasterJoinRequest) -> identity_pb2.MasterJoinResponse:
        expected = proof(token=self.token, name=request.name, peer_url=request.peer_url,
                         client_url=request.client_url, timestamp=request.timestamp)
        if not hmac.compare_digest(expected, request.proof):
            log.warning("master join refused: bad proof", member=request.name)
            raise UnauthorizedError("Unauthorized: the join proof does not match this cluster's server token")
        if abs(time.time() - request.timestamp) > MAX_SKEW_SECONDS:
            raise UnauthorizedError(f"Unauthorized: timestamp: more than {MAX_SKEW_SECONDS}s from this master's "
                                    "clock (check both clocks)")
        problems = dns1123_subdomain(request.name)
        if problems:
            raise InvalidError(f'name: Invalid value: "{request.name}": {problems[0]}')
        _check_url(request.peer_url, "peer_url")
        _check_url(request.client_url, "client_url")
        if self.etcd_ca is None:
            raise ApiError("this master's etcd takes no new members: join a master started with --cluster-init "
                           "(or give every master the same external --etcd)",
                           code=grpc.StatusCode.FAILED_PRECONDITION)
        members = await self.store.members()
        same = [m for m in members if request.peer_url in m.peer_urls]
        if same and (same[0].name not in ("", request.name) or not same[0].learner and same[0].name):
            raise AlreadyExistsError(f'peer_url: etcd member "{same[0].name}" already has {request.peer_url}; '
                                     "a master that lost its data must be removed from etcd before it joins again")
        if same:  # a retry of a join whose member has not started or caught up yet
            member_id = same[0].id
        else:
            member_id, members = await self.store.add_member(request.peer_url, learner=True)
            log.info("etcd member added", member=request.name, peer_url=request.peer_url, id=f"{member_id:x}")
        cert, key = self.etcd_ca
        authority = ClusterAuthority.load(certificate_pem_bytes=cert.read_bytes(), key_pem_bytes=key.read_bytes())
        response = identity_pb2.MasterJoinResponse(sealed_etcd_ca=seal(authority, server_token=self.token),
                                                   member_id=member_id)
        for m in members:
            name = request.name if m.id == member_id else m.name
            response.members.add(name=name, peer_urls=m.peer_urls, client_urls=m.client_urls, learner=m.learner)
        return response


# ----------------------------------------------------------------------------- the joining side


@dataclass(frozen=True)
class Membership:
    """What a master that joined remembers: its member's name and id, and the cluster's initial members."""

    name: str
    member_id: int
    initial_cluster: str
    client_urls: tuple[str, ...]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / MEMBER_FILE).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Membership | None:
        try:
            doc = json.loads((folder / MEMBER_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(name=doc["name"], member_id=int(doc["member_id"]), initial_cluster=doc["initial_cluster"],
                   client_urls=tuple(doc.get("client_urls", ())))


def bootstrap_address(join_url: str) -> tuple[str, str]:
    """(API address, bootstrap address) of `--join https://HOST:PORT` (the bootstrap port is the next one)."""
    text = join_url if "://" in join_url else f"https://{join_url}"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "https" or not parts.hostname or not port:
        raise JoinError(f'--join: "{join_url}": must be https://HOST:PORT of a master\'s API')
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", f"{host}:{port + 1}"


async def request_join(*, join_url: str, token: str, name: str, peer_url: str, client_url: str,
                       timeout: float = 120.0) -> tuple[identity_pb2.MasterJoinResponse, ClusterAuthority]:
    """Ask an existing master to add our etcd member; its answer and the etcd CA it sealed for us."""
    _, bootstrap = bootstrap_address(join_url)
    try:
        served = await served_ca(bootstrap, timeout=timeout)
    except DiscoveryError as err:
        raise JoinError(str(err)) from None
    credentials = grpc.ssl_channel_credentials(root_certificates=served)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.secure_channel(bootstrap, credentials,
                                       options=[("grpc.ssl_target_name_override", "kybernetes")]) as channel:
        stub = identity_pb2_grpc.BootstrapStub(channel)
        while True:
            timestamp = int(time.time())
            request = identity_pb2.MasterJoinRequest(
                name=name, peer_url=peer_url, client_url=client_url, timestamp=timestamp,
                proof=proof(token=token, name=name, peer_url=peer_url, client_url=client_url, timestamp=timestamp))
            try:
                response: identity_pb2.MasterJoinResponse = await stub.JoinMaster(request, timeout=timeout)
                break
            except grpc.RpcError as err:
                # etcd adds no member while another one joined less than a few seconds ago ("unhealthy
                # cluster"), or while it has no leader: wait for it.
                if err.code() == grpc.StatusCode.UNAVAILABLE and loop.time() < deadline:
                    log.info("join: the cluster is not ready for a new member yet", reason=err.details())
                    await asyncio.sleep(1.0)
                    continue
                raise JoinError(f"the master at {bootstrap} refused the join: {err.code().name}: "
                                f"{err.details()}") from None
    try:
        etcd_ca = open_sealed(response.sealed_etcd_ca, server_token=token)
    except BundleError as err:
        raise JoinError(f"the etcd CA from {bootstrap}: {err}") from None
    return response, etcd_ca


def write_ca(folder: Path, authority: ClusterAuthority) -> None:
    """Store the etcd CA where this master's member makes its certificates from (master.store.etcdtls)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(folder / "ca.key", authority.key_pem)
    write_private(folder / "ca.crt", authority.certificate_pem, mode=0o644)


def initial_cluster(members: Sequence[identity_pb2.EtcdMember]) -> str:
    """etcd's --initial-cluster for a member joining these members."""
    return ",".join(f"{m.name}={url}" for m in members for url in m.peer_urls if m.name)


async def promote(store: Store, member_id: int, *, timeout: float = 60.0) -> None:
    """Promote our learner to a voting member as soon as etcd allows it (once it has caught up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        members = await _members_or_none(store)
        if members is not None and any(m.id == member_id and not m.learner for m in members):
            return
        try:
            await store.promote_member(member_id)
            log.info("etcd member promoted", id=f"{member_id:x}")
            return
        except ApiError as err:
            if loop.time() > deadline:
                raise JoinError(f"etcd member {member_id:x} was not promoted within {timeout:.0f}s: "
                                f"{err.message}") from None
        await asyncio.sleep(0.2)


async def _members_or_none(store: Store) -> list[EtcdMember] | None:
    try:
        return await store.members()
    except ApiError:
        return None
