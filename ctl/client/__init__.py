"""The Kybernetes Python client library (import name `kybernetes.ctl.client`).

    from kybernetes.ctl.client import Client

    async with Client() as kyb:  # the current context of $KYBCONFIG or ~/.kyb/config
        pods = await kyb.list("pods", namespace="default", label_selector="app=web")

`client` holds `Client`, the typed asyncio calls of the object API (mutual TLS, credentials from a kubeconfig
context); `identity` the calls about identity (join tokens, certificates, whoami, can-i); `rollout` the
logic kubectl runs on the client side (revision history and rollback). Errors and result types come from
`kybernetes.core.api` and are re-exported here, so a program needs this one import. kybctl
(`kybernetes.ctl.cli`) is one user of this library; the library never imports the CLI.
"""

from kybernetes.core.api.client import DeleteResult, ListResult, ObjectClient, WatchEvent, resilient_watch
from kybernetes.core.api.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    error_from_rpc,
)
from kybernetes.core.identity.credentials import Credentials
from kybernetes.core.identity.kubeconfig import KubeConfigError
from kybernetes.ctl.client.client import Client

__all__ = [
    "AlreadyExistsError", "ApiError", "Client", "ConflictError", "Credentials", "DeleteResult", "ExpiredError",
    "ForbiddenError", "InvalidError", "KubeConfigError", "ListResult", "NotFoundError", "ObjectClient",
    "TooManyRequestsError", "UnauthorizedError", "UnavailableError", "WatchEvent", "error_from_rpc", "resilient_watch",
]
