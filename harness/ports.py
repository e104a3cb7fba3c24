"""Free loopback ports for the private servers a test or a benchmark starts."""

from __future__ import annotations

from kybernetes.master.store.embedded import free_ports, port_is_free


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it back, release it)."""
    return free_ports(1)[0]


def free_port_pair() -> int:
    """A port P such that P and P + 1 were both free on 127.0.0.1 a moment ago (a master's API port and its
    bootstrap port, where `kyb-master --join` looks for it)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


__all__ = ["free_port", "free_port_pair", "free_ports"]
