"""The NodeLink gRPC service: one bidirectional stream per kubelet.

The first message must be Register. The master answers Registered (with the
Node as stored, podCIDR included), then the pods bound to the node, then every
change. Everything the kubelet sends afterwards is dispatched: heartbeats to
the liveness table (no etcd write), pod status to the coalescing writer,
terminations to the final delete, events to the recorder, log and exec output
and exec input credit to the relay (master.nodelink.relay: flow control per
session). When the stream ends, the node is marked lost at once.

Back-pressure: the handler writes one message at a time (`context.write`)
from the connection's bounded mailbox (master.nodelink.connections), so what
a slow kubelet has not read waits there, coalesced, and nowhere else. A
kubelet that stops reading is disconnected with RESOURCE_EXHAUSTED: when its
pending ordered messages go over `max_pending_bytes`, or when one write makes
no progress for `send_timeout` (HTTP/2 flow control holds it: the kubelet
reads nothing). It is then treated as a broken stream. gRPC can deliver that
status only behind the messages already in flight, so the kubelet sees it
when it reads again; it then reconnects and is sent its full state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ApiError, NotFoundError
from kybernetes.core.identity.certs import node_identity
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.core.machinery.tasks import TaskSet
from kybernetes.master.auth.authn import caller
from kybernetes.master.auth.node import may_register, may_report_pod
from kybernetes.master.nodelink.connections import DEFAULT_MAX_PENDING_BYTES, Connections, NodeConnection
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.master.nodelink.registration import Registrar
from kybernetes.master.nodelink.relay import Relay
from kybernetes.master.nodelink.router import PodRouter
from kybernetes.master.nodelink.services import ServiceRouter
from kybernetes.master.nodelink.status import PodStatusWriter
from kybernetes.proto import node_pb2, node_pb2_grpc

log = get_logger("nodelink")


class NodeLinkServicer(node_pb2_grpc.NodeLinkServicer):
    """The master's end of every kubelet's stream."""

    def __init__(self, *, client: ObjectClient, connections: Connections, liveness: NodeLiveness, registrar: Registrar,
                 router: PodRouter, service_router: ServiceRouter, status_writer: PodStatusWriter, relay: Relay,
                 events: Any, heartbeat_interval: float = 1.0, heartbeat_refresh: float = 60.0,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES, send_timeout: float = 30.0) -> None:
        self.client = client
        self.connections = connections
        self.liveness = liveness
        self.registrar = registrar
        self.router = router
        self.service_router = service_router
        self.status_writer = status_writer
        self.relay = relay
        self.events = events
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_refresh = heartbeat_refresh
        self.max_pending_bytes = max_pending_bytes
        self.send_timeout = send_timeout
        # One-shot work started from the streams (final deletes, Events, heartbeat refreshes): kept and
        # logged with its traceback if it fails; it outlives the stream that started it.
        self.tasks = TaskSet(name="nodelink")

    async def Connect(self, request_iterator: AsyncIterator[node_pb2.NodeMessage],  # noqa: N802
                      context: grpc.aio.ServicerContext) -> None:
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "register" or not first.register.node.metadata.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register: Required value: the first message "
                                                                  "must be Register with node.metadata.name")
        reg = first.register
        name = reg.node.metadata.name
        identity = caller()
        decision = may_register(identity, name)
        if not decision.allowed:
            # Refused before anything is touched: the real node's stream, liveness and object stay as they are.
            log.warning("registration refused", object=obj_ref("nodes", name), user=identity.user,
                        reason=decision.reason)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.reason)
        self.liveness.registering(name)
        try:
            node = await self.registrar.register(reg.node)
        except ApiError as err:
            self.liveness.registration_failed(name)
            await context.abort(err.code, f"registration of node {name} failed: {err.message}")
        except BaseException:
            self.liveness.registration_failed(name)
            raise
        conn = NodeConnection(node=name, watch_nodes=reg.watch_nodes, watch_services=reg.watch_services,
                              max_pending_bytes=self.max_pending_bytes)
        old = self.connections.add(conn)
        if old is not None:
            old.close()
        # From here on this stream counts as open in the liveness table, and its end must count it out, whether
        # it is still the Node's current stream or was replaced by a newer one (a replaced stream that did not
        # would leave the count one too high, and the next real break would not make the Node lost).
        self.liveness.connected(name)
        reader = asyncio.create_task(self._read(conn, request_iterator), name=f"nodelink-read:{name}")
        attach: asyncio.Future[Any] | None = asyncio.ensure_future(
            asyncio.gather(self.router.attach(conn), self.service_router.attach(conn)))
        get: asyncio.Task[node_pb2.MasterMessage | None] | None = None
        failed = False
        stalled = False
        try:
            conn.send(node_pb2.MasterMessage(registered=node_pb2.Registered(
                node=node, heartbeat_interval_ms=int(self.heartbeat_interval * 1000))))
            log.info("node connected", object=obj_ref("nodes", name))
            while True:
                if get is None:
                    get = asyncio.create_task(conn.next())
                waiting: set[asyncio.Future[Any]] = {get, reader}
                if attach is not None:
                    waiting.add(attach)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if attach is not None and attach in done:
                    finished, attach = attach, None
                    if finished.exception() is not None:  # our bug: the stream cannot be served
                        log.error("node sync failed", object=obj_ref("nodes", name), exc_info=finished.exception())
                        failed = True
                        break
                if get not in done:
                    if reader in done:
                        break
                    continue
                message = get.result()
                get = None
                if message is None:
                    break
                try:
                    # HTTP/2 flow control holds a write the kubelet does not read; the write itself is not undone.
                    await asyncio.wait_for(context.write(message), self.send_timeout)
                except TimeoutError:
                    stalled = True
                    break
        finally:
            # The kubelet ended its side of the stream itself (it stops or restarts): not a lost Node.
            graceful = reader.done() and not reader.cancelled() and reader.result() is True
            reader.cancel()
            if get is not None:
                get.cancel()
            if attach is not None:
                attach.cancel()
            exhausted = stalled or conn.overflowed
            conn.close()
            current = self.connections.remove(conn)
            self.liveness.disconnected(name, graceful=graceful and not exhausted)
            if current:
                self.relay.node_gone(name)
                log.warning("node disconnected", object=obj_ref("nodes", name), graceful=graceful)
            else:
                log.info("replaced node stream closed", object=obj_ref("nodes", name))
        if failed:
            await context.abort(grpc.StatusCode.INTERNAL, f"node link of {name}: sending the node its state failed")
        if exhausted:
            reason = (f"a message waited more than {self.send_timeout:g}s to be read" if stalled else
                      f"more than {self.max_pending_bytes} bytes of messages waited to be read")
            log.warning("node link closed: the kubelet does not keep up", object=obj_ref("nodes", name),
                        reason=reason)
            # Sent behind what is already in flight: the kubelet sees it when it reads again (or never, if it
            # goes away first; its connection's keepalive then ends the call).
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"node link of {name} closed: the kubelet does not keep up ({reason}); "
                                "reconnect to be sent the full state again")

    async def _read(self, conn: NodeConnection, messages: AsyncIterator[node_pb2.NodeMessage]) -> bool:
        """Handle the kubelet's messages; True when it said Goodbye (it closes the stream on purpose), False when
        the stream broke."""
        name = conn.node
        refreshed = time.monotonic()
        try:
            async for msg in messages:
                # A Node marked Unknown while its stream stayed open is Ready again at its next message,
                # not at the next coarse refresh.
                recovered = self.liveness.heartbeat(name)
                kind = msg.WhichOneof("message")
                if recovered or (kind == "heartbeat" and time.monotonic() - refreshed > self.heartbeat_refresh):
                    refreshed = time.monotonic()
                    self.tasks.spawn(self.registrar.refresh_heartbeat(name), what="heartbeat refresh",
                                     object=obj_ref("nodes", name))
                if kind == "heartbeat":
                    pass
                elif kind == "pod_status":
                    self.status_writer.submit(msg.pod_status, node=name)
                elif kind == "pod_terminated":
                    done = msg.pod_terminated
                    self.tasks.spawn(self._finish_deletion(done, node=name), what="final pod delete",
                                     object=obj_ref("pods", done.name, done.namespace))
                elif kind == "event":
                    # NodeRestriction: what a kubelet reports comes from its own Node, whatever it claims.
                    msg.event.event.source.host = name
                    self.tasks.spawn(self.events.record_event(msg.event.event), what="event from kubelet",
                                     object=obj_ref("nodes", name))
                elif kind == "log_chunk":
                    self.relay.deliver(name, msg.log_chunk)
                elif kind == "exec_output":
                    self.relay.deliver(name, msg.exec_output)
                elif kind == "credit":
                    self.relay.credit(name, msg.credit)
                elif kind == "goodbye":
                    log.info("node says goodbye", object=obj_ref("nodes", name), reason=msg.goodbye.reason)
                    return True
            return False
        except grpc.RpcError:
            return False
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("node stream read failed", object=obj_ref("nodes", name))
            return False

    async def _finish_deletion(self, done: node_pb2.PodTerminated, *, node: str) -> None:
        """The kubelet confirms a terminating pod's containers are gone: remove the object (its own pods only)."""
        try:
            pod = await self.client.get("pods", done.name, namespace=done.namespace)
            if pod.metadata.uid != done.uid or not pod.metadata.HasField("deletion_timestamp"):
                return
            decision = may_report_pod(node_identity(node), pod=done.name, pod_node_name=pod.spec.node_name)
            if not decision.allowed:
                log.warning("termination report refused", object=obj_ref("pods", done.name, done.namespace),
                            node=node, reason=decision.reason)
                return
            await self.client.delete("pods", done.name, namespace=done.namespace,
                                     resource_version=pod.metadata.resource_version, grace_period_seconds=0)
        except NotFoundError:
            return
        except ApiError as err:
            log.warning("final pod delete failed", object=obj_ref("pods", done.name, done.namespace),
                        error=err.message)
