"""Field selectors, with Kubernetes' string syntax and semantics.

As `k8s.io/apimachinery/pkg/fields.ParseSelector`: terms are ANDed, each
`field=value`, `field==value` or `field!=value`, with backslash escapes (`\\,`,
`\\=`, `\\\\`) in values, on the fields the API server can answer:
metadata.name, metadata.namespace, spec.nodeName and status.phase.

Like label selectors (`kybernetes.core.api.labels`), a field selector is parsed
once into an immutable value and matched many times: each (message type, field)
pair gets one cached attrgetter, and an object whose type lacks the field (a
Node has no spec.nodeName) reads it as "". Bad input raises the labels
module's `SelectorError`, so callers catch one error for either selector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from google.protobuf.message import Message

from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.api.labels import SelectorError
from kybernetes.proto import objects_pb2 as pb

SUPPORTED_FIELDS: tuple[str, ...] = ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")
_FIELD_ATTRS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "node_name"),
    "status.phase": ("status", "phase"),
}


def _empty_value(_: object) -> str:
    return ""


_getters: dict[tuple[type, str], Callable[[Any], str]] = {}


def _getter(cls: type[ApiObject | Message], field_name: str) -> Callable[[Any], str]:
    """attrgetter for the field if `cls` has it, else "" (a Node has no spec.nodeName)."""
    cached = _getters.get((cls, field_name))
    if cached is not None:
        return cached
    descriptor: Any = cls.DESCRIPTOR  # a Descriptor, then each field's message type (None past a scalar)
    getter: Callable[[Any], str] = attrgetter(".".join(_FIELD_ATTRS[field_name]))
    for attr in _FIELD_ATTRS[field_name]:
        proto_field = descriptor.fields_by_name.get(attr) if descriptor is not None else None
        if proto_field is None:
            getter = _empty_value
            break
        descriptor = proto_field.message_type
    _getters[(cls, field_name)] = getter
    return getter


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """`field=value` or `field!=value`."""

    field: str
    operator: str  # "=" or "!="
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An immutable field selector over the supported fields; empty matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: ApiObject | Message) -> bool:
        """Whether a concrete object (pb.Pod, …, or a pb.Object envelope) satisfies every term."""
        if isinstance(obj, pb.Object):
            kind = obj.WhichOneof("kind")
            if kind is None:
                return False
            obj = getattr(obj, kind)
        cls = type(obj)
        for req in self.requirements:
            actual = _getter(cls, req.field)(obj)
            if (actual == req.value) != (req.operator == "="):
                return False
        return True

    def equals(self, field_name: str) -> str | None:
        """The value an `=` term requires of `field_name`, if any (for index look-ups)."""
        for req in self.requirements:
            if req.field == field_name and req.operator == "=":
                return req.value
        return None

    def is_empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


_ESCAPABLE = frozenset("\\,=")


def _escape(value: str) -> str:
    return "".join("\\" + char if char in _ESCAPABLE else char for char in value)


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not backslash-escaped; escapes are kept."""
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == separator:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            if i + 1 >= len(value) or value[i + 1] not in _ESCAPABLE:
                raise SelectorError(f"invalid field selector value {value!r}: invalid escape sequence")
            out.append(value[i + 1])
            i += 2
            continue
        if char in ",=":
            raise SelectorError(f"invalid field selector value {value!r}: unescaped {char!r}")
        out.append(char)
        i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str]:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for operator in ("!=", "==", "="):
            if term.startswith(operator, i):
                return term[:i], operator, term[i + len(operator) :]
        i += 1
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def parse_field_selector(text: str) -> FieldSelector:
    """Parse `spec.nodeName=n1,status.phase!=Failed`; raises SelectorError on bad input."""
    requirements: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        if not term.strip():
            continue
        lhs, operator, rhs = _split_term(term)
        field_name = lhs.strip()
        if field_name not in _FIELD_ATTRS:
            raise SelectorError(f"field label not supported: {field_name}")
        requirements.append(
            FieldRequirement(field_name, "!=" if operator == "!=" else "=", _unescape(rhs.strip()))
        )
    return FieldSelector(tuple(sorted(requirements, key=lambda req: req.field)))
