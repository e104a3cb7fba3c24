"""Masters with their own etcd members: `--cluster-init`, then `--join ADDR --token T` (master.join.masters).

Three real kyb-master processes on loopback, each with its embedded etcd on ports of its own: they form one
three-member etcd, share one cluster CA, survive the loss of one master, refuse calls at once (UNAVAILABLE,
naming the lost quorum) when two are gone, and recover when they come back, without a restart of the survivor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.builders import make_deployment
from harness.master import REPO, SERVER_TOKEN, MasterProcess
from harness.ports import free_ports
from harness.waiting import until
from kybernetes.core.api.errors import UnavailableError
from kybernetes.ctl.client import Client
from kybernetes.master.join.masters import Membership, initial_cluster, request_join, write_ca
from kybernetes.master.store.etcd import EtcdMember, Store
from kybernetes.master.store.etcdtls import EtcdClientTLS


def _master(tmp_path: Path, name: str, *, join: MasterProcess | None = None, token: str = SERVER_TOKEN,
            controllers: str = "*") -> MasterProcess:
    client_port, peer_port = free_ports(2)
    how = ["--join", f"https://{join.address}"] if join is not None else ["--cluster-init"]
    return MasterProcess(etcd=[], log_path=tmp_path / f"{name}.log", token=token, bootstrap_beside=True,
                         extra_args=[*how, "--etcd-client-port", str(client_port), "--etcd-peer-port",
                                     str(peer_port), "--etcd-name", name, "--controllers", controllers])


def _etcd(master: MasterProcess) -> Store:
    """A client of the cluster's etcd through this master's member (its client certificate)."""
    pki = master.data_dir / "etcd" / "pki"
    port = master.extra_args[master.extra_args.index("--etcd-client-port") + 1]
    return Store(endpoints=[f"https://127.0.0.1:{port}"],
                 tls=EtcdClientTLS(ca=pki / "ca.crt", cert=pki / "client.crt", key=pki / "client.key"))


@contextlib.asynccontextmanager
async def _store(master: MasterProcess) -> AsyncIterator[Store]:
    store = _etcd(master)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def _voters(store: Store) -> list[EtcdMember]:
    return [m for m in await store.members() if not m.learner and m.name]


async def _writes(client: Client, name: str) -> bool:
    try:
        await client.create(make_deployment(name, replicas=0))
        return True
    except UnavailableError:
        return False


@contextlib.asynccontextmanager
async def _three(tmp_path: Path) -> AsyncIterator[list[MasterProcess]]:
    first = _master(tmp_path, "m1")
    second = _master(tmp_path, "m2", join=first)
    third = _master(tmp_path, "m3", join=second)  # any member's master can take the next one
    masters = [first, second, third]
    try:
        for master in masters:
            await master.start(timeout=60)
        yield masters
    finally:
        await asyncio.gather(*(m.stop() for m in masters))


async def test_three_masters_form_one_etcd_and_one_cluster(tmp_path: Path):
    async with _three(tmp_path) as (first, second, third):
        async with _store(third) as store:
            voters = await _voters(store)
        assert sorted(m.name for m in voters) == ["m1", "m2", "m3"]
        # One cluster: what one master writes, another reads, with credentials the first one wrote.
        async with first.client() as a:
            await a.create(make_deployment("shared", replicas=0))
        async with Client(third.address, credentials=first.credentials()) as c:
            assert (await c.get("deployments", "shared")).metadata.name == "shared"
        # Every joined master keeps its membership; none made a CA of its own.
        assert (second.data_dir / "etcd" / "member.json").exists()
        assert first.credentials().ca == third.credentials().ca


async def test_the_cluster_survives_one_master_and_refuses_at_once_without_quorum(tmp_path: Path):
    async with _three(tmp_path) as (first, second, third):
        async with second.client(timeout=10) as b:
            await first.kill()  # its etcd member dies with it
            await until(lambda: _writes(b, "after-one"), timeout=30, message="writes through m2 with m1 gone")
            await third.kill()
            # Two of three members gone: the survivor's member sees no leader, and every call says so.
            with pytest.raises(UnavailableError) as refused:
                await until(lambda: _refused_for_quorum(b), timeout=30, message="refused for the lost quorum")
                await b.create(make_deployment("without-quorum", replicas=0))
            assert "lost its quorum" in refused.value.message
            # The two come back (same data dirs and flags: a restart, not a new join); m2 was never restarted.
            await asyncio.gather(first.start(timeout=60), third.start(timeout=60))
            await until(lambda: _writes(b, "recovered"), timeout=30, message="writes through m2 again")
            assert (await b.get("deployments", "after-one")).metadata.name == "after-one"
            assert second.proc is not None and second.proc.returncode is None


async def _refused_for_quorum(client: Client) -> bool:
    try:
        await client.get("deployments", "anything-at-all")
    except UnavailableError as err:
        return "lost its quorum" in err.message
    except Exception:  # noqa: BLE001 - not found: the quorum is still there
        return False
    return False


async def test_a_wrong_token_joins_nothing(tmp_path: Path):
    first = _master(tmp_path, "m1")
    intruder = _master(tmp_path, "intruder", join=first, token="not-the-server-token")
    async with first:
        with pytest.raises(RuntimeError) as failed:
            await intruder.start(timeout=60)
        assert "exited" in str(failed.value)
        assert "UNAUTHENTICATED" in intruder.tail()
        assert "does not match this cluster's server token" in intruder.tail()
        async with _store(first) as store:
            assert [m.name for m in await store.members()] == ["m1"]
        assert not (intruder.data_dir / "etcd" / "member.json").exists()


async def test_a_master_without_cluster_init_takes_no_members(tmp_path: Path):
    client_port, peer_port = free_ports(2)
    alone = MasterProcess(etcd=[], log_path=tmp_path / "alone.log", bootstrap_beside=True,
                          extra_args=["--etcd-client-port", str(client_port), "--etcd-peer-port", str(peer_port)])
    joiner = _master(tmp_path, "joiner", join=alone)
    async with alone:
        with pytest.raises(RuntimeError):
            await joiner.start(timeout=60)
        assert "FAILED_PRECONDITION" in joiner.tail()
        assert "join a master started with --cluster-init" in joiner.tail()


@pytest.mark.parametrize(("args", "message"), [
    (["--join", "https://127.0.0.1:6443"], "server token is required"),
    (["--join", "127.0.0.1", "--token", "t"], "must be https://HOST:PORT"),
    (["--cluster-init", "--join", "https://127.0.0.1:6443", "--token", "t"], "give one of them"),
    (["--cluster-init", "--etcd", "https://127.0.0.1:2379"], "for the embedded etcd"),
])
async def test_join_flags_are_checked(tmp_path: Path, args: list[str], message: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kybernetes.master.main", "--data-dir", str(tmp_path / "d"), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO, env={k: v for k, v in os.environ.items() if k != "KYB_SERVER_TOKEN"})
    _, err = await proc.communicate()
    assert proc.returncode == 2, err
    assert message in err.decode()
    assert "Traceback" not in err.decode()



async def test_a_master_that_died_before_its_promotion_promotes_at_restart(tmp_path: Path):
    first = _master(tmp_path, "m1")
    second = _master(tmp_path, "m2", join=first)
    async with first:
        # What `--join` does before it starts its member, then a crash: the learner is added, the etcd CA and
        # the membership are on disk, nothing was promoted.
        client_port = second.extra_args[second.extra_args.index("--etcd-client-port") + 1]
        peer_port = second.extra_args[second.extra_args.index("--etcd-peer-port") + 1]
        response, etcd_ca = await request_join(
            join_url=f"https://{first.address}", token=SERVER_TOKEN, name="m2",
            peer_url=f"https://127.0.0.1:{peer_port}", client_url=f"https://127.0.0.1:{client_port}")
        folder = second.data_dir / "etcd"
        write_ca(folder / "pki", etcd_ca)
        others = tuple(u for m in response.members if m.name != "m2" for u in m.client_urls)
        Membership(name="m2", member_id=response.member_id, initial_cluster=initial_cluster(response.members),
                   client_urls=others).save(folder)
        async with _store(first) as store:
            assert [m.learner for m in await store.members() if m.id == response.member_id] == [True]
        # The restart (same flags and data dir) promotes it and serves.
        async with second:
            async with _store(first) as store:
                voters = await until(lambda: _voters_named(store, {"m1", "m2"}), timeout=30,
                                     message="m2 a voting member")
            assert len(voters) == 2
            assert b'"etcd member promoted"' in second.log_path.read_bytes()


async def _voters_named(store: Store, names: set[str]) -> list[EtcdMember] | None:
    voters = await _voters(store)
    return voters if {m.name for m in voters} == names else None
