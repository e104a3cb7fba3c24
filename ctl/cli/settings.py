"""kybctl's global flags and command declaration: `Settings` (`--kubeconfig`, `--context`, `--server`,
`-n/--namespace`, `--request-timeout`, wherever on the command line they are given, as in kubectl), `pass_settings`,
`@command()` / `@group()` that add those flags to every command, and duration parsing for flags like `--timeout`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kybernetes.core.api.kinds import Kind
from kybernetes.ctl.cli.errors import usage_error

if TYPE_CHECKING:
    from kybernetes.core.identity.kubeconfig import Target


F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SERVER = "127.0.0.1:6443"
DEFAULT_NAMESPACE = "default"
SERVER_ENV = "KYB_SERVER"

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}



@dataclass(slots=True)
class Settings:
    """Flags shared by every command, wherever on the command line they were given."""

    server_flag: str | None = None
    namespace_flag: str | None = None
    request_timeout: float = 10.0
    kubeconfig_flag: str | None = None
    context_flag: str | None = None
    _target: Target | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        """`--kubeconfig`, else $KYBCONFIG, else ~/.kyb/config."""
        from kybernetes.core.identity.kubeconfig import default_path

        return Path(self.kubeconfig_flag).expanduser() if self.kubeconfig_flag else default_path()

    def target(self) -> Target:
        """The context in use (`--context`, else the current one): server, credentials, namespace.
        KubeConfigError when the file can't give one."""
        if self._target is None:
            from kybernetes.core.identity.kubeconfig import resolve

            self._target = resolve(self.kubeconfig, context=self.context_flag or "")
        return self._target

    @property
    def server(self) -> str:
        """`--server`, else $KYB_SERVER, else the context's server (127.0.0.1:6443 when there is none)."""
        from kybernetes.core.identity.kubeconfig import KubeConfigError

        given = self.server_flag or os.environ.get(SERVER_ENV)
        if given:
            return given
        try:
            return self.target().server
        except KubeConfigError:
            return DEFAULT_SERVER

    @property
    def namespace_explicit(self) -> bool:
        return self.namespace_flag is not None

    @property
    def namespace(self) -> str:
        """`-n`, else the context's namespace, else "default"."""
        if self.namespace_flag is not None:
            return self.namespace_flag
        from kybernetes.core.identity.kubeconfig import KubeConfigError

        try:
            return self.target().namespace or DEFAULT_NAMESPACE
        except KubeConfigError:
            return DEFAULT_NAMESPACE

    def namespace_for(self, kind: Kind, namespace: str = "") -> str:
        """The namespace an object of `kind` lives in: its own, else -n; "" for cluster-scoped kinds."""
        if not kind.namespaced:
            return ""
        return namespace or self.namespace


pass_settings = click.make_pass_decorator(Settings, ensure=True)

_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, *, flag: str) -> float:
    """kubectl's durations: `30s`, `2m`, `1h`, `500ms` or plain seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise usage_error(f'invalid argument "{text}" for "{flag}" flag: a duration such as 30s, 2m or 1h')
    return float(match["value"]) * _UNIT_SECONDS[match["unit"]]


def _set_server(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).server_flag = value


def _set_namespace(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        if not value:
            raise usage_error("namespace must not be empty")
        ctx.ensure_object(Settings).namespace_flag = value


def _set_kubeconfig(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).kubeconfig_flag = value


def _set_context(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).context_flag = value


def _set_timeout(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        seconds = parse_duration(value, flag="--request-timeout")
        ctx.ensure_object(Settings).request_timeout = seconds or 365 * 86400.0  # 0 means no timeout


def global_options(f: F) -> F:
    """Add the global flags to a command or group (they only record into the shared Settings)."""
    f = click.option("--request-timeout", metavar="DURATION", expose_value=False, callback=_set_timeout,
                     help="Timeout of each API request (e.g. 10s, 1m; 0 = none). Default 10s.")(f)
    f = click.option("-n", "--namespace", metavar="NAMESPACE", expose_value=False, callback=_set_namespace,
                     help='The namespace of the request (default "default").')(f)
    f = click.option("-s", "--server", metavar="ADDRESS", expose_value=False, callback=_set_server,
                     help=f"The master's address (default ${SERVER_ENV}, else the context's server).")(f)
    f = click.option("--context", metavar="NAME", expose_value=False, callback=_set_context,
                     help="The kubeconfig context to use (default: its current-context).")(f)
    f = click.option("--kubeconfig", metavar="PATH", expose_value=False, callback=_set_kubeconfig,
                     help="The credentials file (default $KYBCONFIG, else ~/.kyb/config).")(f)
    return f


class AliasGroup(click.Group):
    """A click group whose commands may have aliases (`create deploy` = `create deployment`)."""

    aliases: dict[str, str] = {}

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in self.aliases:
            args = [self.aliases[args[0]], *args[1:]]
        return super().resolve_command(ctx, args)


def command(name: str | None = None, **attrs: Any) -> Callable[[F], click.Command]:
    """`@click.command` with kybctl's help options and global flags."""
    def decorate(f: F) -> click.Command:
        return click.command(name, context_settings=CONTEXT_SETTINGS, **attrs)(global_options(f))
    return decorate


def group(name: str | None = None, *, aliases: dict[str, str] | None = None,
          **attrs: Any) -> Callable[[F], click.Group]:
    """`@click.group` with kybctl's help options, global flags and optional subcommand aliases."""
    cls = type("Group", (AliasGroup,), {"aliases": dict(aliases or {})})

    def decorate(f: F) -> click.Group:
        return click.group(name, cls=cls, context_settings=CONTEXT_SETTINGS, **attrs)(global_options(f))
    return decorate


def subcommand_of(parent: click.Group) -> Callable[[click.Command], click.Command]:
    """Put a command made with `command()` (so it takes the global flags after its name too) into `parent`:
    `@subcommand_of(token_group)` above `@command("create")`."""
    def add(cmd: click.Command) -> click.Command:
        parent.add_command(cmd)
        return cmd
    return add
