"""Validation errors: what a violated rule looks like, and the list one pass collects.

A `FieldError` is one violated rule, a Kubernetes-style field path plus the rule
text; `ValidationError` is the API error carrying all of them, worded the way
kubectl prints it:

    Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0

`Errors` is the list the validators of one object append to. Its methods build
Kubernetes' message forms (`Required value`, `Invalid value: V: ...`,
`Unsupported value`, ...), with the offending value shown as Kubernetes shows it
(`show`): strings quoted, maps and lists as compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from kybernetes.core.api.errors import InvalidError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violated rule: `path` in Kubernetes' spelling, `rule` the text after it."""

    path: str  # "spec.template.spec.containers[0].image"
    rule: str  # "Invalid value: \"Foo\": must be a valid image reference ..."

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


class ValidationError(InvalidError, ValueError):
    """An object the API server refuses, with every violated rule."""

    def __init__(self, *, kind: str, group: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.group = group
        self.name = name
        self.errors = list(errors)
        qualified = f"{kind}.{group}" if group else kind
        shown = json.dumps(name) if len(name) <= MAX_SHOWN else \
            f"{json.dumps(name[:MAX_SHOWN])}... ({len(name)} characters)"
        super().__init__(f"{qualified} {shown} is invalid: {_listed(self.errors)}")


def _listed(errors: list[FieldError]) -> str:
    """The errors joined by commas, as many as fit in MAX_MESSAGE characters, then how many more there are."""
    shown: list[str] = []
    size = 0
    for i, error in enumerate(errors):
        text = str(error)
        if shown and size + len(text) > MAX_MESSAGE:
            return ", ".join(shown) + f", and {len(errors) - i} more errors"
        shown.append(text)
        size += len(text) + 2
    return ", ".join(shown)


# A refusal travels back in gRPC's grpc-message trailer, which clients refuse beyond 8-16 KiB (the stream is
# then lost as RESOURCE_EXHAUSTED, "received metadata size exceeds hard limit", and the caller never learns
# why): a value is shown up to MAX_SHOWN characters, and a message lists errors up to MAX_MESSAGE characters.
MAX_SHOWN = 256
MAX_MESSAGE = 3000


def show(value: object) -> str:
    """A value as Kubernetes prints it inside an error: strings quoted, maps and lists as JSON; a long one cut
    at MAX_SHOWN characters with its full length said."""
    text = _show(value)
    if len(text) > MAX_SHOWN:
        return f"{text[:MAX_SHOWN]}... ({len(text)} characters)"
    return text


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, Iterable):
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return repr(value)


class Errors(list[FieldError]):
    """The error list one validation pass appends to, with Kubernetes' message forms."""

    def required(self, path: str, detail: str = "") -> None:
        self.append(FieldError(path, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, path: str, value: object, detail: str) -> None:
        self.append(FieldError(path, f"Invalid value: {show(value)}: {detail}"))

    def unsupported(self, path: str, value: object, supported: Iterable[str]) -> None:
        choices = ", ".join(json.dumps(choice) for choice in supported)
        self.append(FieldError(path, f"Unsupported value: {show(value)}: supported values: {choices}"))

    def duplicate(self, path: str, value: object) -> None:
        self.append(FieldError(path, f"Duplicate value: {show(value)}"))

    def forbidden(self, path: str, detail: str) -> None:
        self.append(FieldError(path, f"Forbidden: {detail}"))

    def too_long(self, path: str, limit: int) -> None:
        self.append(FieldError(path, f"Too long: must have at most {limit} bytes"))

    def check(self, path: str, value: str, rule: Callable[[str], list[str]]) -> bool:
        """A string against a `kybernetes.core.api.formats` rule: one Invalid value per problem.

        Returns whether `value` passed.
        """
        problems = rule(value)
        for problem in problems:
            self.invalid(path, value, problem)
        return not problems

    def enum(self, path: str, value: str, supported: tuple[str, ...], *, allow_empty: bool = True) -> None:
        """An enum string: empty means the default (when allowed), anything else must be listed."""
        if not value:
            if not allow_empty:
                self.required(path)
            return
        if value not in supported:
            self.unsupported(path, value, supported)

    def non_negative(self, path: str, value: int) -> None:
        if value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")
