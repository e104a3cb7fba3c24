"""What every kybctl command shares: settings and global flags, the async runner, errors, KIND/NAME parsing.

A command is a plain click function in its own module, declared with
`@command()` (or `@group()`), which adds the global flags (`--server`,
`-n/--namespace`, `--request-timeout`) so they work after the subcommand too,
as in kubectl (`kybctl get pods -n kube-system`). The command reads the
resolved flags through `@pass_settings`, does its API work in an async
function run by `run(settings, body)` (which opens one Client and closes it),
and lets `ApiError`/`CliError` propagate: `ctl.cli.main` turns every error into
kubectl's one-line form and exit code 1. Commands that carry on after a
per-object failure (get/delete of several names) print the line themselves
with `report_error` and finish with `raise SilentExit(1)`.

Read-modify-write commands go through `read_modify_write`, which retries the
whole read + change + update when another writer got there first.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ctl.api import kinds
from ctl.api.kinds import Kind

if TYPE_CHECKING:
    from ctl.client import Client

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SERVER = "127.0.0.1:6443"
DEFAULT_NAMESPACE = "default"
SERVER_ENV = "KYB_SERVER"

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

# kubectl's `all` category, restricted to the kinds we have.
ALL_CATEGORY: tuple[str, ...] = ("pods", "services", "deployments", "replicasets")


# ---------------------------------------------------------------- errors


class CliError(click.ClickException):
    """An error already worded as kubectl words it (`error: ...`); printed as-is, exit code 1."""

    exit_code = 1

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def format_message(self) -> str:
        return self.line


class SilentExit(click.exceptions.Exit):
    """Exit with a code after the command has already reported what went wrong."""


def usage_error(message: str) -> CliError:
    """`error: <message>`, kubectl's form for bad input."""
    return CliError(f"error: {message}")


_CONNECT_FAILURES = ("failed to connect", "connection refused", "dns resolution", "name resolution",
                     "socket closed", "connection reset", "connect failed", "no route to host")
_INVALID_OBJECT = re.compile(r'^(?P<kind>[A-Za-z]+)(?:\.[\w.]+)? (?P<name>".*?") is invalid: (?P<details>.*)$', re.S)


def one_line(text: str) -> str:
    """Collapse whitespace runs so that a message is exactly one line."""
    return " ".join(text.split())


def error_line(err: BaseException, *, server: str = "") -> str:
    """kubectl's one-line wording of an API or connection error."""
    from ctl.client import ApiError, InvalidError, UnavailableError

    if isinstance(err, CliError):
        return err.line
    if not isinstance(err, ApiError):
        return one_line(f"error: {err}")
    message = one_line(err.message)
    if isinstance(err, UnavailableError):
        import grpc

        lowered = message.lower()
        if err.code == grpc.StatusCode.DEADLINE_EXCEEDED or any(m in lowered for m in _CONNECT_FAILURES):
            if "connection refused" in lowered and server:
                return f"Unable to connect to the server: dial tcp {server}: connect: connection refused"
            return f"Unable to connect to the server: {message}"
        return f"Error from server (ServiceUnavailable): {message}"
    if isinstance(err, InvalidError):
        match = _INVALID_OBJECT.match(message)
        if match:
            return f"The {match['kind']} {match['name']} is invalid: {match['details']}"
        return f"Error from server (BadRequest): {message}"
    return f"Error from server ({err.reason}): {message}"


def report_error(err: BaseException, settings: Settings | None = None) -> None:
    """Print one error line on stderr (for commands that carry on after a per-object failure)."""
    click.echo(error_line(err, server=settings.server if settings else ""), err=True)


# ---------------------------------------------------------------- settings and global flags


@dataclass(slots=True)
class Settings:
    """Flags shared by every command, wherever on the command line they were given."""

    server_flag: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    namespace_explicit: bool = False
    request_timeout: float = 10.0

    @property
    def server(self) -> str:
        """`--server`, else $KYB_SERVER, else 127.0.0.1:6443."""
        return self.server_flag or os.environ.get(SERVER_ENV) or DEFAULT_SERVER

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
        settings = ctx.ensure_object(Settings)
        settings.namespace, settings.namespace_explicit = value, True


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
                     help=f"The master's address (default ${SERVER_ENV}, else {DEFAULT_SERVER}).")(f)
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


# ---------------------------------------------------------------- running API work


