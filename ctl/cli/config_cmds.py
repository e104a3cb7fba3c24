"""`kybctl config`: read and edit the credentials file, as `kubectl config` does.

- `view [--raw] [--minify]`: the file as YAML; certificate and key data read `DATA+OMITTED` / `REDACTED`
  unless --raw;
- `get-contexts [NAME]`: CURRENT NAME CLUSTER AUTHINFO NAMESPACE;
- `current-context`, `use-context NAME`;
- `set-context NAME [--cluster] [--user] [--namespace]`, or `--current` for the one in use.

The file is `--kubeconfig`, else $KYBCONFIG, else ~/.kyb/config; edits rewrite it with mode 0600.
"""

from __future__ import annotations

import copy
from typing import Any

import click
import yaml

from kybernetes.core.identity.kubeconfig import KubeConfigError, load, save
from kybernetes.ctl.cli.errors import CliError, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.printers import tabulate
from kybernetes.ctl.cli.settings import Settings, command, group, pass_settings, subcommand_of

_SECRET_FIELDS = {"client-key-data": "REDACTED", "client-certificate-data": "DATA+OMITTED",
                  "certificate-authority-data": "DATA+OMITTED"}


def _load(settings: Settings) -> dict[str, Any]:
    try:
        return load(settings.kubeconfig)
    except KubeConfigError as err:
        raise CliError(f"error: {err}") from None


def _redacted(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for section, body_key in (("clusters", "cluster"), ("users", "user")):
        for entry in out.get(section, []):
            body = entry.get(body_key) if isinstance(entry, dict) else None
            if isinstance(body, dict):
                for field, mask in _SECRET_FIELDS.items():
                    if field in body:
                        body[field] = mask
    return out


def _minified(config: dict[str, Any], name: str) -> dict[str, Any]:
    ctx = next((c for c in config["contexts"] if c.get("name") == name), None)
    if ctx is None:
        raise CliError(f'error: current-context must exist in order to minify (context "{name}" not found)')
    body = ctx.get("context") or {}
    return {**config, "current-context": name, "contexts": [ctx],
            "clusters": [c for c in config["clusters"] if c.get("name") == body.get("cluster")],
            "users": [u for u in config["users"] if u.get("name") == body.get("user")]}



@group("config")
def config_group() -> None:
    """Read and edit the credentials file (contexts, clusters, users)."""


@subcommand_of(config_group)
@command("view")
@click.option("--raw", is_flag=True, help="Show certificate and key data.")
@click.option("--minify", is_flag=True, help="Only what the current context uses.")
@pass_settings
def view(settings: Settings, raw: bool, minify: bool) -> None:
    """Print the credentials file (secrets redacted unless --raw)."""
    config = _load(settings)
    if minify:
        config = _minified(config, settings.context_flag or str(config.get("current-context") or ""))
    if not raw:
        config = _redacted(config)
    echo(yaml.safe_dump(config, sort_keys=False).rstrip("\n"))


@subcommand_of(config_group)
@command("get-contexts")
@click.argument("name", required=False)
@click.option("--no-headers", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["name"]), help="name: only the context names.")
@pass_settings
def get_contexts(settings: Settings, name: str | None, no_headers: bool, output: str | None) -> None:
    """List the contexts (CURRENT marks the one in use)."""
    config = _load(settings)
    current = str(config.get("current-context") or "")
    contexts = [c for c in config["contexts"] if isinstance(c, dict) and (name is None or c.get("name") == name)]
    if name is not None and not contexts:
        raise CliError(f'error: context {name} not found')
    if output == "name":
        for ctx in contexts:
            echo(str(ctx.get("name")))
        return
    rows = [] if no_headers else [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
    for ctx in contexts:
        body = ctx.get("context") or {}
        rows.append(["*" if ctx.get("name") == current else "", str(ctx.get("name")), str(body.get("cluster", "")),
                     str(body.get("user", "")), str(body.get("namespace", ""))])
    for line in tabulate(rows, min_width=0, padding=3):
        echo(line.rstrip())


@subcommand_of(config_group)
@command("current-context")
@pass_settings
def current_context(settings: Settings) -> None:
    """Print the current context's name."""
    current = _load(settings).get("current-context")
    if not current:
        raise CliError("error: current-context is not set")
    echo(str(current))


@subcommand_of(config_group)
@command("use-context")
@click.argument("name")
@pass_settings
def use_context(settings: Settings, name: str) -> None:
    """Make NAME the current context."""
    config = _load(settings)
    if not any(isinstance(c, dict) and c.get("name") == name for c in config["contexts"]):
        raise CliError(f'error: no context exists with the name: "{name}"')
    config["current-context"] = name
    save(settings.kubeconfig, config)
    echo(f'Switched to context "{name}".')


@subcommand_of(config_group)
@command("set-context")
@click.argument("name", required=False)
@click.option("--current", is_flag=True, help="Modify the current context.")
@click.option("--cluster", default=None, help="The cluster entry of the context.")
@click.option("--user", default=None, help="The user entry of the context.")
@click.option("--namespace", "context_namespace", default=None, help="The context's default namespace.")
@pass_settings
def set_context(settings: Settings, name: str | None, current: bool, cluster: str | None, user: str | None,
                context_namespace: str | None) -> None:
    """Create a context or change one's cluster, user or namespace."""
    config = _load(settings)
    if current == bool(name):
        raise usage_error("you must specify a context NAME or --current, not both")
    name = name or str(config.get("current-context") or "")
    if not name:
        raise CliError("error: no current context is set")
    for field, value, section in (("cluster", cluster, "clusters"), ("user", user, "users")):
        if value is not None and not any(isinstance(e, dict) and e.get("name") == value for e in config[section]):
            raise CliError(f'error: {field} "{value}" not found in {settings.kubeconfig}')
    entry = next((c for c in config["contexts"] if isinstance(c, dict) and c.get("name") == name), None)
    created = entry is None
    if entry is None:
        entry = {"name": name, "context": {}}
        config["contexts"].append(entry)
    body = entry.setdefault("context", {})
    for key, value in (("cluster", cluster), ("user", user), ("namespace", context_namespace)):
        if value is not None:
            body[key] = value
    save(settings.kubeconfig, config)
    echo(f'Context "{name}" {"created" if created else "modified"}.')
