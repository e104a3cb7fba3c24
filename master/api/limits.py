"""How many watches one client identity may hold open on this master (`--max-watches-per-user`).

HTTP/2 bounds the streams of one connection (`--http2-max-streams-per-connection`, the server's
SETTINGS_MAX_CONCURRENT_STREAMS), but a stream over that bound is not refused: the client queues it until a
slot frees, and a client opens as many connections as it likes. So the watches of one identity are counted
here, across all its connections, and one more than the limit is refused at once with RESOURCE_EXHAUSTED
(Kubernetes' 429 TooManyRequests) naming the limit and its flag.

Who is counted: every identity except the `system:masters` group, which Kubernetes' API Priority and Fairness
also exempts from every limit: the masters' own identity (the calls one master relays to another) and the
cluster admin's. Kubelets are counted like users, but the node link is not a watch: a user at its limit, or
many users at theirs, never delay a kubelet's stream (its own connection) nor the control loops (they run in
the master and watch in-process, not over gRPC). The count is per user name (the certificate's CN), whatever
groups a certificate adds, and per master: with several masters each counts its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kybernetes.core.api.errors import TooManyRequestsError
from kybernetes.core.identity.certs import MASTERS_GROUP, Identity
from kybernetes.core.log import get_logger

log = get_logger("api")

# An informer-based controller holds one watch per kind it follows (kube-controller-manager follows about 40);
# `kybctl get -w` holds one. 100 lets a user run a few such programs under one identity, and bounds what one
# identity costs the master (each watch is an etcd watch and a task here).
DEFAULT_MAX_WATCHES_PER_USER = 100
# Above the watches one identity may hold, so that a client at its watch limit still has free streams on the
# same connection for its other calls; the masters relay every log and exec session to one another over one
# connection per pair of masters.
DEFAULT_MAX_STREAMS_PER_CONNECTION = 1000


def exempt(identity: Identity) -> bool:
    """Whether an identity's watches are not counted (system:masters)."""
    return MASTERS_GROUP in identity.groups


class WatchLimit:
    """Open watches per user name; `hold` takes one for the duration of a watch or refuses it."""

    def __init__(self, *, max_per_user: int = DEFAULT_MAX_WATCHES_PER_USER) -> None:
        self.max_per_user = max_per_user
        self._open: dict[str, int] = {}

    def open(self, user: str) -> int:
        """Watches `user` holds now (counted ones only)."""
        return self._open.get(user, 0)

    @contextmanager
    def hold(self, identity: Identity, *, resource: str) -> Iterator[None]:
        """One watch of `identity` while the block runs; TooManyRequestsError if it already holds the maximum."""
        if exempt(identity):
            yield
            return
        user = identity.user
        held = self._open.get(user, 0)
        if held >= self.max_per_user:
            log.warning("watch refused: too many watches", user=user, resource=resource, open=held,
                        limit=self.max_per_user)
            raise TooManyRequestsError(
                f'too many watches: user "{user}" already has {held} watches open on this master, the most '
                f"--max-watches-per-user allows ({self.max_per_user}); close one and retry")
        self._open[user] = held + 1
        try:
            yield
        finally:
            left = self._open[user] - 1
            if left:
                self._open[user] = left
            else:
                del self._open[user]
