"""Free loopback ports for the private servers a test or a benchmark starts."""

from __future__ import annotations

from kybernetes.master.store.embedded import free_ports


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it back, release it)."""
    return free_ports(1)[0]


__all__ = ["free_port", "free_ports"]
