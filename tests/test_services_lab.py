"""Services on the namespace lab: the sample app behind a clusterIP and a NodePort, as a user runs it.

Everything goes through the real path: kybctl (apply, expose, scale, set image, exec) against the
lab's master, the endpoints controller, the master's ServiceSync to every kubelet, and each kubelet's
proxy programming iptables in its node's network namespace. Traffic stays in the lab: requests to a
clusterIP are made from inside a node's netns or a pod, requests to NODE_IP:nodePort from the host over
the lab's bridge (the lab's blackholes keep the pod and service ranges off the host's uplinks).

Clients open one connection per request (HTTP/1.0), so every request is a fresh load-balancing decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.lab import Lab, deployment, http_get, ready_pods, run
from harness.waiting import until
from kybernetes.ctl.client import Client, NotFoundError
from kybernetes.kubelet.proxy.rules import chain_name
from kybernetes.proto import objects_pb2 as pb

REQUESTS = 100

# A client run inside a node's netns (ip netns exec): GET / once per connection, COUNT times or until
# the file STOP exists; prints one JSON list of [seconds since start, body or "error:<kind>"].
NETNS_CLIENT = r"""
import json, os, socket, sys, time
host, port, count, stop, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
start, results = time.monotonic(), []
while (count and len(results) < count) or (not count and not os.path.exists(stop)):
    began = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        answer = body.strip() if " 200 " in head.split("\r\n")[0] else "error:" + head.split("\r\n")[0]
    except OSError as err:
        answer = f"error:{type(err).__name__}"
    results.append([round(began - start, 4), answer, round(time.monotonic() - began, 4)])
    if pause:
        time.sleep(pause)
print(json.dumps(results))
"""


def netns_requests(netns: str, ip: str, port: int, *, count: int = REQUESTS) -> list[str]:
    """`count` requests to ip:port from inside a netns; the bodies, or "error:<kind>"."""
    out = run("ip", "netns", "exec", netns, sys.executable, "-c", NETNS_CLIENT, ip, str(port), str(count), "",
              "0", timeout=120).stdout
    return [answer for _, answer, _ in json.loads(out)]


def pod_of(answer: str) -> str:
    """'hello from NAME version vN' -> NAME (an error stays as it is)."""
    words = answer.split()
    return words[2] if len(words) == 5 and words[0] == "hello" else answer


def version_of(answer: str) -> str:
    words = answer.split()
    return words[4] if len(words) == 5 and words[0] == "hello" else answer


# ----------------------------------------------------------------------------- rules in a node's netns


def kyb_rules(lab: Lab, node: int) -> list[str]:
    """Every line of iptables-save in the node's netns that belongs to us (our chains and jumps), in order."""
    saved = run("ip", "netns", "exec", lab.node_netns(node), "iptables-save").stdout
    return [line for line in saved.splitlines() if "KYB-" in line]


def service_targets(lab: Lab, node: int, service: str, *, port_name: str = "") -> set[str]:
    """ip:port that the node's rules send new connections for default/SERVICE:PORT_NAME (TCP) to."""
    saved = run("ip", "netns", "exec", lab.node_netns(node), "iptables-save", "-t", "nat").stdout.splitlines()
    svc_chain = chain_name("KYB-SVC", "default", service, port_name, "TCP")
    seps = {line.split("-j ")[-1].strip() for line in saved if line.startswith(f"-A {svc_chain} ")}
    return {line.split("--to-destination ")[1].split()[0] for line in saved
            if line.split()[1:2] and line.split()[1] in seps and "--to-destination" in line}


async def wait_rules(lab: Lab, service: str, targets: set[str], *, timeout: float = 15.0) -> None:
    """Until every node's rules send the Service to exactly these targets."""
    async def converged() -> bool:
        return all(service_targets(lab, n, service) == targets for n in range(1, lab.workers + 1))

    await until(converged, timeout=timeout, interval=0.1)


async def ready_targets(kyb: Client, app: str, *, port: int = 8080) -> dict[str, str]:
    """ip:port -> pod name for the app's ready pods."""
    return {f"{p.status.pod_ip}:{port}": p.metadata.name for p in await ready_pods(kyb, app)}


# ----------------------------------------------------------------------------- Services


