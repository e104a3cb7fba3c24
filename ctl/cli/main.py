"""`kybctl`: the root command group, its global flags and kubectl's error conventions.

Subcommands live in their own modules and are listed in `COMMANDS` as
"module:attribute"; the group imports a module only when its command runs (or
when help lists it), so startup stays fast and adding a command is a new module
plus one line here.

Every failure ends here as ONE line on stderr and exit code 1, never a
traceback: API errors in kubectl's words (`Error from server (NotFound): ...`),
bad usage as `error: ...` (click's usage errors included, which click would
otherwise print over several lines with exit code 2), an unreachable master as
`Unable to connect to the server: ...`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from kybernetes.ctl.cli.errors import CliError, error_line, one_line
from kybernetes.ctl.cli.settings import CONTEXT_SETTINGS, AliasGroup, Settings, global_options

COMMANDS: dict[str, str] = {
    "get": "kybernetes.ctl.cli.get:get",
    "describe": "kybernetes.ctl.cli.describe:describe",
    "create": "kybernetes.ctl.cli.create:create",
    "apply": "kybernetes.ctl.cli.apply:apply",
    "delete": "kybernetes.ctl.cli.delete:delete",
    "label": "kybernetes.ctl.cli.edit_cmds:label",
    "annotate": "kybernetes.ctl.cli.edit_cmds:annotate",
    "scale": "kybernetes.ctl.cli.edit_cmds:scale",
    "set": "kybernetes.ctl.cli.edit_cmds:set_group",
    "logs": "kybernetes.ctl.cli.logs:logs",
    "exec": "kybernetes.ctl.cli.exec_cmd:exec_command",
    "rollout": "kybernetes.ctl.cli.rollout:rollout",
    "cordon": "kybernetes.ctl.cli.nodes:cordon",
    "uncordon": "kybernetes.ctl.cli.nodes:uncordon",
    "drain": "kybernetes.ctl.cli.nodes:drain",
    "expose": "kybernetes.ctl.cli.expose:expose",
    "version": "kybernetes.ctl.cli.misc:version",
    "config": "kybernetes.ctl.cli.config_cmds:config_group",
    "token": "kybernetes.ctl.cli.identity_cmds:token_group",
    "certificate": "kybernetes.ctl.cli.identity_cmds:certificate_group",
    "auth": "kybernetes.ctl.cli.identity_cmds:auth_group",
    "api-resources": "kybernetes.ctl.cli.misc:api_resources",
}


class LazyGroup(AliasGroup):
    """A group whose subcommands are imported on first use from "module:attribute" specs."""

    def __init__(self, *args: object, lazy_commands: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.lazy_commands:
            return found
        module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
        loaded = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and self.get_command(ctx, args[0]) is None and not args[0].startswith("-"):
            raise CliError(f'error: unknown command "{args[0]}" for "kybctl"')
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=CONTEXT_SETTINGS)
@global_options
def cli() -> None:
    """kybctl controls the Kybernetes cluster manager, with kubectl's habits."""


def _usage_line(err: click.UsageError) -> str:
    """One `error: ...` line for a click usage error, in kubectl's words where they differ."""
    if isinstance(err, click.NoSuchOption):
        return f"error: unknown flag: {err.option_name}"
    message = one_line(err.format_message())
    if isinstance(err, click.BadOptionUsage) and message.endswith("requires an argument."):
        return f"error: flag needs an argument: {err.option_name}"
    if isinstance(err, click.MissingParameter) and err.param is not None and err.param.param_type_name == "argument":
        command_name = err.ctx.command_path if err.ctx else "kybctl"
        return f"error: missing required argument {err.param.human_readable_name} for \"{command_name}\""
    return f"error: {message[:1].lower()}{message[1:]}"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `kybctl` console script; always exits with the command's code."""
    settings = Settings()
    code = 1
    try:
        result = cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="kybctl",
                          standalone_mode=False, obj=settings)
        code = result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else "")
        code = 0
    except CliError as err:
        click.echo(err.line, err=True)
    except click.UsageError as err:
        click.echo(_usage_line(err), err=True)
    except click.ClickException as err:
        click.echo(f"error: {one_line(err.format_message())}", err=True)
    except click.Abort:
        code = 130
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`kybctl get pods | head -1`): stop quietly, and keep Python
        # from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception as err:  # noqa: BLE001 - the CLI's contract is one line, never a traceback
        if os.environ.get("KYB_DEBUG"):
            raise
        from kybernetes.ctl.client import ApiError, KubeConfigError

        if isinstance(err, KubeConfigError):
            click.echo(one_line(f"error: {err}"), err=True)
        elif isinstance(err, ApiError):
            click.echo(error_line(err, server=settings.server), err=True)
        else:  # a bug or an unexpected environment problem: still one line, naming the exception
            click.echo(one_line(f"error: {type(err).__name__}: {err}"), err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
