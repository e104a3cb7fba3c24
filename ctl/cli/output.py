"""Printing lines at once (watch output must reach pipes immediately) and kubectl's empty-result line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass


def echo(line: str = "", *, err: bool = False) -> None:
    """Print a line and flush it at once (watch output must reach pipes immediately)."""
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()


def no_resources_line(*, namespaced: bool, all_namespaces: bool, namespace: str) -> str:
    """kubectl's message for an empty result."""
    if namespaced and not all_namespaces:
        return f"No resources found in {namespace} namespace."
    return "No resources found"
