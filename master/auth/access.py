"""The master's one authorization point: RBAC over the roles and bindings it currently knows.

Servicers call `require(verb=..., resource=..., namespace=..., name=...)` with the exact request; the caller
is the call's verified identity (master.auth.authn.caller). A refusal is logged with the identity and raised
as ForbiddenError (PERMISSION_DENIED) in kubectl's words. `review` answers the same question without
raising, for `kybctl auth can-i`, so what can-i says and what the server does can never differ.

The roles and bindings start as the defaults (cluster-admin, edit, view; `system:masters` bypasses) and are
replaced whenever the RBAC objects change (`replace`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kybernetes.core.api.errors import ForbiddenError
from kybernetes.core.identity.certs import Identity
from kybernetes.core.log import get_logger
from kybernetes.master.auth.authn import caller
from kybernetes.master.auth.rbac import Authorizer, Binding, Decision, Request, Role

log = get_logger("auth")


class AccessControl:
    """Holds the current Authorizer; answers and enforces."""

    def __init__(self) -> None:
        self.authorizer = Authorizer()

    def replace(self, *, roles: Iterable[Role], bindings: Iterable[Binding]) -> None:
        self.authorizer = Authorizer(roles=tuple(roles), bindings=tuple(bindings))

    def review(self, identity: Identity, *, verb: str, resource: str, namespace: str = "",
               name: str = "") -> Decision:
        return self.authorizer.authorize(Request(identity=identity, verb=verb, resource=resource,
                                                 namespace=namespace, name=name))

    def require(self, *, verb: str, resource: str, namespace: str = "", name: str = "",
                identity: Identity | None = None) -> Identity:
        """The caller, when RBAC allows the request; ForbiddenError otherwise."""
        who = identity or caller()
        decision = self.review(who, verb=verb, resource=resource, namespace=namespace, name=name)
        if not decision.allowed:
            log.warning("forbidden", user=who.user, groups=",".join(who.groups), verb=verb, resource=resource,
                        namespace=namespace, name=name)
            raise ForbiddenError(decision.reason)
        return who
