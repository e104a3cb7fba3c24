"""The kubelet's one long-lived stream to the master (NodeLink.Connect), kept open for good.

Per connection: send Register (built fresh, so capacity and running pods are
current), wait for Registered, then heartbeat every interval while a reader
hands every MasterMessage to the kubelet's handler and a writer drains the
connection's outbound queue. When the stream breaks the kubelet keeps running
its pods (static stability) and reconnects after a jittered exponential
back-off capped at a few seconds; the master's PodSync on the new stream
reconciles whatever changed meanwhile.

Outbound messages: `send()` queues on the live connection and returns False
when there is none (callers that must not lose state, like the status
reporter, resend everything after reconnecting). Events are buffered across
disconnections in a bounded queue (oldest dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from kybernetes.core.log import get_logger
from kybernetes.core.machinery.backoff import retry_delay
from kybernetes.proto import node_pb2, node_pb2_grpc

# Events kept while the master is away.
EVENT_BUFFER = 1000
# A connection that stayed up this long resets the reconnect back-off.
STABLE_AFTER = 10.0


class LinkClosed(Exception):  # noqa: N818 - a state, not an error
    """The stream ended (master gone, or it refused us)."""


class MasterLink:
    """Connects, registers, heartbeats and dispatches; reconnects forever (run() never returns)."""

    def __init__(self, *, channel: grpc.aio.Channel, node_name: str,
                 register: Callable[[], Awaitable[node_pb2.Register]],
                 on_registered: Callable[[node_pb2.Registered], Awaitable[None]],
                 on_message: Callable[[node_pb2.MasterMessage], None],
                 on_disconnected: Callable[[], None],
                 heartbeat_interval: float = 1.0, reconnect_min: float = 0.1, reconnect_max: float = 3.0) -> None:
        self.stub = node_pb2_grpc.NodeLinkStub(channel)
        self.node_name = node_name
        self.log = get_logger("kubelet", node=node_name)
        self._register = register
        self._on_registered = on_registered
        self._on_message = on_message
        self._on_disconnected = on_disconnected
        self.heartbeat_interval = heartbeat_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._outbox: asyncio.Queue[node_pb2.NodeMessage] | None = None
        self._events: deque[node_pb2.NodeMessage] = deque(maxlen=EVENT_BUFFER)
        self.connected = asyncio.Event()
        self.connections = 0  # successful registrations so far (tests and logs)
        self._call: Any = None
        self._rotating = ""  # why the current stream is being ended on purpose (reconnect at once)

    def replace_channel(self, channel: grpc.aio.Channel) -> None:
        """Reconnect through `channel` now (a renewed certificate): the current stream is ended at once and
        the next one opens on the new channel, without a back-off. The pods keep running throughout."""
        self.stub = node_pb2_grpc.NodeLinkStub(channel)
        self.reconnect(reason="new certificate")

    def reconnect(self, *, reason: str) -> None:
        """End the current stream on purpose (saying Goodbye) and register again at once, without a back-off: the
        kubelet's view of the master is rebuilt from a fresh Registered and PodSync."""
        if self._call is not None:
            self._rotating = reason
            self._call.cancel()

    # --------------------------------------------------------------- sending

    def send(self, message: node_pb2.NodeMessage) -> bool:
        """Queue a message on the live connection; False when there is none (the message is dropped)."""
        if self._outbox is None:
            return False
        self._outbox.put_nowait(message)
        return True

    def send_event(self, message: node_pb2.NodeMessage) -> None:
        """Events survive a disconnection (bounded)."""
        if not self.send(message):
            self._events.append(message)

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        attempt = 0
        while True:
            began = time.monotonic()
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self._rotating or (task is not None and task.cancelling()):
                    raise
                self.log.info("reconnecting", reason=self._rotating)
                self._rotating = ""
                attempt = 0
                continue
            except grpc.aio.AioRpcError as err:
                self.log.warning("master link failed", code=err.code().name, error=err.details())
            except LinkClosed as err:
                self.log.warning("master link closed", error=str(err))
            except Exception:
                self.log.exception("master link crashed")
            if time.monotonic() - began > STABLE_AFTER:
                attempt = 0
            attempt += 1
            await asyncio.sleep(retry_delay(attempt - 1, base=self.reconnect_min, cap=self.reconnect_max))

    async def _connect_once(self) -> None:
        call = self.stub.Connect()
        self._call = call
        outbox: asyncio.Queue[node_pb2.NodeMessage] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        try:
            await call.write(node_pb2.NodeMessage(register=await self._register()))
            first = await call.read()
            if first is grpc.aio.EOF:
                raise LinkClosed("the master closed the stream before Registered")
            if first.WhichOneof("message") != "registered":
                raise LinkClosed(f"expected Registered, got {first.WhichOneof('message')}")
            self._outbox = outbox
            while self._events:
                outbox.put_nowait(self._events.popleft())
            await self._on_registered(first.registered)
            self.connections += 1
            self.connected.set()
            self.log.info("registered with the master", pod_cidr=first.registered.node.spec.pod_cidr,
                          connection=self.connections)
            tasks = [asyncio.create_task(self._write(call, outbox)), asyncio.create_task(self._heartbeat(outbox))]
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    raise LinkClosed("the master ended the stream")
                self._on_message(message)
        except asyncio.CancelledError:
            # We stop (or reconnect with a new certificate): say so, so that the master gives the Node the grace
            # period instead of judging it lost at once.
            for task in tasks:
                task.cancel()
            reason = self._rotating or "kubelet stopping"
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError,
                                     asyncio.CancelledError):
                await asyncio.wait_for(call.write(node_pb2.NodeMessage(goodbye=node_pb2.Goodbye(reason=reason))),
                                       0.5)
            raise
        finally:
            if self._outbox is outbox:
                self._outbox = None
                # Undelivered events go back to the buffer; everything else is resent by its owner.
                while not outbox.empty():
                    message = outbox.get_nowait()
                    if message.WhichOneof("message") == "event":
                        self._events.append(message)
            was_connected = self.connected.is_set()
            self.connected.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()
            if self._call is call:
                self._call = None
            if was_connected:
                self._on_disconnected()

    async def _write(self, call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[node_pb2.NodeMessage]) -> None:
        while True:
            message = await outbox.get()
            try:
                await call.write(message)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as err:
                # The reader sees the broken stream and ends the connection; keep the message for the buffer.
                outbox.put_nowait(message)
                self.log.debug("write failed", error=str(err))
                return

    async def _heartbeat(self, outbox: asyncio.Queue[node_pb2.NodeMessage]) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            sequence += 1
            outbox.put_nowait(node_pb2.NodeMessage(heartbeat=node_pb2.Heartbeat(sequence=sequence)))
