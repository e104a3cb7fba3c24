"""Identity on every link, against a real kyb-master, etcd and kubelet processes (docs/identity.md).

- The API port's handshake refuses a caller without a certificate, with one from another CA, and with an
  expired one; plaintext gets nothing. The bootstrap port serves Join only.
- A node identity acts only as itself: registering as another Node is PERMISSION_DENIED and leaves that
  Node's stream alone; a report about another Node's pod is refused and changes nothing; the pods a node
  receives are its own.
- Join tokens: a kubelet refuses a master whose CA does not match its token; an expired or deleted token is
  refused; a valid one joins and the Node goes Ready; a restart needs no token.
- The CA lives in etcd: a restarted master serves the same CA, and a master given another server token
  refuses to start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.builders import make_pod
from harness.kubelet import KubeletProcess
from harness.master import REPO, SERVER_TOKEN, JoinInfo, MasterProcess
from harness.nodelink import ScriptedNode
from harness.waiting import until
from kybernetes.core.identity.certs import MASTERS_GROUP, Identity, ca_hash, load_certificate
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.identity.tokens import parse
from kybernetes.ctl.client import Client
from kybernetes.ctl.client.identity import create_token, delete_token, list_tokens
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.bundle import open_sealed
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.master.store.etcd import RawKeys, Store
from kybernetes.proto import api_pb2, api_pb2_grpc, identity_pb2, identity_pb2_grpc, node_pb2
from kybernetes.proto import objects_pb2 as pb


async def _health(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """OK when a health check gets through, else the code the call failed with."""
    channel = (grpc.aio.secure_channel(address, credentials) if credentials is not None
               else grpc.aio.insecure_channel(address))
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def _cluster_authority(etcd: EtcdProcess) -> ClusterAuthority:
    """The cluster CA as the masters keep it: sealed in etcd with the (harness's) server token."""
    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        sealed = await RawKeys(store, "pki").get("ca")
    finally:
        await store.close()
    assert sealed is not None and sealed.startswith(b"KYBCA1"), "the CA is in etcd, sealed"
    return open_sealed(sealed, server_token=SERVER_TOKEN)


async def test_the_api_port_handshake_needs_a_current_certificate_of_the_cluster_ca(master: MasterProcess,
                                                                                     etcd: EtcdProcess):
    admin = master.credentials()
    authority = await _cluster_authority(etcd)
    assert authority.hash == ca_hash(load_certificate(admin.ca))
    ca = admin.ca

    def creds(cert: bytes | None = None, key: bytes | None = None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    assert await _health(master.address, admin.channel_credentials()) == grpc.StatusCode.OK
    # No client certificate, plaintext, another CA's certificate, an expired one of our own CA: no handshake.
    assert await _health(master.address, creds()) == grpc.StatusCode.UNAVAILABLE
    assert await _health(master.address, None) == grpc.StatusCode.UNAVAILABLE
    stranger = ClusterAuthority.create().issue_client(Identity("admin", (MASTERS_GROUP,)))
    assert await _health(master.address, creds(stranger.certificate, stranger.key)) == grpc.StatusCode.UNAVAILABLE
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    expired = authority.issue_client(Identity("admin", (MASTERS_GROUP,)), now=long_ago,
                                     validity=dt.timedelta(days=30))
    assert await _health(master.address, creds(expired.certificate, expired.key)) == grpc.StatusCode.UNAVAILABLE
    # The same identity with a current certificate gets through: it was the expiry that failed.
    current = authority.issue_client(Identity("admin", (MASTERS_GROUP,)))
    assert await _health(master.address, creds(current.certificate, current.key)) == grpc.StatusCode.OK


async def test_the_bootstrap_port_serves_join_only_and_checks_the_token(master: MasterProcess):
    ca = master.credentials().ca
    async with grpc.aio.secure_channel(master.bootstrap_address, grpc.ssl_channel_credentials(ca)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await api_pb2_grpc.ObjectAPIStub(channel).List(api_pb2.ListRequest(resource="pods"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        join = identity_pb2_grpc.BootstrapStub(channel).Join
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await join(identity_pb2.JoinRequest(token="K10abc::x.y", node_name="n"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "must start with KYB1" in (raised.value.details() or "")
        # Well formed, this cluster's CA hash, but no such token.
        real = parse((await master.join()).token)
        forged = f"KYB1{real.ca_hash.removeprefix('sha256:')}::abcdef.0123456789abcdef"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await join(identity_pb2.JoinRequest(token=forged, node_name="n"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert 'token "abcdef": not found' in (raised.value.details() or "")


def _pod_on(name: str, node: str) -> pb.Pod:
    pod = make_pod(name)
    pod.spec.node_name = node
    return pod


async def test_a_node_acts_only_as_itself(master: MasterProcess, client: Client):
    node2 = ScriptedNode(master, "node2")
    node1 = ScriptedNode(master, "node1")
    impostor = ScriptedNode(master, "node2", identity="node1")
    admin_as_node = ScriptedNode(master, "node3", credentials=master.credentials())
    try:
        await node2.connect()
        await node1.connect()
        assert list((await node1.expect("pod_sync")).pod_sync.pods) == []
        # node1's certificate cannot register as node2; node2's stream carries on as before.
        refused = await impostor.refused()
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.details() == 'node "node1" cannot register as node "node2"'
        denied = await admin_as_node.refused()
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not a node identity" in (denied.details() or "")
        p2 = await client.create(_pod_on("p2", "node2"))
        p1 = await client.create(_pod_on("p1", "node1"))
        got = await node2.expect("pod_upsert", where=lambda m: m.pod_upsert.pod.metadata.name == "p2")
        assert got.pod_upsert.pod.metadata.uid == p2.metadata.uid
        # node1 gets its own pod, never node2's (a reconnect's full sync says the same).
        await node1.expect("pod_upsert", where=lambda m: m.pod_upsert.pod.metadata.name == "p1")
        await node1.close()
        node1 = ScriptedNode(master, "node1")
        await node1.connect()
        assert [p.metadata.name for p in (await node1.expect("pod_sync")).pod_sync.pods] == ["p1"]
        # node1 reports a Ready status with a made-up IP for node2's pod: refused, logged, nothing written.
        forged = pb.PodStatus(phase="Running", pod_ip="10.9.9.9")
        forged.conditions.add(type="Ready", status="True")
        node1.send(pod_status=node_pb2.PodStatusReport(namespace="default", name="p2", uid=p2.metadata.uid,
                                                       status=forged))
        node1.send(pod_terminated=node_pb2.PodTerminated(namespace="default", name="p2", uid=p2.metadata.uid))
        await until(lambda: b'"pod status report refused"' in master.log_path.read_bytes(), timeout=10,
                    message="the master logs the refused report")
        line = next(x for x in master.log_path.read_bytes().splitlines() if b'"pod status report refused"' in x)
        assert b'"node": "node1"' in line and b"p2" in line
        after = await client.get("pods", "p2")
        assert after.status == p2.status and after.metadata.resource_version == p2.metadata.resource_version
        # Its own pod's report is written.
        own = pb.PodStatus(phase="Running", pod_ip="10.244.1.5")
        node1.send(pod_status=node_pb2.PodStatusReport(namespace="default", name="p1", uid=p1.metadata.uid,
                                                       status=own))
        await until(lambda: _phase(client, "p1", "Running"), timeout=10)
        still = await client.get("pods", "p2")
        assert (still.status.phase, still.status.pod_ip) == ("Pending", "")
        # node2 was never disconnected: it is still the one the master routes node2's pods to.
        p3 = await client.create(_pod_on("p3", "node2"))
        got = await node2.expect("pod_upsert", where=lambda m: m.pod_upsert.pod.metadata.name == "p3")
        assert got.pod_upsert.pod.metadata.uid == p3.metadata.uid
        assert b"Traceback" not in master.log_path.read_bytes()
    finally:
        for node in (node1, node2, impostor, admin_as_node):
            await node.close()


async def _phase(client: Client, name: str, phase: str) -> bool:
    return (await client.get("pods", name)).status.phase == phase


async def _kubelet_refuses(join: JoinInfo, token: str, root: Path, name: str) -> str:
    """Run a kubelet with `token` that must exit 1 at once; its one-line error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kybernetes.kubelet.main", "--master", join.address, "--bootstrap-master",
        join.bootstrap, "--node-name", name, "--runtime", "hollow", "--root-dir", str(root), cwd=REPO,
        env={**os.environ, "KYB_JOIN_TOKEN": token}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, (out, err)
    lines = [line for line in err.decode().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err.decode(), err.decode()
    assert not (root / "pki" / name / "kubelet.crt").exists()
    return lines[0]


async def test_join_tokens_admit_a_kubelet_and_refusals_say_why(master: MasterProcess, client: Client,
                                                               kubelets: Callable[..., KubeletProcess],
                                                               tmp_path: Path):
    join = await master.join()
    token = parse(join.token)
    # Another cluster's CA hash: the kubelet checks the master's CA before sending anything.
    wrong = f"KYB1{'0' * 64}::{token.token_id}.{token.secret}"
    line = await _kubelet_refuses(join, wrong, tmp_path / "k-wrong", "wrong")
    assert "does not match the token's" in line and "refusing to connect" in line
    assert b'"join refused"' not in master.log_path.read_bytes(), "nothing reached the master"
    # A deleted token.
    doomed = await create_token(client, description="deleted before use")
    await delete_token(client, doomed.id)
    line = await _kubelet_refuses(join, doomed.token, tmp_path / "k-deleted", "deleted")
    assert f'token "{doomed.id}": not found' in line
    # An expired token.
    short = await create_token(client, ttl_seconds=1, description="expires at once")
    await until(lambda: time.time() >= short.expires + 0.1, timeout=10, interval=0.1)
    line = await _kubelet_refuses(join, short.token, tmp_path / "k-expired", "expired")
    assert f'token "{short.id}": expired' in line
    listed = {t.id: t for t in await list_tokens(client)}
    assert doomed.id not in listed and short.id in listed and not any(t.token for t in listed.values())
    # A valid one joins; the Node goes Ready; its certificate says who it is.
    kubelet = kubelets(master=join, node_name="joiner", runtime="hollow")
    await kubelet.start()

    async def ready() -> bool:
        node = await client.get("nodes", "joiner")
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    await until(ready, timeout=30)
    stored = Credentials.read(kubelet.root_dir / "pki" / "joiner", name="kubelet")
    assert stored.identity == Identity("system:node:joiner", ("system:nodes",))
    assert (kubelet.root_dir / "pki" / "joiner" / "kubelet.key").stat().st_mode & 0o777 == 0o600
    # A restart needs no token: it connects with its stored certificate.
    await kubelet.stop()
    restarted = kubelets(master=JoinInfo(address=join.address, bootstrap=join.bootstrap, token=""),
                         node_name="joiner", runtime="hollow", root_dir=kubelet.root_dir)
    await restarted.start()
    assert await _node_identity_works(master, stored)


async def _node_identity_works(master: MasterProcess, credentials: Credentials) -> bool:
    """A node may read Nodes through the object API, and nothing else."""
    async with Client(master.address, credentials=credentials) as as_node:
        assert [n.metadata.name for n in (await as_node.list("nodes")).items] == ["joiner"]
        with pytest.raises(Exception) as raised:
            await as_node.list("pods")
        assert getattr(raised.value, "reason", "") == "Forbidden"
    return True


async def test_the_ca_outlives_the_master_and_another_server_token_is_refused(etcd: EtcdProcess, tmp_path: Path):
    master = MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log",
                           extra_args=["--controllers="])
    async with master:
        first = master.credentials()
        async with master.client() as client:
            await client.create(make_pod("kept"))
    async with master:
        # The same CA (from etcd); credentials issued before the restart still work.
        assert ca_hash(load_certificate(master.credentials().ca)) == ca_hash(load_certificate(first.ca))
        async with Client(master.address, credentials=first) as client:
            assert (await client.get("pods", "kept")).metadata.name == "kept"
    other = MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "other.log",
                          token="another-cluster",
                          extra_args=["--controllers="])
    with pytest.raises(RuntimeError, match="exited with 1"):
        await other.start(timeout=30)
    assert "cannot be opened with this server token" in other.tail()


async def test_a_kubelet_without_credentials_or_token_says_what_to_do(master: MasterProcess, tmp_path: Path):
    join = await master.join()
    line = await _kubelet_refuses(join, "", tmp_path / "k-none", "none")
    assert "no join token" in line and "kybctl token create" in line


async def test_secure_channel_of_a_user_without_bindings_is_forbidden(master: MasterProcess, client: Client):
    from kybernetes.ctl.client.identity import issue_certificate, whoami

    alice = await issue_certificate(client, Identity("alice", ("dev",)))
    async with Client(master.address, credentials=alice) as as_alice:
        assert await whoami(as_alice) == Identity("alice", ("dev",))
        with pytest.raises(Exception) as raised:
            await as_alice.list("pods", namespace="default")
        assert getattr(raised.value, "reason", "") == "Forbidden"
        assert str(getattr(raised.value, "message", "")) == (
            'pods is forbidden: User "alice" cannot list resource "pods" in the namespace "default"')
    channel = secure_channel(master.address, alice)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await identity_pb2_grpc.TokensStub(channel).List(identity_pb2.ListTokensRequest(), timeout=5)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_kubelet_renews_its_certificate_before_it_expires(etcd: EtcdProcess, tmp_path: Path,
                                                                  kubelets: Callable[..., KubeletProcess]):
    # Short-lived certificates (20 s) so that renewal (after two thirds) happens within the test.
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log",
                             extra_args=["--controllers=", "--certificate-validity", "20s"]) as master:
        kubelet = kubelets(master=await master.join(), node_name="renewer", runtime="hollow")
        await kubelet.start()
        folder = kubelet.root_dir / "pki" / "renewer"
        first = Credentials.read(folder, name="kubelet")
        lifetime = first.not_after - first.not_before
        assert dt.timedelta(seconds=20) <= lifetime <= dt.timedelta(seconds=23)

        def renewed() -> Credentials | None:
            current = Credentials.read(folder, name="kubelet")
            return current if current.certificate != first.certificate else None

        second = await until(renewed, timeout=60, interval=0.2, message="a renewed certificate stored")
        assert second.identity == first.identity and second.key != first.key, "a new key, the same identity"
        assert second.not_after > first.not_after
        # It reconnects with the new certificate, and stays connected after the old one expired.
        await kubelet.wait_registered(2, timeout=30)
        await until(lambda: dt.datetime.now(dt.UTC) > first.not_after + dt.timedelta(seconds=1), timeout=30,
                    interval=0.2)
        async with master.client() as client:
            node = await client.get("nodes", "renewer")
            assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        assert b'"certificate renewed"' in master.log_path.read_bytes()
        assert kubelet.alive
