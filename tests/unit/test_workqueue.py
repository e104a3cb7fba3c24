"""The work queue: dedup while queued, one worker per key, delays, per-key back-off, parallel keys."""

from __future__ import annotations

import asyncio

import pytest

from kybernetes.core.machinery.workqueue import ExponentialBackoff, ShutDown, WorkQueue, run_workers


async def test_a_key_waiting_in_the_queue_is_there_once():
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_while_processing_is_queued_again_only_when_done():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0 and q.is_processing("a")  # not handed to a second worker meanwhile
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_get_waits_for_a_key_and_shutdown_wakes_waiters():
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add("x")
    assert await asyncio.wait_for(waiter, 1) == "x"
    blocked = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(blocked, 1)
    q.add("ignored")
    assert len(q) == 0


async def test_add_after_delays_and_the_earliest_schedule_wins():
    q: WorkQueue[str] = WorkQueue()
    q.add_after("late", 0.30)
    q.add_after("sentinel", 0.60)  # after every schedule of "k", the replaced ones included
    q.add_after("k", 0.50)
    q.add_after("k", 0.10)  # earlier: replaces the 0.5 s schedule
    q.add_after("k", 0.40)  # later: ignored
    q.add_after("early", 0.05)
    assert q.is_waiting("k") and len(q) == 0  # delayed: nothing is queued yet
    order: list[str] = []
    for _ in range(4):
        key = await asyncio.wait_for(q.get(), 2)
        q.done(key)  # at once: a stale schedule firing later would queue "k" again
        order.append(key)
    # "k" came at its earliest schedule (0.1 s: after "early", before "late"), and the replaced 0.5 s and
    # ignored 0.4 s schedules never fired: the sentinel is next, and nothing is left behind it.
    assert order == ["early", "k", "late", "sentinel"]
    assert len(q) == 0 and not q.is_waiting("k")


def test_backoff_is_exponential_per_key_and_forget_resets_it():
    limiter: ExponentialBackoff[str] = ExponentialBackoff(base_delay=0.01, max_delay=0.1)
    assert [limiter.when("a") for _ in range(5)] == [0.01, 0.02, 0.04, 0.08, 0.1]
    assert limiter.when("b") == 0.01
    assert limiter.retries("a") == 5
    limiter.forget("a")
    assert limiter.retries("a") == 0 and limiter.when("a") == 0.01


async def test_workers_retry_failures_with_backoff_and_never_run_a_key_twice_at_once():
    q: WorkQueue[str] = WorkQueue(rate_limiter=ExponentialBackoff(base_delay=0.01, max_delay=0.05))
    running: set[str] = set()
    overlaps: list[str] = []
    calls: dict[str, int] = {}
    finished = asyncio.Event()

    async def handler(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls[key] = calls.get(key, 0) + 1
        try:
            await asyncio.sleep(0.01)
            if key == "flaky" and calls[key] < 3:
                raise RuntimeError("transient")
            if key == "flaky":
                finished.set()
        finally:
            running.discard(key)

    workers = asyncio.create_task(run_workers(q, handler, workers=4, name="test"))
    q.add("flaky")
    for _ in range(20):
        q.add("busy")
        await asyncio.sleep(0.002)
    await asyncio.wait_for(finished.wait(), 5)
    assert overlaps == []
    await asyncio.sleep(0.01)
    assert calls["flaky"] == 3 and q.num_requeues("flaky") == 0
    assert 2 <= calls["busy"] < 20  # re-adds while processing collapse into one more run
    workers.cancel()
    await asyncio.gather(workers, return_exceptions=True)


async def test_different_keys_are_processed_in_parallel():
    q: WorkQueue[int] = WorkQueue()
    concurrent = 0
    peak = 0
    done = 0
    all_done = asyncio.Event()

    async def handler(key: int) -> None:
        nonlocal concurrent, peak, done
        concurrent += 1
        peak = max(peak, concurrent)
        await asyncio.sleep(0.05)
        concurrent -= 1
        done += 1
        if done == 8:
            all_done.set()

    workers = asyncio.create_task(run_workers(q, handler, workers=8))
    for key in range(8):
        q.add(key)
    await asyncio.wait_for(all_done.wait(), 2)
    assert peak == 8
    workers.cancel()
    await asyncio.gather(workers, return_exceptions=True)
