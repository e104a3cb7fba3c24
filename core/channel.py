"""gRPC settings shared by every side: channel options, keepalive, several master addresses in one channel,
and the codes after which a call may be retried.

Keepalive on both sides notices a dead peer (a power cut: no TCP close) within 2 s: pings every second,
a second to answer. gRPC clients send none by default, and servers refuse pings more frequent than every
5 minutes unless told otherwise (`SERVER_KEEPALIVE_OPTIONS`).

Several masters: `channel_target("10.0.0.1:6443,10.0.0.2:6443")` makes one gRPC target of every address with
pick_first, which connects to the first that answers and moves to the next when it dies. The masters'
serving certificates all carry the DNS name `MASTER_NAME`, which the channel then checks instead of one
address.
"""

from __future__ import annotations

import ipaddress
import socket

import grpc

MASTER_NAME = "kybernetes"

# No min_reconnect_backoff here: gRPC also uses it as the connect timeout, and a short one makes a
# new channel to a busy master fail with UNAVAILABLE before the handshake completes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 1_000),
    ("grpc.keepalive_timeout_ms", 1_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

# A kubelet notices a dead master (or a cut link) within 1 s, before that master notices it (1-2 s): it is on
# another master by the time the cut-off one reports its stream broken (master.nodelink.liveness: the
# reconnect window).
KUBELET_CHANNEL_OPTIONS = [
    *[(k, v) for k, v in CHANNEL_OPTIONS if k not in ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms")],
    ("grpc.keepalive_time_ms", 500),
    ("grpc.keepalive_timeout_ms", 500),
]

# What every master's server accepts and does: pings as often as every 0.5 s from clients, and its own every
# second to each of them (a kubelet that vanished is noticed in 2 s too).
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 1_000),
    ("grpc.keepalive_timeout_ms", 1_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),
]


def channel_target(servers: str) -> tuple[str, list[tuple[str, object]]]:
    """The gRPC target of one or several comma-separated HOST:PORT master addresses, and the channel options
    that go with several (pick_first, and the masters' common certificate name)."""
    addresses = [a.strip() for a in servers.split(",") if a.strip()]
    if len(addresses) <= 1:
        return servers.strip(), []
    literals = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][4][0])
        literals.append(f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")
    family = "ipv6" if all(lit.startswith("[") for lit in literals) else "ipv4"
    return f"{family}:{','.join(literals)}", [("grpc.lb_policy_name", "pick_first"),
                                              ("grpc.ssl_target_name_override", MASTER_NAME)]

# A watch or list that ended with one of these is resumed (after a back-off), not given up.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                             grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.ABORTED})
