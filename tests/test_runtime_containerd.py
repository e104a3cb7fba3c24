"""The containerd runtime against a real private containerd, runc, CNI bridge and registry.

Every test gets its own containerd namespace, bridge and pod /24 (see tests/fixtures/containerd.py);
traffic only goes to loopback or to pod IPs inside network namespaces the test created.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.ports import free_port
from harness.waiting import until
from kybernetes.kubelet.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerConfig,
    ContainerdRuntime,
    ContainerExit,
    ContainerInfo,
    ContainerStartError,
    ExecError,
    ImageNeverPulled,
    ImagePullError,
    RuntimeUnavailableError,
    SandboxConfig,
)

if TYPE_CHECKING:
    from harness.containerd import ContainerdEnv, RestartableContainerd
    from harness.registry import Registry

pytestmark = pytest.mark.containerd
# The fixtures (containerd, registry, test_images, ...) until tests/conftest.py imports them.

BUSYBOX = "kyb/busybox:1"
HELLO = "kyb/hello:v1"


@pytest.fixture
def runtime(containerd: ContainerdEnv, test_images: dict[str, Path]) -> ContainerdRuntime:
    for name in (BUSYBOX, HELLO):
        containerd.import_image(test_images[name])
    return ContainerdRuntime(**containerd.runtime_kwargs())


def config(test_env: ContainerdEnv, name: str, *, image: str = BUSYBOX, **fields: object) -> ContainerConfig:
    return ContainerConfig(name=name, image=image, log_path=test_env.log_dir / f"{name}.log", **fields)  # type: ignore[arg-type]


def pod(name: str, *, host_network: bool = False) -> SandboxConfig:
    return SandboxConfig(pod_uid=f"uid-{name}-{os.urandom(4).hex()}", namespace="default", name=name,
                         host_network=host_network)


async def wait_state(runtime: ContainerdRuntime, container_id: str, state: str, *, timeout: float = 15.0
                     ) -> ContainerInfo:
    async def check() -> ContainerInfo | None:
        info = await runtime.container_info(container_id)
        return info if info is not None and info.state == state else None

    return await until(check, timeout=timeout)


async def wait_log(path: Path, text: str, *, timeout: float = 15.0) -> str:
    async def check() -> str | None:
        content = path.read_text() if path.exists() else ""
        return content if text in content else None

    return await until(check, timeout=timeout)


async def http_get(url: str, *, timeout: float = 2.0) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()

    return await asyncio.to_thread(fetch)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    return free_port()


# ----------------------------------------------------------------------------- images


async def test_version(runtime: ContainerdRuntime) -> None:
    assert (await runtime.version()).startswith("containerd://1.6")


async def test_pull_from_private_registry_with_policies(
    containerd: ContainerdEnv, registry: Registry, pushed_test_images: dict[str, str]
) -> None:
    runtime = ContainerdRuntime(**containerd.runtime_kwargs(), insecure_registries=[registry.host])
    reference = pushed_test_images[BUSYBOX]

    with pytest.raises(ImageNeverPulled):
        await runtime.ensure_image(reference, pull_policy="Never")
    assert await runtime.ensure_image(reference, pull_policy="IfNotPresent") == reference
    assert reference in containerd.ctr("images", "ls", "-q").stdout.split()
    assert await runtime.ensure_image(reference, pull_policy="Never") == reference
    assert await runtime.ensure_image(reference, pull_policy="Always") == reference

    # The pulled image is unpacked and runnable.
    sandbox = await runtime.create_sandbox(pod("pulled"))
    cid = await runtime.start_container(sandbox, config(containerd, "echo", image=reference,
                                                        command=["echo", "pulled ok"]))
    info = await wait_state(runtime, cid, "exited")
    assert info.exit_code == 0
    assert (containerd.log_dir / "echo.log").read_text() == "pulled ok\n"

    with pytest.raises(ImagePullError, match="not found"):
        await runtime.ensure_image(registry.reference("kyb/nope:1"), pull_policy="IfNotPresent")
    with pytest.raises(ValueError, match="pull_policy"):
        await runtime.ensure_image(reference, pull_policy="Sometimes")


async def test_pull_from_unreachable_registry_fails_fast(containerd: ContainerdEnv) -> None:
    host = f"127.0.0.1:{closed_port()}"
    # No pull timeout to run out: only the refusal itself can end the pull, and it is reported as such.
    runtime = ContainerdRuntime(**containerd.runtime_kwargs(), insecure_registries=[host], pull_timeout=3600)
    with pytest.raises(ImagePullError, match="connection refused"):
        await asyncio.wait_for(runtime.ensure_image(f"{host}/kyb/busybox:1", pull_policy="IfNotPresent"), 60)


async def test_locally_imported_image_is_found_under_its_own_name(runtime: ContainerdRuntime) -> None:
    assert await runtime.ensure_image(BUSYBOX, pull_policy="Never") == BUSYBOX
    assert await runtime.ensure_image(HELLO, pull_policy="IfNotPresent") == HELLO
    with pytest.raises(ImageNeverPulled, match="kyb/hello:v9"):
        await runtime.ensure_image("kyb/hello:v9", pull_policy="Never")


# ----------------------------------------------------------------------------- sandboxes and networking


async def test_sandbox_gets_ip_and_serves_http_to_the_host(containerd: ContainerdEnv,
                                                           runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("web-0"))
    assert sandbox.ready and sandbox.netns_path is not None and sandbox.ip is not None
    assert ipaddress.ip_address(sandbox.ip) in ipaddress.ip_network(containerd.pod_cidr)
    assert Path(sandbox.netns_path).exists()
    assert containerd.netns_names() == [Path(sandbox.netns_path).name]

    await runtime.start_container(sandbox, config(containerd, "hello", image=HELLO))
    body = await until(lambda: http_get(f"http://{sandbox.ip}:8080/"), timeout=15)
    # The pod's hostname is the pod name (own UTS namespace), and the image says which version it is.
    assert body == "hello from web-0 version v1\n"

    # Creating the same sandbox again returns it unchanged.
    again = await runtime.create_sandbox(sandbox.config)
    assert (again.id, again.ip, again.netns_path) == (sandbox.id, sandbox.ip, sandbox.netns_path)


async def test_pod_name_env_wins_over_hostname(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("web-1"))
    await runtime.start_container(sandbox, config(containerd, "hello", image=HELLO, env={"POD_NAME": "from-env"}))
    assert await until(lambda: http_get(f"http://{sandbox.ip}:8080/")) == "hello from from-env version v1\n"


async def test_containers_of_one_sandbox_share_localhost(containerd: ContainerdEnv,
                                                         runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("duo"))
    await runtime.start_container(sandbox, config(containerd, "server", image=HELLO))
    client = await runtime.start_container(sandbox, config(
        containerd, "client",
        command=["sh", "-c", "until wget -qO- http://127.0.0.1:8080/; do sleep 0.1; done"],
    ))
    info = await wait_state(runtime, client, "exited")
    assert info.exit_code == 0
    assert (containerd.log_dir / "client.log").read_text() == "hello from duo version v1\n"


async def test_host_network_sandbox(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("hostnet", host_network=True))
    assert sandbox.netns_path is None and sandbox.ip is None and sandbox.ready
    assert containerd.netns_names() == []
    port = free_port()
    await runtime.start_container(sandbox, config(containerd, "hello", image=HELLO,
                                                  env={"PORT": f"127.0.0.1:{port}", "POD_NAME": "hostnet"}))
    assert await until(lambda: http_get(f"http://127.0.0.1:{port}/")) == "hello from hostnet version v1\n"
    await runtime.remove_sandbox(sandbox.id)
    assert await runtime.list_containers() == []


async def test_remove_sandbox_releases_everything(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("gone"))
    cid = await runtime.start_container(sandbox, config(containerd, "sleeper", command=["sleep", "1000"]))
    ipam_dir = containerd.root_dir / "cni" / "ipam" / "kyb-podnet"
    assert (ipam_dir / str(sandbox.ip)).exists()

    await runtime.remove_sandbox(sandbox.id)
    assert await runtime.container_info(cid) is None
    assert not (ipam_dir / str(sandbox.ip)).exists()
    assert containerd.netns_names() == []
    assert await runtime.list_sandboxes() == []
    await runtime.remove_sandbox(sandbox.id)  # idempotent
    await runtime.remove_sandbox("never-existed-0123456789")


async def test_sandbox_without_pod_cidr_is_refused_until_set(containerd: ContainerdEnv,
                                                            runtime: ContainerdRuntime) -> None:
    fresh = ContainerdRuntime(**{**containerd.runtime_kwargs(), "pod_cidr": None})
    with pytest.raises(Exception, match="no podCIDR"):
        await fresh.create_sandbox(pod("early"))
    fresh.set_pod_cidr(containerd.pod_cidr)
    sandbox = await fresh.create_sandbox(pod("late"))
    assert ipaddress.ip_address(sandbox.ip or "") in ipaddress.ip_network(containerd.pod_cidr)
    with pytest.raises(ValueError, match="pod_cidr"):
        fresh.set_pod_cidr("10.244.1.0/33")


# ----------------------------------------------------------------------------- process configuration


async def test_env_args_and_working_dir_are_applied(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("cfg"))
    cid = await runtime.start_container(sandbox, config(
        containerd, "show",
        command=["sh", "-c", 'echo "A=$A B=$B cwd=$(pwd) args=$0,$1"'],
        args=["first", "second arg"],
        env={"A": "1", "B": "two words"},
        working_dir="/tmp",
    ))
    info = await wait_state(runtime, cid, "exited")
    assert info.exit_code == 0
    assert (containerd.log_dir / "show.log").read_text() == "A=1 B=two words cwd=/tmp args=first,second arg\n"

    # Args alone replace the image's Cmd (busybox: sh) and keep its (empty) entrypoint.
    only_args = await runtime.start_container(sandbox, config(containerd, "args", args=["echo", "from args"]))
    assert (await wait_state(runtime, only_args, "exited")).exit_code == 0
    assert (containerd.log_dir / "args.log").read_text() == "from args\n"


async def test_labels_limits_and_ids(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("limits"))
    cid = await runtime.start_container(sandbox, config(
        containerd, "limited", command=["sleep", "1000"], cpu_millis=250, memory_bytes=64 * 1024 * 1024,
        labels={"io.kybernetes.restart": "3"},
    ))
    assert len(cid) <= 64 and cid.startswith(sandbox.id + "-limited-")
    info = await wait_state(runtime, cid, "running")
    assert info.pid is not None and info.started_at is not None and info.image == BUSYBOX
    assert info.labels[LABEL_POD_UID] == sandbox.config.pod_uid
    assert info.labels[LABEL_POD_NAMESPACE] == "default"
    assert info.labels[LABEL_POD_NAME] == "limits"
    assert info.labels[LABEL_CONTAINER_NAME] == "limited"
    assert info.labels["io.kybernetes.restart"] == "3"
    cgroup = Path("/sys/fs/cgroup")
    path = f"{containerd.namespace}/{cid}"
    assert (cgroup / "memory" / path / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
    assert (cgroup / "cpu" / path / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (cgroup / "cpu" / path / "cpu.cfs_period_us").read_text().strip() == "100000"

    second = await runtime.start_container(sandbox, config(containerd, "limited", command=["true"]))
    assert second != cid and second.startswith(sandbox.id + "-limited-")


async def test_executable_not_found_is_a_start_error(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("broken"))
    with pytest.raises(ContainerStartError) as caught:
        await runtime.start_container(sandbox, config(containerd, "nope", command=["/no/such/binary"]))
    assert caught.value.reason == "ExecutableNotFound"
    assert "/no/such/binary" in caught.value.message
    assert await runtime.list_containers() == []

    with pytest.raises(ContainerStartError) as missing_image:
        await runtime.start_container(sandbox, config(containerd, "img", image="kyb/absent:1", command=["true"]))
    assert missing_image.value.reason == "CreateContainerError"
    assert await runtime.list_containers() == []


# ----------------------------------------------------------------------------- exits, OOM, stop


async def collect_exits(runtime: ContainerdRuntime, into: list[ContainerExit]) -> None:
    async for container_exit in runtime.exits():
        into.append(container_exit)


async def wait_exit(seen: list[ContainerExit], container_id: str, *, timeout: float = 20.0) -> ContainerExit:
    async def check() -> ContainerExit | None:
        return next((e for e in seen if e.container_id == container_id), None)

    return await until(check, timeout=timeout)


@pytest.fixture
async def exit_stream(runtime: ContainerdRuntime) -> AsyncIterator[list[ContainerExit]]:
    seen: list[ContainerExit] = []
    task = asyncio.create_task(collect_exits(runtime, seen))
    try:
        yield seen
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_exit_stream_reports_killed_and_exited_containers(
    containerd: ContainerdEnv, runtime: ContainerdRuntime, exit_stream: list[ContainerExit]
) -> None:
    sandbox = await runtime.create_sandbox(pod("exits"))
    sleeper = await runtime.start_container(sandbox, config(containerd, "sleeper", command=["sleep", "1000"]))
    info = await wait_state(runtime, sleeper, "running")
    assert info.pid is not None
    os.kill(info.pid, signal.SIGKILL)
    killed = await wait_exit(exit_stream, sleeper)
    assert (killed.exit_code, killed.oom_killed) == (137, False)
    assert killed.exited_at is not None and abs(killed.exited_at - time.time()) < 60

    three = await runtime.start_container(sandbox, config(containerd, "three", command=["sh", "-c", "exit 3"]))
    assert (await wait_exit(exit_stream, three)).exit_code == 3
    # An exec's exit is not the container's exit.
    idle = await runtime.start_container(sandbox, config(containerd, "idle", command=["sleep", "1000"]))
    await wait_state(runtime, idle, "running")
    assert (await (await runtime.exec(idle, ["sh", "-c", "exit 5"], timeout=10)).collect()).exit_code == 5
    four = await runtime.start_container(sandbox, config(containerd, "four", command=["sh", "-c", "exit 4"]))
    assert (await wait_exit(exit_stream, four)).exit_code == 4
    assert all(e.container_id != idle for e in exit_stream)
    info = await runtime.container_info(sleeper)
    assert info is not None and (info.state, info.exit_code, info.oom_killed) == ("exited", 137, False)
    assert info.finished_at is not None


async def test_exits_that_happened_before_the_stream_are_reconciled(containerd: ContainerdEnv,
                                                                    runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("early-exit"))
    cid = await runtime.start_container(sandbox, config(containerd, "quick", command=["sh", "-c", "exit 7"]))
    await wait_state(runtime, cid, "exited")
    stream = runtime.exits()
    try:
        found = await asyncio.wait_for(anext(stream), 15)
    finally:
        await stream.aclose()
    assert (found.container_id, found.exit_code) == (cid, 7)


async def test_exit_stream_and_state_survive_a_containerd_restart(
    restartable_containerd: RestartableContainerd, test_images: dict[str, Path]
) -> None:
    env = restartable_containerd.env
    env.import_image(test_images[BUSYBOX])
    runtime = ContainerdRuntime(**env.runtime_kwargs())
    sandbox = await runtime.create_sandbox(pod("survivor"))
    first = await runtime.start_container(sandbox, config(env, "first", command=["sleep", "1000"]))
    second = await runtime.start_container(sandbox, config(env, "second", command=["sleep", "1000"]))
    first_pid = (await wait_state(runtime, first, "running")).pid
    second_pid = (await wait_state(runtime, second, "running")).pid
    assert first_pid is not None and second_pid is not None

    seen: list[ContainerExit] = []
    task = asyncio.create_task(collect_exits(runtime, seen))
    try:
        os.kill(first_pid, signal.SIGKILL)
        assert (await wait_exit(seen, first)).exit_code == 137

        await asyncio.to_thread(restartable_containerd.stop)
        with pytest.raises(RuntimeUnavailableError):
            await runtime.list_containers()
        # While containerd is down the container dies; its shim still answers for it.
        os.kill(second_pid, signal.SIGKILL)
        outage_info = await wait_state(runtime, second, "exited")
        assert outage_info.exit_code == 137

        await asyncio.to_thread(restartable_containerd.start)
        assert (await wait_exit(seen, second, timeout=30)).exit_code == 137
        assert {info.id: info.state for info in await runtime.list_containers()} == {
            first: "exited", second: "exited"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_memory_limit_oom_kill(containerd: ContainerdEnv, runtime: ContainerdRuntime,
                                     exit_stream: list[ContainerExit]) -> None:
    sandbox = await runtime.create_sandbox(pod("hungry"))
    cid = await runtime.start_container(sandbox, config(
        containerd, "hog", memory_bytes=16 * 1024 * 1024,
        command=["sh", "-c", "echo start; x=a; while true; do x=$x$x$x$x; done"],
    ))
    container_exit = await wait_exit(exit_stream, cid)
    assert (container_exit.exit_code, container_exit.oom_killed) == (137, True)
    info = await runtime.container_info(cid)
    assert info is not None and (info.state, info.exit_code, info.oom_killed) == ("exited", 137, True)
    # A fresh runtime (no events seen) still finds the OOM kill in the cgroup.
    fresh = ContainerdRuntime(**containerd.runtime_kwargs())
    fresh_info = await fresh.container_info(cid)
    assert fresh_info is not None and fresh_info.oom_killed


async def test_stop_with_grace(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("stopper"))
    polite = await runtime.start_container(sandbox, config(
        containerd, "polite",
        command=["sh", "-c", 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done'],
    ))
    stubborn = await runtime.start_container(sandbox, config(
        containerd, "stubborn",
        command=["sh", "-c", 'trap "echo ignoring TERM" TERM; echo ready; while true; do sleep 1 & wait $!; done'],
    ))
    await wait_log(containerd.log_dir / "polite.log", "ready")
    await wait_log(containerd.log_dir / "stubborn.log", "ready")

    # An hour's grace: the stop returns when SIGTERM has ended the container, not when the grace is over.
    await asyncio.wait_for(runtime.stop_container(polite, grace_seconds=3600), 60)
    info = await runtime.container_info(polite)
    assert info is not None and (info.state, info.exit_code) == ("exited", 0)  # its own exit, on SIGTERM
    assert "got TERM" in (containerd.log_dir / "polite.log").read_text()

    started = time.monotonic()
    await runtime.stop_container(stubborn, grace_seconds=1)
    elapsed = time.monotonic() - started
    assert elapsed >= 1  # the grace period was given before the SIGKILL
    # SIGTERM came first and was survived; SIGKILL ended it.
    assert "ignoring TERM" in (containerd.log_dir / "stubborn.log").read_text()
    info = await runtime.container_info(stubborn)
    assert info is not None and (info.state, info.exit_code, info.oom_killed) == ("exited", 137, False)

    await runtime.stop_container(stubborn, grace_seconds=1)  # stopping a stopped container is a no-op


async def test_remove_container_is_idempotent(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("remover"))
    cid = await runtime.start_container(sandbox, config(containerd, "victim", command=["sleep", "1000"]))
    await wait_state(runtime, cid, "running")
    await runtime.remove_container(cid)
    assert await runtime.container_info(cid) is None
    assert containerd.ctr("containers", "ls", "-q").stdout.split() == []
    await runtime.remove_container(cid)
    await runtime.remove_container("no-such-container")


# ----------------------------------------------------------------------------- adoption


async def test_new_runtime_instance_adopts_sandboxes_and_containers(containerd: ContainerdEnv,
                                                                    runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("adopt"))
    web = await runtime.start_container(sandbox, config(containerd, "web", image=HELLO))
    done = await runtime.start_container(sandbox, config(containerd, "done", command=["sh", "-c", "exit 4"]))
    await wait_state(runtime, done, "exited")
    await wait_state(runtime, web, "running")

    restarted = ContainerdRuntime(**containerd.runtime_kwargs())
    sandboxes = await restarted.list_sandboxes()
    assert [(s.id, s.ip, s.netns_path, s.config, s.ready) for s in sandboxes] == [
        (sandbox.id, sandbox.ip, sandbox.netns_path, sandbox.config, True)]
    containers = {info.id: info for info in await restarted.list_containers()}
    assert set(containers) == {web, done}
    assert containers[web].state == "running" and containers[web].pid is not None
    assert containers[web].started_at is not None
    assert containers[web].labels[LABEL_CONTAINER_NAME] == "web"
    assert (containers[done].state, containers[done].exit_code) == ("exited", 4)

    # The adopted sandbox keeps working: new instances get fresh ids, the pod keeps serving.
    again = await restarted.start_container(sandboxes[0], config(containerd, "done", command=["true"]))
    assert again not in (web, done)
    assert await until(lambda: http_get(f"http://{sandbox.ip}:8080/")) == "hello from adopt version v1\n"
    await restarted.remove_sandbox(sandbox.id)
    assert await restarted.list_containers() == []


# ----------------------------------------------------------------------------- exec


async def test_exec(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("exec"))
    cid = await runtime.start_container(sandbox, config(containerd, "target", command=["sleep", "1000"]))
    await wait_state(runtime, cid, "running")

    result = await (await runtime.exec(cid, ["sh", "-c", "echo out; echo err >&2; hostname; exit 7"],
                                       timeout=10)).collect()
    assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (7, b"out\nexec\n", b"err\n", False)

    async def lines() -> AsyncIterator[bytes]:
        yield b"line one\n"
        yield b"line two\n"

    piped = await (await runtime.exec(cid, ["sh", "-c", "cat; echo end"], stdin=lines(), timeout=10)).collect()
    assert (piped.exit_code, piped.stdout) == (0, b"line one\nline two\nend\n")

    async def big() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x" * 10_000

    counted = await (await runtime.exec(cid, ["wc", "-c"], stdin=big(), timeout=10)).collect()
    assert (counted.exit_code, counted.stdout.strip()) == (0, b"300000")

    # Without stdin, a command reading stdin sees EOF instead of hanging.
    empty = await (await runtime.exec(cid, ["cat"], timeout=10)).collect()
    assert (empty.exit_code, empty.stdout, empty.timed_out) == (0, b"", False)

    session = await runtime.exec(cid, ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], timeout=10)
    chunks = [chunk async for chunk in session.chunks()]
    assert b"".join(c.data for c in chunks if c.stream == "stdout") == b"1\n2\n3\n"
    assert await session.wait() == 0

    # An exec that would run for an hour ends when its 1 s timeout cancels it.
    slow = await asyncio.wait_for((await runtime.exec(cid, ["sleep", "3600"], timeout=1)).collect(), 60)
    assert slow.timed_out and slow.exit_code != 0
    ps = containerd.ctr("tasks", "ps", cid).stdout.splitlines()[1:]
    assert len(ps) == 1  # only the main process is left

    with pytest.raises(ExecError, match="executable file not found"):
        await (await runtime.exec(cid, ["no-such-command"], timeout=10)).wait()
    with pytest.raises(ExecError, match="not found"):
        await (await runtime.exec("missing-container", ["true"], timeout=10)).wait()


async def test_concurrent_starts(containerd: ContainerdEnv, runtime: ContainerdRuntime) -> None:
    sandbox = await runtime.create_sandbox(pod("many"))
    ids = await asyncio.gather(*(
        runtime.start_container(sandbox, config(containerd, f"c{i}", command=["sleep", "1000"])) for i in range(6)
    ))
    assert len(set(ids)) == 6
    running = [info for info in await runtime.list_containers() if info.state == "running"]
    assert sorted(info.id for info in running) == sorted(ids)
