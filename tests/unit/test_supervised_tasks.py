"""Background work is never lost: a failed task is logged with its traceback and its owner hears of it; the
kubelet's log and exec sessions end with an error when they hit a bug (instead of leaving kybctl hanging), and
the pod manager's helper loops are restarted after a crash."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import structlog

from harness.waiting import until
from kybernetes.core.machinery.tasks import TaskSet
from kybernetes.kubelet.logs import LogStore
from kybernetes.kubelet.pods.manager import PodManager
from kybernetes.kubelet.pods.worker import WorkerContext
from kybernetes.kubelet.sessions import Sessions
from kybernetes.proto import node_pb2


async def test_a_failed_background_task_is_logged_with_its_traceback_and_its_owner_is_told():
    failures: list[tuple[str, BaseException]] = []
    tasks = TaskSet(name="owner", on_failure=lambda what, err: failures.append((what, err)))

    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    async def fine() -> None:
        await asyncio.sleep(0)

    with structlog.testing.capture_logs() as logs:
        tasks.spawn(broken(), what="the broken work", object="pods/default/web")
        tasks.spawn(fine(), what="fine work")
        gc.collect()  # the set holds the tasks: nothing is collected mid-flight
        await tasks.join()
    assert [(what, type(err)) for what, err in failures] == [("the broken work", KeyError)]
    assert tasks.failures == 1 and len(tasks) == 0
    [entry] = [e for e in logs if e["event"] == "background task failed"]
    assert entry["work"] == "the broken work" and entry["object"] == "pods/default/web"
    assert isinstance(entry["exc_info"], KeyError)  # the renderer prints its traceback


class _BrokenManager:
    """A pod manager whose lookup hits a bug."""

    ctx = SimpleNamespace(node_name="n1")

    def find(self, namespace: str, name: str) -> Any:
        raise RuntimeError("a bug in the lookup")


async def test_log_and_exec_sessions_that_hit_a_bug_end_with_an_error(tmp_path: Path):
    sent: list[node_pb2.NodeMessage] = []

    def send(message: node_pb2.NodeMessage) -> bool:
        sent.append(message)
        return True

    sessions = Sessions(manager=cast(Any, _BrokenManager()), logs=LogStore(tmp_path), send=send)
    sessions.start_logs(node_pb2.LogRequest(request_id="r1", namespace="default", pod="web"))
    sessions.start_exec(node_pb2.ExecStart(request_id="r2", namespace="default", pod="web", command=["sh"]))
    chunk = await until(lambda: next((m.log_chunk for m in sent if m.HasField("log_chunk")), None), timeout=5,
                        message="the log session's last chunk")
    assert chunk.eof and "internal error" in chunk.error
    out = await until(lambda: next((m.exec_output for m in sent if m.HasField("exec_output")), None), timeout=5,
                      message="the exec session's end")
    assert out.exited and out.exit_code == 1 and "internal error" in out.error


class _Reporter:
    """A status reporter whose drift check crashes the first time."""

    def __init__(self) -> None:
        self.calls = 0

    def resend_drifted(self, *, settle: float) -> list[str]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the drift check")
        return []


class _Runtime:
    async def exits(self) -> Any:
        await asyncio.Event().wait()
        yield  # pragma: no cover

    async def list_containers(self) -> list[Any]:
        return []


async def test_the_pod_managers_relist_loop_is_restarted_after_a_crash(tmp_path: Path):
    reporter = _Reporter()
    ctx = SimpleNamespace(node_name="n1", runtime=_Runtime(), reporter=reporter)
    manager = PodManager(ctx=cast(WorkerContext, ctx), relist_interval=0.01)
    manager.synced.set()
    running = asyncio.create_task(manager.run())
    try:
        await until(lambda: reporter.calls >= 3, timeout=10, message="the relist loop running again")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
