"""gRPC settings shared by every side: channel options and the codes after which a call may be retried."""

from __future__ import annotations

import grpc

# No min_reconnect_backoff here: gRPC also uses it as the connect timeout, and a short one makes a
# new channel to a busy master fail with UNAVAILABLE before the handshake completes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]

# A watch or list that ended with one of these is resumed (after a back-off), not given up.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                             grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.ABORTED})