@dataclass
class Exposed:
    """A Deployment of the sample app behind a NodePort Service."""

    kyb: Client
    name: str
    cluster_ip: str
    port: int
    node_port: int
    pods: dict[str, str] = field(default_factory=dict)  # ip:port -> name, the ready replicas at the start


def service_manifest(name: str, *, node_port: int = 0, port: int = 8080, type_: str = "NodePort",
                     selector: bool = True) -> str:
    lines = ["apiVersion: v1", "kind: Service", "metadata:", f"  name: {name}", "spec:", f"  type: {type_}"]
    if selector:
        lines += ["  selector:", f"    app: {name}"]
    lines += ["  ports:", f"  - port: {port}", "    targetPort: 8080"]
    if node_port:
        lines.append(f"    nodePort: {node_port}")
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def exposed(lab: Lab, *, name: str, replicas: int, expose: bool = False,
                  stay: bool = False) -> AsyncIterator[Exposed]:
    """The sample app (`replicas` Ready; `stay`: never evicted) behind a NodePort Service whose rules are in
    place on every node."""
    async with deployment(lab, name=name, replicas=replicas, stay=stay) as kyb:
        if expose:
            result = lab.sh("kybctl", "expose", f"deployment/{name}", "--type=NodePort", "--port", "8080")
            assert result.stdout.strip() == f"service/{name} exposed", result.stdout
        else:
            lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest(name))
        try:
            svc = await kyb.get("services", name)
            pods = await ready_targets(kyb, name)
            await wait_rules(lab, name, set(pods))
            yield Exposed(kyb=kyb, name=name, cluster_ip=svc.spec.cluster_ip, port=svc.spec.ports[0].port,
                          node_port=svc.spec.ports[0].node_port, pods=pods)
        finally:
            lab.sh("kybctl", "delete", "service", name, check=False)


async def test_expose_spreads_requests_over_every_ready_replica(lab: Lab):
    async with exposed(lab, name="hello", replicas=3, expose=True) as app:
        replicas = sorted(app.pods.values())
        # kubectl's columns, the allocated clusterIP and nodePort.
        table = lab.sh("kybctl", "get", "svc", "hello").stdout.splitlines()
        assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        assert table[1].split()[:5] == ["hello", "NodePort", app.cluster_ip, "<none>", f"8080:{app.node_port}/TCP"]
        assert 30000 <= app.node_port <= 32767

        # The clusterIP, from inside a node (every node programs the same rules).
        for node in range(1, lab.workers + 1):
            answers = netns_requests(lab.node_netns(node), app.cluster_ip, app.port)
            spread = Counter(map(pod_of, answers))
            print(f"clusterIP from node{node}: {dict(spread)}")
            assert sorted(spread) == replicas, spread

        # NODE_IP:nodePort on every node, from the host over the lab bridge.
        for node in range(1, lab.workers + 1):
            answers = [await http_get(lab.node_ip(node), port=app.node_port) for _ in range(REQUESTS)]
            spread = Counter(map(pod_of, answers))
            print(f"{lab.node_ip(node)}:{app.node_port}: {dict(spread)}")
            assert sorted(spread) == replicas, spread

        # The clusterIP from inside a pod (kybctl exec), its own replica included (hairpin).
        client_pod = replicas[0]
        # (busybox 1.35's static wget crashes with -T: `timeout` bounds each request instead)
        script = (f"for i in $(seq {REQUESTS}); do timeout 3 wget -qO- http://{app.cluster_ip}:{app.port}/ "
                  "</dev/null || echo error; done")
        answers = lab.sh("kybctl", "exec", client_pod, "--", "sh", "-c", script).stdout.splitlines()
        spread = Counter(map(pod_of, answers))
        print(f"clusterIP from pod {client_pod}: {dict(spread)}")
        assert len(answers) == REQUESTS and sorted(spread) == replicas, spread


