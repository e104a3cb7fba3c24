"""The namespace lab with three masters (`lab.sh up --masters 3`, docs/lab-ha.md) and its master faults.

One lab per module (the module-scoped `ha_lab` fixture: 3 masters, 3 workers). Each master machine runs an
etcd member of one 3-member cluster and a kyb-master using every member; exactly one master runs the control
loops (docs/ha.md). The tests kill the leading kyb-master and stop an etcd member, and check that the
cluster keeps working through a client of all three masters. Every wait has a deadline (harness.waiting).

The provisioning tests (first: they need no lab) check the VM path (provision.sh configure --etcd-peers, the
command lines that `provision.sh run` starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from cryptography import x509

from harness.builders import make_deployment
from harness.lab import (
    REPO,
    Lab,
    count_is,
    deployment,
    hello_manifest,
    is_ready,
    live_pods,
    none_left,
    ready_pods,
    run,
)
from harness.waiting import until
from kybernetes.core.identity.kubeconfig import resolve
from kybernetes.ctl.client import AlreadyExistsError, Client, NotFoundError, UnavailableError
from kybernetes.master.leader.election import LEASE_NAME, LEASE_NAMESPACE
from kybernetes.proto import objects_pb2 as pb

MASTERS = 3


async def nodes_ready(kyb: Client, count: int) -> dict[str, str]:
    """Node name -> its Ready condition's last transition time, when all `count` Nodes are Ready; else {}."""
    nodes = (await kyb.list("nodes")).items
    if len(nodes) != count or not all(is_ready(n) for n in nodes):
        return {}
    return {n.metadata.name: next(c.last_transition_time.ToJsonString() for c in n.status.conditions
                                  if c.type == "Ready") for n in nodes}


async def holder(kyb: Client) -> str:
    return (await kyb.get("leases", LEASE_NAME, namespace=LEASE_NAMESPACE)).spec.holder_identity


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


async def create_once(kyb: Client, name: str) -> bool:
    """Create a Deployment of no replicas (a plain write); True also when an earlier try got through."""
    try:
        await kyb.create(make_deployment(name, replicas=0))
    except AlreadyExistsError:
        pass
    return True


# ----------------------------------------------------------------------------- provisioning (the VM path)

PROVISION_SH = REPO / "deploy" / "provision" / "provision.sh"
PEERS = "master=192.168.56.10,master2=192.168.56.9,master3=192.168.56.8"
SERVERS = "192.168.56.10:6443,192.168.56.9:6443,192.168.56.8:6443"


