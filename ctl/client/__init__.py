"""The Kybernetes Python client library (import name `kybernetes.ctl.client`).

    from kybernetes.ctl.client import Client

    async with Client("127.0.0.1:6443") as kyb:
        pods = await kyb.list("pods", namespace="default", label_selector="app=web")

`client` holds `Client`, the typed asyncio calls of the object API; `rollout` the logic kubectl runs on the
client side (revision history and rollback). Errors and result types come from `kybernetes.core.api` and
are re-exported here, so a program needs this one import. kybctl (`kybernetes.ctl.cli`) is one user of
this library; the library never imports the CLI.
"""

from kybernetes.core.api.client import DeleteResult, ListResult, ObjectClient, WatchEvent, resilient_watch
from kybernetes.core.api.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    ExpiredError,
    InvalidError,
    NotFoundError,
    UnavailableError,
    error_from_rpc,
)
from kybernetes.ctl.client.client import Client

__all__ = [
    "AlreadyExistsError", "ApiError", "Client", "ConflictError", "DeleteResult", "ExpiredError", "InvalidError",
    "ListResult", "NotFoundError", "ObjectClient", "UnavailableError", "WatchEvent", "error_from_rpc",
    "resilient_watch",
]