async def test_unready_pod_gets_no_traffic(lab: Lab):
    async with exposed(lab, name="ready", replicas=3) as app:
        target, sick = sorted(app.pods.items())[0]
        # Its readiness probe (GET /healthz) starts failing; the container keeps running and serving /.
        lab.sh("kybctl", "exec", sick, "--", "rm", "/www/healthz")

        async def left_the_endpoints() -> bool:
            ep = await app.kyb.get("endpoints", app.name)
            ready = {f"{a.ip}:8080" for s in ep.subsets for a in s.addresses}
            not_ready = {f"{a.ip}:8080" for s in ep.subsets for a in s.not_ready_addresses}
            return target not in ready and target in not_ready

        await until(left_the_endpoints, timeout=30, interval=0.1)
        await wait_rules(lab, app.name, set(app.pods) - {target})
        assert await http_get(target.split(":")[0]) == f"hello from {sick} version v1"  # still up, just unready
        healthy = sorted(name for name in app.pods.values() if name != sick)
        spread = Counter(map(pod_of, netns_requests(lab.node_netns(1), app.cluster_ip, app.port)))
        assert sorted(spread) == healthy, spread
        spread = Counter([pod_of(await http_get(lab.node_ip(2), port=app.node_port)) for _ in range(REQUESTS)])
        assert sorted(spread) == healthy, spread

        # Ready again: it gets its share again.
        lab.sh("kybctl", "exec", sick, "--", "sh", "-c", "echo ok > /www/healthz")
        await wait_rules(lab, app.name, set(app.pods), timeout=30)
        spread = Counter(map(pod_of, netns_requests(lab.node_netns(3), app.cluster_ip, app.port)))
        assert sorted(spread) == sorted(app.pods.values()), spread


class Requester:
    """Requests in a loop, one connection each, until stopped: from the host to the nodePort of the given
    nodes (round robin) and from inside one node's netns to the clusterIP. A short pause between requests
    keeps the rate of a busy client (about 100/s in all) without starving the lab's 2 cores."""

    def __init__(self, lab: Lab, app: Exposed, *, stop_file: Path, nodes: list[int], netns_node: int,
                 pause: float = 0.01) -> None:
        self.lab, self.app, self.stop_file, self.pause = lab, app, stop_file, pause
        self.nodes, self.netns_node = nodes, netns_node
        self.host_answers: list[tuple[float, str, str]] = []  # (monotonic, target, body or error)
        self._stopping = asyncio.Event()
        self._host_task: asyncio.Task[None] | None = None
        self._netns: subprocess.Popen[str] | None = None
        self.netns_answers: list[str] = []

    async def __aenter__(self) -> Requester:
        self._netns = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.node_netns(self.netns_node), sys.executable, "-c", NETNS_CLIENT,
             self.app.cluster_ip, str(self.app.port), "0", str(self.stop_file), str(self.pause)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._host_task = asyncio.create_task(self._host_loop())
        return self

    async def _host_loop(self) -> None:
        nodes = [self.lab.node_ip(n) for n in self.nodes]
        i = 0
        while not self._stopping.is_set():
            ip = nodes[i % len(nodes)]
            i += 1
            try:
                answer = await http_get(ip, port=self.app.node_port)
            except (OSError, AssertionError, TimeoutError) as err:
                answer = f"error:{type(err).__name__}:{err}"
            self.host_answers.append((time.monotonic(), f"{ip}:{self.app.node_port}", answer))
            await asyncio.sleep(self.pause)

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        self.stop_file.touch()
        if self._host_task is not None:
            await self._host_task
        if self._netns is not None:
            out, err = await asyncio.to_thread(self._netns.communicate, timeout=30)
            assert self._netns.returncode == 0, err
            self.netns_answers = [answer for _, answer, _ in json.loads(out)]