def fake_venv(tmp_path: Path) -> Path:
    """A virtualenv whose python prints its arguments (the etcd PKI step runs the real one), and an etcd that
    prints its own: what `provision.sh run` would start, without starting it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(
        f'#!/bin/bash\n[[ "$*" != *etcdtls* ]] || exec {sys.executable} "$@"\necho "$*"\n')
    (tmp_path / "etcd").write_text('#!/bin/bash\necho "$*"\n')
    for path in (venv / "bin" / "python", tmp_path / "etcd"):
        path.chmod(0o755)
    return venv


def test_provision_several_masters_command_lines(tmp_path: Path):
    venv = fake_venv(tmp_path)
    env_file = tmp_path / "master2" / "kybernetes.env"
    run(str(PROVISION_SH), "configure", "--role", "master", "--name", "master2", "--ip", "192.168.56.9",
        "--master", SERVERS, "--etcd-peers", PEERS, "--server-token-file", "/etc/kybernetes/server-token",
        "--run-registry", "no", "--registry", "192.168.56.10:5000", "--etc", str(tmp_path / "master2"),
        "--state", str(tmp_path / "state"), "--run", str(tmp_path / "run"), "--venv", str(venv))
    text = env_file.read_text()
    assert f'KYB_MASTER="{SERVERS}"' in text and 'KYB_MASTER_LISTEN="192.168.56.9:6443"' in text
    assert not (tmp_path / "master2" / "registry.yml").exists()
    units = tmp_path / "units"
    run(str(PROVISION_SH), "units", "--env", str(env_file), "--dir", str(units))
    assert sorted(p.name for p in units.iterdir()) == ["kyb-etcd.service", "kyb-master.service"]

    environ = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def argv(component: str) -> list[str]:
        result = subprocess.run([str(PROVISION_SH), "run", component, "--env", str(env_file)], env=environ,
                                capture_output=True, text=True, timeout=60, check=True)
        return result.stdout.split()

    def flag(words: list[str], name: str) -> str:
        return words[words.index(name) + 1]

    etcd = argv("etcd")
    assert flag(etcd, "--name") == "master2"
    assert flag(etcd, "--listen-client-urls") == "https://192.168.56.9:2379,https://127.0.0.1:2379"
    assert flag(etcd, "--advertise-client-urls") == "https://192.168.56.9:2379"
    assert flag(etcd, "--listen-peer-urls") == flag(etcd, "--initial-advertise-peer-urls") == "https://192.168.56.9:2380"
    assert flag(etcd, "--initial-cluster") == ("master=https://192.168.56.10:2380,master2=https://192.168.56.9:2380,"
                                               "master3=https://192.168.56.8:2380")
    # Its certificate names every member (a master checks every member against its first endpoint's name).
    cert = x509.load_pem_x509_certificate((tmp_path / "state" / "etcd-pki" / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "192.168.56.10", "192.168.56.9", "192.168.56.8", "127.0.0.1"}

    master = argv("master")
    assert flag(master, "--listen") == "192.168.56.9:6443"
    assert flag(master, "--etcd") == "https://192.168.56.9:2379,https://192.168.56.10:2379,https://192.168.56.8:2379"
    assert flag(master, "--token-file") == "/etc/kybernetes/server-token"
    assert [master[i + 1] for i, word in enumerate(master) if word == "--tls-san"] == ["192.168.56.9"]


def test_provision_one_master_is_unchanged(tmp_path: Path):
    venv = fake_venv(tmp_path)
    env_file = tmp_path / "master" / "kybernetes.env"
    run(str(PROVISION_SH), "configure", "--role", "master", "--name", "master", "--ip", "192.168.56.10",
        "--etc", str(tmp_path / "master"), "--state", str(tmp_path / "state"), "--venv", str(venv))
    environ = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    words = {c: subprocess.run([str(PROVISION_SH), "run", c, "--env", str(env_file)], env=environ, text=True,
                               capture_output=True, timeout=60, check=True).stdout.split() for c in ("etcd", "master")}
    assert " ".join(words["etcd"]).startswith(
        f"--name master --data-dir {tmp_path}/state/etcd --listen-client-urls https://127.0.0.1:2379 "
        "--advertise-client-urls https://127.0.0.1:2379 --listen-peer-urls https://127.0.0.1:2380 "
        "--initial-advertise-peer-urls https://127.0.0.1:2380 --initial-cluster master=https://127.0.0.1:2380 ")
    master = " ".join(words["master"])
    assert "--etcd https://127.0.0.1:2379 " in master and "--token-file" not in master
    assert master.endswith("--tls-san 192.168.56.10 --tls-san 192.168.56.10")


def test_provision_rejects_bad_etcd_peers(tmp_path: Path):
    def configure(*args: str) -> str:
        result = run(str(PROVISION_SH), "configure", "--role", "master", "--etc", str(tmp_path), *args, check=False)
        assert result.returncode == 1
        return result.stderr

    assert "no member named 'master4'" in configure("--name", "master4", "--etcd-peers", PEERS)
    assert "'m=1.2.3' is not NAME=IPv4" in configure("--name", "m", "--etcd-peers", "m=1.2.3")
    assert "repeats a name or address" in configure("--name", "m", "--etcd-peers", "m=10.0.0.1,n=10.0.0.1")
    assert "--etcd-peers needs --etcd separate" in configure("--name", "m", "--etcd", "embedded",
                                                             "--etcd-peers", "m=10.0.0.1")
    assert "--run-registry must be yes or no" in configure("--run-registry", "maybe")


# ----------------------------------------------------------------------------- the lab with three masters

async def test_three_masters_serve_and_exactly_one_leads(ha_lab: Lab):
    lab = ha_lab
    # Master 1 keeps the one-master lab's names; master N is <prefix>-masterN at SUBNET.(11-N).
    assert [lab.master_netns(n) for n in (1, 2, 3)] == [f"{lab.prefix}-master", f"{lab.prefix}-master2",
                                                        f"{lab.prefix}-master3"]
    assert lab.servers == [f"{lab.subnet}.10:6443", f"{lab.subnet}.9:6443", f"{lab.subnet}.8:6443"]
    endpoints = [f"https://{lab.master_ip(n)}:2379" for n in (1, 2, 3)]
    for n in (1, 2, 3):
        addresses = run("ip", "-n", lab.master_netns(n), "-4", "-o", "addr", "show", "dev", "eth0").stdout
        assert f" {lab.master_ip(n)}/24 " in addresses
        # Its own etcd member and kyb-master run in its netns; kyb-master uses every member, its own first.
        etcd, master = lab.master_pid(n, "etcd"), lab.master_pid(n)
        assert etcd is not None and master is not None
        for pid in (etcd, master):
            assert run("ip", "netns", "identify", str(pid)).stdout.strip() == lab.master_netns(n)
        argv = cmdline(master)
        etcd_flag = argv[argv.index("--etcd") + 1].split(",")
        assert etcd_flag[0] == endpoints[n - 1] and sorted(etcd_flag) == sorted(endpoints)
        assert argv[argv.index("--token-file") + 1] == str(lab.dir / "server-token")
        # The registry runs on master 1 only.
        assert (lab.master_pid(n, "registry") is not None) == (n == 1)
    # One etcd cluster of three started members, one per master machine.
    members = json.loads(lab.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["master", "master2", "master3"]
    assert sorted(m["clientURLs"][0] for m in members) == sorted(endpoints)

    # The admin credentials list every master; every master serves; exactly one leads.
    assert lab.sh("env").stdout.strip() == f"export KYBCONFIG={lab.kubeconfig}"
    assert resolve(lab.kubeconfig).server == ",".join(lab.servers)
    for n in (1, 2, 3):
        assert await until(lambda n=n: lab.serving(n), timeout=30, message=f"master {n} serving")
    leader = await lab.leader()
    assert await lab.leaders() == [leader]
    assert lab.leader_sh() == leader
    async with lab.client() as kyb:
        assert f"_{lab.master_address(leader)}_" in await holder(kyb)
        await until(lambda: nodes_ready(kyb, lab.workers), timeout=60, message="every Node Ready")
    # `status` shows every master and the leader.
    status = lab.sh("status").stdout
    for name in ("master ", "master2 ", "master3 "):
        assert name in status
    assert f"leader: master {leader}\n" in status


async def test_killed_leader_is_replaced_and_clients_keep_working(ha_lab: Lab):
    lab = ha_lab
    leader = await lab.leader()
    async with lab.client() as kyb:
        ready_before = await until(lambda: nodes_ready(kyb, lab.workers), timeout=60, message="every Node Ready")
        lab.sh("kill-master", str(leader))
        try:
            assert lab.master_pid(leader) is None
            assert lab.master_pid(leader, "etcd") is not None  # only kyb-master died
            successor = await lab.leader(other_than=leader, timeout=30)
            assert lab.leader_sh() == successor
            async with lab.client() as again:
                assert f"_{lab.master_address(successor)}_" in await holder(again)
            # The client of all three masters keeps working (reads and writes), the new leader's loops run
            # (a Deployment's pods are scheduled and started), and no Node was ever taken for lost.
            async with deployment(lab, name="after-kill", replicas=3) as same:
                assert len((await same.list("pods", namespace="default", label_selector="app=after-kill")).items) == 3
            assert await kyb.list("nodes")
            assert await until(lambda: nodes_ready(kyb, lab.workers), timeout=30) == ready_before
        finally:
            lab.sh("start-master", str(leader))
        # Back as a standby: it serves, the successor keeps the lead.
        assert lab.master_pid(leader) is not None
        assert await until(lambda: lab.serving(leader), timeout=30, message="the restarted master serving")
        assert await lab.leaders() == [successor]
        assert await lab.leads(leader) is False
        assert await nodes_ready(kyb, lab.workers) == ready_before


async def test_stopped_etcd_member_writes_go_on_and_it_rejoins(ha_lab: Lab):
    lab = ha_lab
    # The member on the leader's machine: the leader's own store has to fail over to the other members.
    victim = await lab.leader()
    lab.sh("stop-etcd", str(victim), "--kill")
    try:
        assert lab.master_pid(victim, "etcd") is None
        assert lab.etcd_status(victim) is None
        async with lab.client() as kyb:
            # The first write may meet a master whose store is still moving to another member; the rest
            # go through at once.
            await until(lambda: create_once(kyb, "etcd-down-0"), timeout=30,
                        message="a write with one etcd member down")
            for i in range(1, 6):
                await kyb.create(make_deployment(f"etcd-down-{i}", replicas=0))
            # Every master, the victim's machine's included, keeps serving through the other two members.
            for n in range(1, MASTERS + 1):
                await until(lambda n=n: lab.serving(n), timeout=30, message=f"master {n} serving")
            await lab.leader()
            await until(lambda: nodes_ready(kyb, lab.workers), timeout=30, message="every Node Ready")
        others = [n for n in range(1, MASTERS + 1) if n != victim]
        status = lab.etcd_status(others[0])
        assert status is not None
        revision = status["header"]["revision"]
    finally:
        lab.sh("start-etcd", str(victim))

    # It rejoins: healthy, and it catches up with what was written while it was down.
    assert lab.master_pid(victim, "etcd") is not None

    async def caught_up() -> bool:
        status = lab.etcd_status(victim)
        return status is not None and status["header"]["revision"] >= revision and status["leader"] != 0

    await until(caught_up, timeout=30, interval=0.2, message=f"etcd member of master {victim} caught up")
    health = lab.etcdctl("endpoint", "health", "-w", "json").stdout
    assert sorted(h["endpoint"] for h in json.loads(health) if h["health"]) == sorted(
        f"https://{lab.master_ip(n)}:2379" for n in range(1, MASTERS + 1))
    async with lab.client() as kyb:
        await kyb.create(make_deployment("etcd-back", replicas=0))
        names = {d.metadata.name for d in (await kyb.list("deployments", namespace="default")).items}
        assert {f"etcd-down-{i}" for i in range(6)} | {"etcd-back"} <= names
        for name in sorted(names & ({f"etcd-down-{i}" for i in range(6)} | {"etcd-back"})):
            await kyb.delete("deployments", name, namespace="default", unconditional=True)


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


async def test_master_fault_commands_touch_one_master(ha_lab: Lab):
    lab = ha_lab
    leader = await lab.leader()
    # A standby. Its partition also cuts off its etcd member: when that member led etcd's raft, the election
    # that follows can stall the leader's lease renewals long enough for the lead to move (docs/lab-ha.md §4),
    # so the test asks for exactly one leader afterwards, not the same one.
    n = next(m for m in range(MASTERS, 0, -1) if m != leader)
    # `partition master N` and `heal masterN`: that master's cable only.
    lab.sh("partition", "master", str(n))
    try:
        masters = range(1, MASTERS + 1)
        assert [lab.link_up(lab.master_veth(m)) for m in masters] == [m != n for m in masters]
        assert await lab.leads(n) is None  # unreachable from the host
        status = lab.sh("status").stdout
        assert any(line.split()[:1] == [lab.master_name(n)] and "partitioned" in line for line in status.splitlines())
    finally:
        lab.sh("heal", f"master{n}")
    assert lab.link_up(lab.master_veth(n))
    await until(lambda: lab.serving(n), timeout=30, message=f"master {n} serving after heal")
    # pause / resume: the process stalls (SIGSTOP) and answers nothing, then goes on.
    pid = lab.master_pid(n)
    assert pid is not None
    lab.sh("pause-master", str(n))
    try:
        assert process_state(pid) == "T"
        assert await lab.leads(n) is None
    finally:
        lab.sh("resume-master", str(n))
    assert process_state(pid) != "T"
    await until(lambda: lab.serving(n), timeout=30, message=f"master {n} serving after resume")
    # stop (SIGTERM) and start again: back as a standby, the etcd member untouched.
    etcd = lab.master_pid(n, "etcd")
    lab.sh("stop-master", f"master{n}")
    assert lab.master_pid(n) is None and lab.master_pid(n, "etcd") == etcd
    lab.sh("start-master", "master", str(n))
    assert await lab.serving(n)
    assert 1 <= await lab.leader() <= MASTERS
    # Wrong numbers and extra words are refused before anything is touched.
    for args, error in [(("kill-master", str(MASTERS + 1)), f"no master '{MASTERS + 1}'"),
                        (("partition", "master", "2", "x"), "expected: N, master [M] or masterM"),
                        (("stop-etcd", "1", "2"), "one master at a time"),
                        (("start-master", "--kill"), "--kill is not an option here"),
                        (("partition", str(lab.workers + 1)), f"no node '{lab.workers + 1}'")]:
        result = lab.sh(*args, check=False)
        assert result.returncode == 1 and error in result.stderr, (args, result.stderr)
    assert all(lab.master_pid(m) is not None and lab.master_pid(m, "etcd") is not None
               for m in range(1, MASTERS + 1))


# ----------------------------------------------------------------------------- the failures, one by one


class Watching:
    """A watch that runs while the `async with` block does (`_run`: the subclass's loop)."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def _prime(self) -> None:
        """What to read before the watch starts."""

    async def __aenter__(self) -> Self:
        await self._prime()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class PodCensus(Watching):
    """Every pod of one app as a watch sees it, and the most that were live (not terminating) at once."""

    def __init__(self, kyb: Client, app: str) -> None:
        self.kyb = kyb
        self.app = app
        self.live: dict[str, pb.Pod] = {}
        self.most_live = 0

    async def _prime(self) -> None:
        for pod in (await self.kyb.list("pods", namespace="default", label_selector=f"app={self.app}")).items:
            self._see("ADDED", pod)

    def _see(self, kind: str, pod: pb.Pod) -> None:
        if kind == "DELETED" or pod.metadata.HasField("deletion_timestamp") or \
                pod.status.phase in ("Succeeded", "Failed"):
            self.live.pop(pod.metadata.uid, None)
        else:
            self.live[pod.metadata.uid] = pod
        self.most_live = max(self.most_live, len(self.live))

    async def _run(self) -> None:
        async for event in self.kyb.watch("pods", namespace="default", label_selector=f"app={self.app}"):
            self._see(event.type, event.object)


class ReadyChanges(Watching):
    """Ready transitions of every Node while it runs."""

    def __init__(self, kyb: Client) -> None:
        self.kyb = kyb
        self.ready: dict[str, bool] = {}
        self.changes: list[tuple[str, bool]] = []

    async def _run(self) -> None:
        async for event in self.kyb.watch("nodes"):
            name, ready = event.object.metadata.name, is_ready(event.object) and not event.object.spec.taints
            if name in self.ready and self.ready[name] != ready:
                self.changes.append((name, ready))
            self.ready[name] = ready


def images_of(pods: list[pb.Pod]) -> set[str]:
    return {c.image.rsplit(":", 1)[-1] for p in pods for c in p.spec.containers}


async def pod_state(kyb: Client, app: str) -> dict[str, tuple[str, int]]:
    """uid -> (Node, restarts) of an app's live pods."""
    return {p.metadata.uid: (p.spec.node_name, sum(s.restart_count for s in p.status.container_statuses))
            for p in await live_pods(kyb, app)}


async def test_leader_killed_during_a_rollout_no_extra_pods_no_lost_node(ha_lab: Lab):
    lab = ha_lab
    async with lab.client() as kyb, deployment(lab, name="calm", replicas=3):
        calm = await pod_state(kyb, "calm")
        lab.sh("kybctl", "apply", "-f", "-", stdin=hello_manifest(lab, name="roll", replicas=6, max_surge=1))
        try:
            await until(lambda: count_is(ready_pods(kyb, "roll"), 6), timeout=120, message="6 replicas of v1")
            leader = await lab.leader()
            async with PodCensus(kyb, "roll") as census, ReadyChanges(kyb) as nodes:
                lab.sh("kybctl", "set", "image", "deployment/roll", f"hello={lab.registry}/kyb/hello:v2")
                await until(lambda: "v2" in images_of(list(census.live.values())) or None, timeout=60,
                            interval=0.05, message="the rollout started")
                lab.sh("kill-master", str(leader))
                try:
                    await lab.leader(other_than=leader, timeout=30)

                    async def rolled() -> bool:
                        pods = await ready_pods(kyb, "roll")
                        return len(pods) == 6 and images_of(pods) == {"v2"} and len(census.live) == 6

                    await until(rolled, timeout=180, message="the rollout finished on the new leader")
                finally:
                    lab.sh("start-master", str(leader))
                # One pod over the 6 at most (maxSurge 1): the new leader adopted the old one's work, it did
                # not redo it; no Node was ever NotReady or tainted.
                assert census.most_live <= 7, census.most_live
                assert nodes.changes == []
            # The other app's pods were neither evicted, moved nor restarted.
            assert await pod_state(kyb, "calm") == calm
        finally:
            lab.sh("kybctl", "delete", "deployment", "roll", check=False)
            await until(lambda: none_left(lab, kyb, "roll"), timeout=90, message="roll gone")


async def test_a_paused_leader_is_deposed_and_writes_nothing(ha_lab: Lab):
    lab = ha_lab
    async with lab.client() as kyb, deployment(lab, name="fence", replicas=2):
        leader = await lab.leader()
        paused_at = time.time()
        lab.sh("pause-master", str(leader))
        try:
            successor = await lab.leader(other_than=leader, timeout=30)
            # Work the paused leader's loops will see, from stale caches, when they wake up.
            lab.sh("kybctl", "scale", "deployment/fence", "--replicas=4")
            status = lab.etcd_status(successor)
            assert status is not None
            revision = status["header"]["revision"]
        finally:
            lab.sh("resume-master", str(leader))
        # It answers again and knows it does not lead; the new leader did the scaling, once.
        await until(lambda: _answers_not_leading(lab, leader), timeout=30, message="the woken master stands by")
        await until(lambda: count_is(ready_pods(kyb, "fence"), 4), timeout=90, message="4 replicas")
        assert len(await live_pods(kyb, "fence")) == 4
        assert await lab.leaders() == [successor]
        # Nothing its loops did after the pause reached etcd: every Event they recorded (source host: that
        # master) was written before the pause, at a revision before the one read while it was paused.
        mine = [e for e in (await kyb.list("events", namespace="")).items
                if f"_{lab.master_address(leader)}_" in e.source.host]
        late = [e for e in mine if int(e.metadata.resource_version) > revision
                or e.last_timestamp.seconds >= int(paused_at) + 1]
        assert late == [], [(e.reason, e.message, e.metadata.resource_version) for e in late]


async def _answers_not_leading(lab: Lab, n: int) -> bool:
    return await lab.leads(n) is False


async def test_two_masters_down_refuse_at_once_naming_the_quorum_then_recover(ha_lab: Lab):
    lab = ha_lab
    survivor = 1
    down = [2, 3]
    pid = lab.master_pid(survivor)
    for n in down:
        lab.sh("kill-master", str(n))
        lab.sh("stop-etcd", str(n), "--kill")
    try:
        async with lab.master_client(survivor, timeout=10) as kyb:
            async def refused() -> str | None:
                try:
                    await kyb.create(make_deployment("no-quorum", replicas=0))
                except UnavailableError as err:
                    return err.message if "lost its quorum" in err.message else None
                return None

            message = await until(refused, timeout=30, message="writes refused for the lost quorum")
            assert "etcd has lost its quorum" in message
    finally:
        for n in down:
            lab.sh("start-etcd", str(n))
            lab.sh("start-master", str(n))
    # Back without a restart of the survivor.
    async with lab.master_client(survivor, timeout=10) as kyb:
        await until(lambda: create_once(kyb, "quorum-back"), timeout=60, message="writes through the survivor")
        await kyb.delete("deployments", "quorum-back", namespace="default", unconditional=True)
    assert lab.master_pid(survivor) == pid
    await lab.leader()


async def test_a_partitioned_leader_stops_leading_and_the_others_go_on(ha_lab: Lab):
    lab = ha_lab
    leader = await lab.leader()
    lab.sh("partition", "master", str(leader))
    try:
        cut_at = time.time()
        successor = await lab.leader(other_than=leader, timeout=30)
        async with lab.master_client(successor, timeout=10) as kyb:
            await until(lambda: create_once(kyb, "while-cut"), timeout=30, message="writes through the others")
            status = lab.etcd_status(successor)
            assert status is not None
            # The cut-off master, reached through its own namespace, does not lead (its etcd member has no
            # quorum: its lease cannot be renewed).
            assert await until(lambda: _not_leading_inside(lab, leader), timeout=30,
                               message="the partitioned master stops leading")
    finally:
        lab.sh("heal", "master", str(leader))
    # Healed: its etcd member catches up once TCP's retransmission timers, grown during the cut, fire again
    # (seconds), then it serves, as a standby.
    await until(lambda: lab.serving(leader), timeout=60, message="the healed master serving")
    assert await lab.leaders() == [successor]
    async with lab.client() as kyb:
        events = await until(lambda: kyb.list("events", namespace=""), timeout=30, message="events listed")
        mine = [e for e in events.items
                if f"_{lab.master_address(leader)}_" in e.source.host and e.last_timestamp.seconds > cut_at + 2]
        assert mine == []
        await until(lambda: _gone(kyb, "while-cut"), timeout=30, message="while-cut deleted")


async def _gone(kyb: Client, name: str) -> bool:
    with contextlib.suppress(NotFoundError):
        await kyb.delete("deployments", name, namespace="default", unconditional=True)
    return True


async def _not_leading_inside(lab: Lab, n: int) -> bool:
    """Ask master N's health from inside its own network namespace (the host cannot reach it)."""
    result = run("ip", "netns", "exec", lab.master_netns(n), sys.executable, "-c", HEALTH_PROBE,
                 str(lab.kubeconfig), lab.master_address(n), check=False, timeout=20)
    if result.stdout.strip() != "NOT_SERVING":
        raise AssertionError(f"master {n} inside its netns: {result.stdout.strip()} {result.stderr.strip()[-300:]}")
    return True


HEALTH_PROBE = """
import asyncio, sys
from pathlib import Path
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kybernetes.core.identity.kubeconfig import resolve
from kybernetes.core.identity.credentials import secure_channel

async def main():
    creds = resolve(Path(sys.argv[1])).credentials
    async with secure_channel(sys.argv[2], creds) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="kyb.leader"), timeout=3)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

asyncio.run(main())
"""


def nodes_on(lab: Lab, master: int) -> set[str]:
    """The Nodes whose stream is on master N, as its presence key in etcd says."""
    values = lab.etcdctl("get", "--prefix", "/kybernetes/presence/", "--print-value-only").stdout.splitlines()
    for doc in (json.loads(v) for v in values if v.startswith("{")):
        if doc.get("address") == lab.master_address(master):
            return set(doc["connected"])
    return set()


async def test_leader_cut_off_from_every_node_evicts_nothing(ha_lab: Lab):
    lab = ha_lab
    leader = await lab.leader()
    netns = lab.master_netns(leader)
    workers = [lab.node_ip(n) for n in range(1, lab.workers + 1)]
    async with lab.client() as kyb, deployment(lab, name="stay", replicas=3):
        before = await pod_state(kyb, "stay")
        # The case that matters: a Node whose stream is on the leader, and which moves to another master when
        # the leader loses it. Send node 1's kubelet there (the other masters out of its reach for a moment).
        others = [lab.master_ip(m) for m in range(1, lab.masters + 1) if m != leader]
        if "node1" not in nodes_on(lab, leader):
            for ip in others:
                run("ip", "netns", "exec", lab.node_netns(1), "iptables", "-I", "OUTPUT", "-d", ip, "-j", "DROP")
            try:
                await until(lambda: "node1" in nodes_on(lab, leader), timeout=30, message="node1 on the leader")
            finally:
                for ip in others:
                    run("ip", "netns", "exec", lab.node_netns(1), "iptables", "-D", "OUTPUT", "-d", ip, "-j",
                        "DROP", check=False)
        for ip in workers:
            run("ip", "netns", "exec", netns, "iptables", "-I", "INPUT", "-s", ip, "-j", "DROP")
            run("ip", "netns", "exec", netns, "iptables", "-I", "OUTPUT", "-d", ip, "-j", "DROP")
        try:
            # Three grace periods and evictions (5 s + 1 s each): the leader keeps etcd and its lead, its Nodes'
            # kubelets move to the other masters, and nothing is evicted.
            began = time.monotonic()
            while time.monotonic() - began < 18:
                state = await pod_state(kyb, "stay")
                assert state == before, "a pod was evicted, moved or restarted"
                await asyncio.sleep(0.5)
            assert await lab.leaders() == [leader]
            assert any("node1" in nodes_on(lab, m) for m in range(1, lab.masters + 1) if m != leader), \
                "node1 moved to another master"
        finally:
            for ip in workers:
                run("ip", "netns", "exec", netns, "iptables", "-D", "INPUT", "-s", ip, "-j", "DROP", check=False)
                run("ip", "netns", "exec", netns, "iptables", "-D", "OUTPUT", "-d", ip, "-j", "DROP", check=False)
        assert await pod_state(kyb, "stay") == before
