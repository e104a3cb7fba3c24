"""Credentials files in kubeconfig's shape: clusters (server, CA), users (client certificate and key),
contexts (a cluster and a user), and the current context.

    apiVersion: v1
    kind: Config
    clusters:
    - name: kybernetes
      cluster: {server: 127.0.0.1:6443, certificate-authority-data: <base64 PEM>}
    users:
    - name: admin
      user: {client-certificate-data: <base64 PEM>, client-key-data: <base64 PEM>}
    contexts:
    - name: admin@kybernetes
      context: {cluster: kybernetes, user: admin, namespace: default}
    current-context: admin@kybernetes

`server` is the master's gRPC address, HOST:PORT (an `https://` prefix is accepted and dropped). The `-data`
fields hold base64 PEM; the `certificate-authority`, `client-certificate` and `client-key` fields name files
instead, relative to the config file. The master writes an admin config at its first start (0600, like k3s'
k3s.yaml); kybctl and `Client` read `--kubeconfig`, else $KYBCONFIG, else ~/.kyb/config.

Errors are `KubeConfigError`, one line naming the file and the field.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kybernetes.core.identity.credentials import Credentials, write_private

ENV = "KYBCONFIG"
DEFAULT_PATH = Path("~/.kyb/config")


class KubeConfigError(Exception):
    """A credentials file that is missing, unreadable or incomplete."""


def default_path() -> Path:
    """$KYBCONFIG, else ~/.kyb/config."""
    return Path(os.environ.get(ENV) or DEFAULT_PATH).expanduser()


@dataclass(frozen=True, slots=True)
class Target:
    """What a context resolves to: where the master is, with what credentials, in which namespace."""

    server: str
    credentials: Credentials
    namespace: str = ""
    context: str = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def admin_config(*, server: str, credentials: Credentials, cluster: str = "kybernetes",
                 user: str = "admin") -> dict[str, Any]:
    """A whole config with one context, `<user>@<cluster>`."""
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": _b64(credentials.ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(credentials.certificate),
                                          "client-key-data": _b64(credentials.key)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
    }


def save(path: Path, config: dict[str, Any]) -> None:
    """Write (0600, atomically; the folder is made 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KubeConfigError(f"{path}: no such credentials file (the master writes one at its first start; "
                              f"give --kubeconfig or set ${ENV})") from None
    except OSError as err:
        raise KubeConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise KubeConfigError(f"{path}: not YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise KubeConfigError(f"{path}: must be a mapping (apiVersion, clusters, users, contexts)")
    for section in ("clusters", "users", "contexts"):
        config.setdefault(section, [])
        if not isinstance(config[section], list):
            raise KubeConfigError(f"{path}: {section}: must be a list")
    return config


def _named(config: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for entry in config[section]:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1])
            if not isinstance(body, dict):
                raise KubeConfigError(f'{path}: {section} "{name}": missing its "{section[:-1]}" mapping')
            return body
    raise KubeConfigError(f'{path}: {section[:-1]} "{name}" not found')


def _pem(body: dict[str, Any], field: str, path: Path, where: str) -> bytes:
    data = body.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except ValueError:
            raise KubeConfigError(f"{path}: {where}: {field}-data: not base64") from None
    name = body.get(field)
    if name:
        file = (path.parent / str(name)).expanduser()
        try:
            return file.read_bytes()
        except OSError as err:
            raise KubeConfigError(f"{path}: {where}: {field}: {file}: {err.strerror}") from None
    raise KubeConfigError(f"{path}: {where}: {field}-data (or {field}): Required value")


def resolve(path: Path, *, context: str = "") -> Target:
    """The server, credentials and namespace of `context` (default: the current context)."""
    config = load(path)
    name = context or str(config.get("current-context") or "")
    if not name:
        raise KubeConfigError(f"{path}: current-context is not set (kybctl config use-context NAME)")
    ctx = _named(config, "contexts", name, path)
    cluster_name, user_name = str(ctx.get("cluster") or ""), str(ctx.get("user") or "")
    if not cluster_name or not user_name:
        raise KubeConfigError(f'{path}: context "{name}": cluster and user: Required value')
    cluster = _named(config, "clusters", cluster_name, path)
    user = _named(config, "users", user_name, path)
    server = str(cluster.get("server") or "").removeprefix("https://").rstrip("/")
    if not server:
        raise KubeConfigError(f'{path}: cluster "{cluster_name}": server: Required value')
    credentials = Credentials(ca=_pem(cluster, "certificate-authority", path, f'cluster "{cluster_name}"'),
                              certificate=_pem(user, "client-certificate", path, f'user "{user_name}"'),
                              key=_pem(user, "client-key", path, f'user "{user_name}"'))
    return Target(server=server, credentials=credentials, namespace=str(ctx.get("namespace") or ""), context=name)
