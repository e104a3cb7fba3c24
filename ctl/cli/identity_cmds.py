"""Identity commands: `kybctl token create|list|delete`, `kybctl certificate issue`, `kybctl auth can-i|whoami`.

- `token create [--ttl 24h] [--description TEXT]` prints the whole join token once (the master keeps only a
  hash of its secret); `token list` shows ids, expiry and descriptions, never secrets; `token delete ID`.
- `certificate issue USER [--group G]... [--validity 8760h] [-o kubeconfig|pem] [--out PATH]`: the key is made
  here and never sent; the master signs it. The default output is a credentials file with one context for the
  new user, for the cluster in use: hand it to that user.
- `auth can-i VERB RESOURCE[/NAME] [--as USER [--as-group G]...] [-n NS | -A]` prints yes or no (exit 0 or 1),
  asking the same authorizer the server enforces with.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import yaml

from kybernetes.core.identity.certs import Identity
from kybernetes.core.identity.credentials import write_private
from kybernetes.core.identity.kubeconfig import admin_config
from kybernetes.ctl.cli.errors import SilentExit, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.printers import human_duration, tabulate
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, group, parse_duration, pass_settings, subcommand_of
from kybernetes.ctl.client import Client
from kybernetes.ctl.client.identity import (
    create_token,
    delete_token,
    issue_certificate,
    list_tokens,
    review,
    whoami,
)

# ------------------------------------------------------------------------------------------- tokens



@group("token")
def token_group() -> None:
    """Join tokens: what a new Node's kubelet is given (kyb-kubelet --token)."""


@subcommand_of(token_group)
@command("create")
@click.option("--ttl", default="24h", show_default=True, metavar="DURATION",
              help="How long the token is valid (0: forever).")
@click.option("--description", default="", help="What the token is for (shown by token list).")
@pass_settings
def token_create(settings: Settings, ttl: str, description: str) -> None:
    """Make a join token and print it (only now: the master keeps a hash of its secret)."""
    seconds = int(parse_duration(ttl, flag="--ttl"))

    async def body(client: Client) -> str:
        return (await create_token(client, ttl_seconds=seconds, description=description)).token

    echo(run(settings, body))


@subcommand_of(token_group)
@command("list")
@click.option("--no-headers", is_flag=True)
@pass_settings
def token_list(settings: Settings, no_headers: bool) -> None:
    """List the join tokens: ID TTL EXPIRES DESCRIPTION (never the secrets)."""
    tokens = run(settings, list_tokens)
    now = time.time()
    rows = [] if no_headers else [["ID", "TTL", "EXPIRES", "DESCRIPTION"]]
    for token in tokens:
        if not token.expires:
            ttl, expires = "<forever>", "<never>"
        else:
            left = token.expires - now
            ttl = human_duration(left) if left > 0 else "<expired>"
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.expires))
        rows.append([token.id, ttl, expires, token.description or "<none>"])
    if not rows:
        echo("No tokens found.", err=True)
        return
    for line in tabulate(rows):
        echo(line)


@subcommand_of(token_group)
@command("delete")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@pass_settings
def token_delete(settings: Settings, ids: tuple[str, ...]) -> None:
    """Delete join tokens by id (a Node that already joined keeps its certificate)."""
    async def body(client: Client) -> None:
        for token_id in ids:
            await delete_token(client, token_id.partition(".")[0])
            echo(f'token "{token_id.partition(".")[0]}" deleted')

    run(settings, body)


# ------------------------------------------------------------------------------------- certificates


@group("certificate")
def certificate_group() -> None:
    """Client certificates for users (an admin's tool)."""


@subcommand_of(certificate_group)
@command("issue")
@click.argument("user")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group of the user (repeatable).")
@click.option("--validity", default="0", metavar="DURATION", help="e.g. 720h [default: the master's, a year]")
@click.option("-o", "--output", type=click.Choice(["kubeconfig", "pem"]), default="kubeconfig", show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write here (0600) instead of standard output.")
@pass_settings
def certificate_issue(settings: Settings, user: str, groups: tuple[str, ...], validity: str, output: str,
                      out_path: Path | None) -> None:
    """Issue a client certificate for USER (CN) in GROUPs (O), and print a credentials file for it."""
    seconds = int(parse_duration(validity, flag="--validity"))
    identity = Identity(user=user, groups=tuple(groups))

    async def body(client: Client) -> bytes:
        return await _render(client, identity, seconds, output)

    data = run(settings, body)
    if out_path is not None:
        write_private(out_path, data)
        echo(f"wrote {out_path}", err=True)
    else:
        click.echo(data.decode(), nl=False)


async def _render(client: Client, identity: Identity, seconds: int, output: str) -> bytes:
    credentials = await issue_certificate(client, identity, validity_seconds=seconds)
    if output == "pem":
        return credentials.certificate + credentials.key
    config = admin_config(server=client.server, credentials=credentials, user=identity.user)
    return yaml.safe_dump(config, sort_keys=False).encode()


# --------------------------------------------------------------------------------------------- auth


@group("auth")
def auth_group() -> None:
    """Inspect authorization."""


@subcommand_of(auth_group)
@command("can-i")
@click.argument("verb")
@click.argument("resource")
@click.option("--as", "as_user", default="", metavar="USER", help="Ask for another user (needs impersonate).")
@click.option("--as-group", "as_groups", multiple=True, metavar="GROUP", help="A group of --as (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="At the cluster scope (every namespace).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; answer with the exit code only.")
@pass_settings
def can_i(settings: Settings, verb: str, resource: str, as_user: str, as_groups: tuple[str, ...],
          all_namespaces: bool, quiet: bool) -> None:
    """Whether an action is allowed: yes (exit 0) or no (exit 1)."""
    if as_groups and not as_user:
        raise usage_error("--as-group needs --as")
    resource, _, name = resource.partition("/") if resource.count("/") == 1 and not _is_subresource(resource) \
        else (resource, "", "")
    from kybernetes.core.api.kinds import KINDS

    kind = next((k for k in KINDS if resource in (k.resource, k.kind.lower(), *k.short_names)), None)
    plural = kind.resource if kind else resource
    namespace = "" if all_namespaces or (kind is not None and not kind.namespaced) else settings.namespace

    async def body(client: Client) -> tuple[bool, str]:
        return await review(client, verb=verb, resource=plural, namespace=namespace, name=name, as_user=as_user,
                            as_groups=as_groups)

    allowed, _reason = run(settings, body)
    if not quiet:
        echo("yes" if allowed else "no")
    if not allowed:
        raise SilentExit(1)


_SUBRESOURCES = ("log", "exec", "status")


def _is_subresource(resource: str) -> bool:
    return resource.partition("/")[2] in _SUBRESOURCES


@subcommand_of(auth_group)
@command("whoami")
@pass_settings
def auth_whoami(settings: Settings) -> None:
    """Print the user and groups the master sees."""
    me = run(settings, whoami)
    rows = [["ATTRIBUTE", "VALUE"], ["Username", me.user], ["Groups", "[" + " ".join(me.groups) + "]"]]
    for line in tabulate(rows):
        echo(line)
