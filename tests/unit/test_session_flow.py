"""Flow control of log and exec sessions, piece by piece: the master's relay bounds what a kubelet may queue for
a session (its window), and the kubelet's window makes a session wait for the master's credit."""

from __future__ import annotations

import asyncio

from kybernetes.kubelet.sessions import Window
from kybernetes.master.nodelink.relay import MAX_CHUNK_BYTES, Overrun, Relay
from kybernetes.proto import node_pb2


def _chunk(session_id: str, data: bytes = b"x", *, eof: bool = False) -> node_pb2.LogChunk:
    return node_pb2.LogChunk(request_id=session_id, data=data, eof=eof)


def test_the_relay_queues_a_window_of_chunks_and_ends_a_session_that_sends_more() -> None:
    relay = Relay(window=2)
    session = relay.open("n1", kind="logs")
    relay.deliver("n1", _chunk(session.request_id))
    relay.deliver("n1", _chunk(session.request_id))
    assert session.replies.qsize() == 2
    # One passed on to the client is one credit back: one more fits.
    session.replies.get_nowait()
    credit = session.passed_on()
    assert credit.credit.request_id == session.request_id and credit.credit.chunks == 1
    relay.deliver("n1", _chunk(session.request_id))
    relay.deliver("n1", _chunk(session.request_id, b"", eof=False))  # nothing to pass on: not queued
    assert session.replies.qsize() == 2
    relay.deliver("n1", _chunk(session.request_id))  # a third ahead of credit
    queued = [session.replies.get_nowait() for _ in range(session.replies.qsize())]
    assert isinstance(queued[-1], Overrun) and len(queued) == 3
    relay.deliver("n1", _chunk(session.request_id))  # after the end: ignored
    assert session.replies.empty()


def test_the_relay_takes_the_final_message_beyond_the_window_and_refuses_oversized_chunks() -> None:
    relay = Relay(window=1)
    logs = relay.open("n1", kind="logs")
    relay.deliver("n1", _chunk(logs.request_id))
    relay.deliver("n1", _chunk(logs.request_id, b"", eof=True))
    assert logs.replies.qsize() == 2 and logs.finished
    big = relay.open("n1", kind="logs")
    relay.deliver("n1", _chunk(big.request_id, b"x" * (MAX_CHUNK_BYTES + 1)))
    assert isinstance(big.replies.get_nowait(), Overrun)
    # Another node's answer for the session is not taken.
    other = relay.open("n1", kind="exec")
    relay.deliver("n2", node_pb2.ExecOutput(request_id=other.request_id, data=b"x"))
    assert other.replies.empty()
    assert relay.count("n1", kind="exec") == 1 and relay.count("n1", kind="logs") == 2
    relay.close(other)
    assert relay.count("n1", kind="exec") == 0


async def test_exec_input_waits_for_the_kubelets_credit() -> None:
    relay = Relay(window=1)
    session = relay.open("n1", kind="exec")
    await session.take_input_credit()
    waiting = asyncio.create_task(session.take_input_credit())
    await asyncio.sleep(0)
    assert not waiting.done()
    relay.credit("n2", node_pb2.Credit(request_id=session.request_id, chunks=1))  # not its node
    await asyncio.sleep(0)
    assert not waiting.done()
    relay.credit("n1", node_pb2.Credit(request_id=session.request_id, chunks=5))
    await asyncio.wait_for(waiting, 5)
    assert session.input_credit == 0  # capped at the window, then one taken


async def test_a_kubelet_session_sends_its_window_then_waits_for_credit() -> None:
    window = Window(2)
    held: list[bool] = []
    await window.take(held_back=lambda: held.append(True))
    await window.take(held_back=lambda: held.append(True))
    third = asyncio.create_task(window.take(held_back=lambda: held.append(True)))
    await asyncio.sleep(0)
    assert not third.done()
    window.give(10)
    await asyncio.wait_for(third, 5)
    assert window.available == 1  # never more than the window
    unlimited = Window(0)
    for _ in range(100):
        await unlimited.take(held_back=lambda: held.append(True))
    assert not held