async def test_rolling_update_behind_the_service_fails_no_request(lab: Lab, tmp_path: Path):
    async with exposed(lab, name="roll", replicas=3) as app:
        old_pods = sorted(app.pods.values())
        async with Requester(lab, app, stop_file=tmp_path / "stop", nodes=[1, 2, 3], netns_node=1) as requester:
            await until(lambda: _answered(requester, 20), timeout=10)
            lab.sh("kybctl", "set", "image", "deployment/roll", f"hello={lab.registry}/kyb/hello:v2")

            async def rolled_out() -> bool:
                deploy = await app.kyb.get("deployments", "roll")
                pods = (await app.kyb.list("pods", namespace="default", label_selector="app=roll")).items
                return (deploy.status.updated_replicas == 3 and deploy.status.available_replicas == 3
                        and len(pods) == 3 and all(p.spec.containers[0].image.endswith(":v2") for p in pods))

            started = time.monotonic()
            await until(rolled_out, timeout=120, interval=0.2)
            done = time.monotonic()
            # Keep requesting a little after the old pods are gone: the answers are v2 only.
            count = len(requester.host_answers)
            await until(lambda: _answered(requester, count + 30), timeout=10)

        host = [answer for _, _, answer in requester.host_answers]
        failed = [a for a in host + requester.netns_answers if not a.startswith("hello from")]
        print(f"rollout took {done - started:.1f}s; {len(host)} requests to nodePorts from the host: "
              f"{dict(Counter(map(version_of, host)))}; {len(requester.netns_answers)} to the clusterIP from "
              f"node1: {dict(Counter(map(version_of, requester.netns_answers)))}")
        assert failed == [], f"{len(failed)} failed requests: {Counter(failed)}"
        for answers in (host, requester.netns_answers):
            versions = [version_of(a) for a in answers]
            assert versions[0] == "v1" and "v2" in versions, Counter(versions)
        after = [version_of(answer) for t, _, answer in requester.host_answers if t > done]
        assert len(after) >= 30 and set(after) == {"v2"}, Counter(after)
        # The old replicas stopped on their own after draining (exit 0), not killed at the end of the grace period.
        assert container_exits(lab, old_pods) == {name: [0] for name in old_pods}


def container_exits(lab: Lab, pods: list[str]) -> dict[str, list[int]]:
    """The exit codes the kubelets logged for these pods' containers ("container exited" events)."""
    exits: dict[str, list[int]] = {name: [] for name in pods}
    for node in range(1, lab.workers + 1):
        for line in (lab.dir / f"node{node}" / "log" / "kubelet.log").read_text().splitlines():
            if '"container exited"' not in line:
                continue
            event = json.loads(line)
            name = event.get("object", "").removeprefix("pods/default/")
            if event.get("event") == "container exited" and name in exits:
                exits[name].append(event["exit_code"])
    return exits


async def _answered(requester: Requester, count: int) -> bool:
    return len(requester.host_answers) >= count


async def test_scaling_to_zero_refuses_connections_at_once(lab: Lab):
    async with exposed(lab, name="zero", replicas=2) as app:
        lab.sh("kybctl", "scale", "deployment/zero", "--replicas=0")

        async def no_endpoints() -> bool:
            ep = await app.kyb.get("endpoints", app.name)
            return not any(s.addresses for s in ep.subsets)

        await until(no_endpoints, timeout=60, interval=0.1)
        await wait_rules(lab, app.name, set())

        # From a node to the clusterIP: the rules answer with a reset (not a timeout, not a blackhole).
        for node in range(1, lab.workers + 1):
            out = run("ip", "netns", "exec", lab.node_netns(node), sys.executable, "-c", NETNS_CLIENT,
                      app.cluster_ip, str(app.port), "1", "", "0").stdout
            [[_, answer, elapsed]] = json.loads(out)
            print(f"clusterIP from node{node}: {answer} after {elapsed * 1000:.1f} ms")
            assert answer == "error:ConnectionRefusedError", answer
        # From the host to every node's nodePort.
        for node in range(1, lab.workers + 1):
            began = time.monotonic()
            try:
                await asyncio.wait_for(asyncio.open_connection(lab.node_ip(node), app.node_port), 5)
                raise AssertionError(f"{lab.node_ip(node)}:{app.node_port} accepted a connection")
            except ConnectionRefusedError:
                pass
            print(f"{lab.node_ip(node)}:{app.node_port}: refused after {(time.monotonic() - began) * 1000:.1f} ms")


async def test_duplicate_and_out_of_range_node_ports_are_refused(lab: Lab):
    taken = 30000 + secrets.randbelow(2700)
    lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest("first", node_port=taken))
    try:
        result = lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest("second", node_port=taken), check=False)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "spec.ports[0].nodePort" in result.stderr and f"{taken}" in result.stderr, result.stderr
        assert "already allocated" in result.stderr, result.stderr
        for port in (80, 29999, 32768):
            result = lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest("third", node_port=port),
                            check=False)
            assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "spec.ports[0].nodePort" in result.stderr and "30000-32767" in result.stderr, result.stderr
        names = lab.sh("kybctl", "get", "svc", "-o", "name").stdout.split()
        assert "service/first" in names and "service/second" not in names and "service/third" not in names
    finally:
        lab.sh("kybctl", "delete", "service", "first", check=False)