def run(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    """Run `body(client)` on a fresh event loop with a Client of the configured master."""
    from ctl.client import Client

    async def main() -> T:
        async with Client(settings.server, timeout=settings.request_timeout) as client:
            await wait_connected(client, timeout=min(settings.request_timeout, CONNECT_TIMEOUT))
            return await body(client)

    return asyncio.run(main())


CONNECT_TIMEOUT = 5.0


async def wait_connected(client: Client, *, timeout: float) -> None:
    """Give the channel up to `timeout` to connect before the first call.

    The client's channel gives up a connection attempt after a short handshake
    deadline, so the first call of a fresh process can fail against a busy but
    healthy master. Waiting for READY rides that out; a refused TCP connection
    is detected at once, so an unreachable master still fails fast (the first
    call then reports it).
    """
    import grpc

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = client.channel
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not await _accepts_tcp(client.server):
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            return
        state = channel.get_state(try_to_connect=True)


async def _accepts_tcp(server: str) -> bool:
    """Whether host:port accepts a TCP connection (True when the address is not host:port)."""
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or "/" in server:
        return True
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run `attempt` again (reading afresh) while the server answers Conflict; re-raise after `attempts`."""
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    from ctl.client import ConflictError

    result: T
    async for trial in AsyncRetrying(retry=retry_if_exception_type(ConflictError),
                                     stop=stop_after_attempt(attempts),
                                     wait=wait_random_exponential(multiplier=0.02, max=0.5), reraise=True):
        with trial:
            result = await attempt()
    return result


async def read_modify_write(client: Client, target: Target, *, settings: Settings,
                            change: Callable[[Any], bool], resource_version: str = "") -> tuple[Any, bool]:
    """Get an object, let `change` edit it in place, update it; retried on Conflict.

    `change` returns whether it changed anything (no update is sent otherwise) and
    may raise CliError to refuse. With `resource_version` (kubectl's
    --resource-version) the update carries that precondition and a Conflict is
    final, not retried.
    """
    namespace = settings.namespace_for(target.kind, target.namespace)

    async def attempt() -> tuple[Any, bool]:
        obj = await client.get(target.kind.resource, target.name, namespace=namespace)
        if resource_version:
            obj.metadata.resource_version = resource_version
        if not change(obj):
            return obj, False
        return await client.update(obj), True

    if resource_version:
        return await attempt()
    return await retry_on_conflict(attempt)


# ---------------------------------------------------------------- kinds and names


def resolve_kind(name: str) -> Kind:
    """The kind for a user-typed resource name (`deploy`, `deployments.apps`, …).

    Unknown names are `error: the server doesn't have a resource type "x"`.
    """
    base, dot, group_name = name.partition(".")
    try:
        kind = kinds.lookup(base if dot else name)
    except kinds.UnknownKind:
        kind = None
    if kind is None or (dot and api_group(kind) != group_name):
        raise usage_error(f'the server doesn\'t have a resource type "{name}"')
    return kind


def api_group(kind: Kind) -> str:
    """"apps" for apps/v1, "" for the core group."""
    group_name, _, _ = kind.api_version.rpartition("/")
    return group_name


def type_name(kind: Kind) -> str:
    """kubectl's type prefix: `pod`, `deployment.apps`."""
    group_name = api_group(kind)
    singular = kind.singular or kind.kind.lower()
    return f"{singular}.{group_name}" if group_name else singular


def resource_name(kind: Kind) -> str:
    """kubectl's plural resource name with its group: `pods`, `deployments.apps`."""
    group_name = api_group(kind)
    return f"{kind.resource}.{group_name}" if group_name else kind.resource


def object_ref(obj: Any) -> str:
    """`pod/web`, `deployment.apps/web` (kubectl's -o name and messages)."""
    return f"{type_name(kinds.kind_of(obj))}/{obj.metadata.name}"


@dataclass(frozen=True, slots=True)
class Target:
    """One named object on the command line; namespace "" means the -n default."""

    kind: Kind
    name: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class ResourceArgs:
    """`KIND[,KIND…] [NAME…]` or `KIND/NAME…`: the kinds named and the explicit objects, if any."""

    kinds: tuple[Kind, ...]
    targets: tuple[Target, ...]


def _kinds_of(spec: str, *, allow_all: bool) -> list[Kind]:
    out: list[Kind] = []
    for part in spec.split(","):
        if not part:
            raise usage_error(f'invalid resource type "{spec}"')
        names = ALL_CATEGORY if allow_all and part == "all" else (part,)
        for name in names:
            kind = resolve_kind(name)
            if kind not in out:
                out.append(kind)
    return out


def parse_resource_args(args: Sequence[str], *, allow_all: bool = False) -> ResourceArgs:
    """Parse kubectl's resource arguments (see ResourceArgs); raises CliError on mixed forms."""
    if not args:
        return ResourceArgs((), ())
    if "/" in args[0]:
        targets: list[Target] = []
        for arg in args:
            kind_name, slash, name = arg.partition("/")
            if not slash or not kind_name or not name or "/" in name:
                raise usage_error(f'arguments in resource/name form must have a single resource and name: "{arg}"')
            targets.append(Target(resolve_kind(kind_name), name))
        seen: list[Kind] = []
        for t in targets:
            if t.kind not in seen:
                seen.append(t.kind)
        return ResourceArgs(tuple(seen), tuple(targets))
    kind_list = _kinds_of(args[0], allow_all=allow_all)
    names = list(args[1:])
    for name in names:
        if "/" in name:
            raise usage_error("there is no need to specify a resource type as a separate argument when passing "
                              "arguments in resource/name form (e.g. 'kybctl get resource/<resource_name>' "
                              "instead of 'kybctl get resource resource/<resource_name>')")
    return ResourceArgs(tuple(kind_list), tuple(Target(k, n) for k in kind_list for n in names))


def check_selector(selector: str, *, field: bool = False) -> None:
    """Parse a label (or field) selector client-side, so that a typo is a usage error."""
    from ctl.api.selectors import SelectorError, parse_field_selector, parse_label_selector

    try:
        (parse_field_selector if field else parse_label_selector)(selector)
    except SelectorError as err:
        raise usage_error(one_line(str(err))) from None


def echo(line: str = "", *, err: bool = False) -> None:
    """Print a line and flush it at once (watch output must reach pipes immediately)."""
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()


def no_resources_line(*, namespaced: bool, all_namespaces: bool, namespace: str) -> str:
    """kubectl's message for an empty result."""
    if namespaced and not all_namespaces:
        return f"No resources found in {namespace} namespace."
    return "No resources found"
