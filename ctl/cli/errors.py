"""kybctl's errors and their one-line kubectl wording: `CliError` (already worded, exit 1), `SilentExit`
(already reported), `error_line` for API and connection errors, and `report_error` for commands that go on
after a per-object failure. `kybernetes.ctl.cli.main` turns every error that escapes a command into one line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kybernetes.ctl.cli.settings import Settings


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
    from kybernetes.ctl.client import ApiError, InvalidError, UnavailableError

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