async def test_proxy_restart_rebuilds_the_same_rules_without_dropping_traffic(lab: Lab, tmp_path: Path):
    node = 2
    # Its pods stay where they are even if node 2's kubelet is away for longer than the grace period (a slow
    # machine): then the rules to rebuild are the same.
    async with exposed(lab, name="steady", replicas=2, stay=True) as app:
        # A Service without endpoints too, so that the reject rules are part of the picture.
        lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest("idle", type_="ClusterIP", port=9090))
        try:
            idle = await app.kyb.get("services", "idle")
            await until(lambda: _has_line(lab, node, f"-d {idle.spec.cluster_ip}/32"), timeout=15)
            before = kyb_rules(lab, node)
            lab.sh("stop-kubelet", str(node))
            restarted = False
            try:
                assert kyb_rules(lab, node) == before  # a stopped kubelet leaves its rules in place
                # Leftovers a rebuild must remove: a stale chain and a stale reject rule.
                netns = lab.node_netns(node)
                run("ip", "netns", "exec", netns, "iptables", "-t", "nat", "-N", "KYB-SVC-STALESTALESTALE1")
                run("ip", "netns", "exec", netns, "iptables", "-A", "KYB-REJECT", "-d", "10.96.255.254/32",
                    "-p", "tcp", "-j", "REJECT")
                assert kyb_rules(lab, node) != before
                # Both clients go through this node: its nodePort from the host, its clusterIP rules.
                async with Requester(lab, app, stop_file=tmp_path / "stop", nodes=[node],
                                     netns_node=node) as requester:
                    await until(lambda: _answered(requester, 20), timeout=10)
                    lab.sh("start-kubelet", str(node))
                    restarted = True
                    try:
                        await until(lambda: _same(lab, node, before), timeout=30, interval=0.1)
                    except AssertionError:
                        assert kyb_rules(lab, node) == before  # the difference, for the report
                        raise
                    count = len(requester.host_answers)
                    await until(lambda: _answered(requester, count + 30), timeout=10)
            finally:
                if not restarted:
                    lab.sh("start-kubelet", str(node))
            assert kyb_rules(lab, node) == before
            answers = [a for _, _, a in requester.host_answers] + requester.netns_answers
            failed = [a for a in answers if not a.startswith("hello from")]
            print(f"{len(answers)} requests across the kubelet restart on node{node}, {len(failed)} failed")
            assert failed == [], Counter(failed)
        finally:
            lab.sh("kybctl", "delete", "service", "idle", check=False)


async def _has_line(lab: Lab, node: int, text: str) -> bool:
    return any(text in line for line in kyb_rules(lab, node))


async def _same(lab: Lab, node: int, rules: list[str]) -> bool:
    return kyb_rules(lab, node) == rules


async def _targets_are(lab: Lab, node: int, service: str, want: set[str]) -> bool:
    return service_targets(lab, node, service) == want


async def test_an_endpoints_change_reaches_the_rules(lab: Lab):
    # A Service without a selector: its Endpoints are ours to write, so each change has a known start.
    lab.sh("kybctl", "apply", "-f", "-", stdin=service_manifest("manual", type_="ClusterIP", selector=False))
    async with lab.client() as kyb:
        try:
            latencies = []
            for i in range(5):
                target = f"10.244.250.{10 + i}"  # never contacted: only the rule is looked at
                try:
                    ep = await kyb.get("endpoints", "manual")
                except NotFoundError:  # the first round: we create it
                    ep = pb.Endpoints()
                    ep.metadata.name, ep.metadata.namespace = "manual", "default"
                del ep.subsets[:]
                subset = ep.subsets.add()
                subset.addresses.add(ip=target)
                subset.ports.add(port=8080, protocol="TCP")
                began = time.monotonic()
                await (kyb.update(ep) if ep.metadata.resource_version else kyb.create(ep))
                await until(lambda want={f"{target}:8080"}: _targets_are(lab, 1, "manual", want), timeout=10,
                            interval=0.005)
                latencies.append(time.monotonic() - began)
            print("endpoints change -> rule on node1: " + ", ".join(f"{t * 1000:.0f}" for t in latencies)
                  + f" ms (median {statistics.median(latencies) * 1000:.0f} ms)")
        finally:
            lab.sh("kybctl", "delete", "service", "manual", check=False)
