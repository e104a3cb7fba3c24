"""Label selectors, with Kubernetes' string syntax and semantics.

Selectors are parsed once into small immutable values and then matched many
times (scheduler, controllers, watch fan-out, admission), so all the work
happens at parse time: keys and values are validated there, each requirement is
compiled into a (key, opcode, operand) triple, and `matches()` is a plain loop
of dict look-ups with no regexes or allocation.

Grammar of the string form (as `k8s.io/apimachinery/pkg/labels.Parse`):
    selector    := "" | requirement ("," requirement)*
    requirement := key | "!" key | key ("=" | "==" | "!=") value
                 | key ("in" | "notin") "(" value ("," value)* ")"
Semantics: requirements are ANDed; `!=` and `notin` match objects without the
key; `=` and `in` need the key; the empty selector matches everything.

The API form, `pb.LabelSelector` (matchLabels + matchExpressions), compiles to
the same value with `from_proto`, as `metav1.LabelSelectorAsSelector` does.

Keys and values follow `kybernetes.core.api.formats` (qualified names and label
values), and a bad one is reported with Kubernetes' validation message behind
an `invalid label key "KEY": ` or `invalid label value "VALUE": ` prefix, as
kubectl reports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from kybernetes.core.api import formats
from kybernetes.core.api.errors import InvalidError
from kybernetes.proto import objects_pb2 as pb


class SelectorError(InvalidError, ValueError):
    """A selector that cannot be parsed or uses something unsupported (label or field selector)."""


# ---------------------------------------------------------------- label keys and values


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label key (`[prefix/]name`), or None if it is."""
    problems = formats.qualified_name(key)
    if not problems:
        return None
    return f'invalid label key "{key}": ' + "; ".join(problems)


def label_value_error(value: str) -> str | None:
    """Why `value` is not a valid label value, or None if it is (the empty string is valid)."""
    problems = formats.label_value(value)
    if not problems:
        return None
    return f'invalid label value "{value}": ' + "; ".join(problems)


# ---------------------------------------------------------------- label selectors


class Operator(StrEnum):
    """Label requirement operators; the value is the spelling in selector strings."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


# Opcodes for the compiled match loop: small ints compare faster than enum members.
_OP_EQUALS, _OP_NOT_EQUALS, _OP_IN, _OP_NOT_IN, _OP_EXISTS, _OP_DOES_NOT_EXIST = range(6)
_OPCODES = {
    Operator.EQUALS: _OP_EQUALS,
    Operator.NOT_EQUALS: _OP_NOT_EQUALS,
    Operator.IN: _OP_IN,
    Operator.NOT_IN: _OP_NOT_IN,
    Operator.EXISTS: _OP_EXISTS,
    Operator.DOES_NOT_EXIST: _OP_DOES_NOT_EXIST,
}

# matchExpressions operators in the API form, in Kubernetes' order (which its messages list them in).
PROTO_OPERATORS: Mapping[str, Operator] = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term of a label selector. `values` is sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @staticmethod
    def create(*, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """A validated requirement; raises SelectorError naming the broken rule."""
        problem = label_key_error(key)
        if problem:
            raise SelectorError(f"unable to parse requirement: {problem}")
        unique = tuple(sorted(set(values)))
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if unique:
                raise SelectorError(
                    f'unable to parse requirement: key "{key}": values set must be empty for exists '
                    "and does not exist"
                )
        elif operator in (Operator.IN, Operator.NOT_IN):
            if not unique:
                raise SelectorError(
                    f"unable to parse requirement: key \"{key}\": for 'in', 'notin' operators, "
                    "values set can't be empty"
                )
        elif len(unique) != 1:
            raise SelectorError(
                f'unable to parse requirement: key "{key}": exact-match compatibility requires one '
                "single value"
            )
        for value in unique:
            problem = label_value_error(value)
            if problem:
                raise SelectorError(f"unable to parse requirement: {problem}")
        return Requirement(key, operator, unique)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether this single requirement holds for `labels`."""
        return LabelSelector((self,)).matches(labels)

    def __str__(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {self.operator.value} ({','.join(self.values)})"
        return f"{self.key}{self.operator.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An immutable, precompiled label selector. The empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    _plan: tuple[tuple[str, int, object], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plan: list[tuple[str, int, object]] = []
        for req in self.requirements:
            opcode = _OPCODES[req.operator]
            operand: object
            if opcode in (_OP_EQUALS, _OP_NOT_EQUALS):
                operand = req.values[0]
            elif opcode in (_OP_IN, _OP_NOT_IN):
                operand = frozenset(req.values)
            else:
                operand = None
            plan.append((req.key, opcode, operand))
        object.__setattr__(self, "_plan", tuple(plan))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every requirement holds for `labels` (a dict or a protobuf map)."""
        get = labels.get
        for key, opcode, operand in self._plan:
            value = get(key)
            if opcode == _OP_EQUALS:
                if value != operand:
                    return False
            elif opcode == _OP_IN:
                if value is None or value not in operand:  # type: ignore[operator]
                    return False
            elif opcode == _OP_NOT_EQUALS:
                if value == operand:
                    return False
            elif opcode == _OP_NOT_IN:
                # A missing key (None) is never in a set of strings, so it matches.
                if value in operand:  # type: ignore[operator]
                    return False
            elif opcode == _OP_EXISTS:
                if value is None:
                    return False
            elif value is not None:  # _OP_DOES_NOT_EXIST
                return False
        return True

    def is_empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


EVERYTHING = LabelSelector()


def _selector(requirements: Iterable[Requirement]) -> LabelSelector:
    # Kubernetes sorts by key (stably), which makes the string form canonical.
    return LabelSelector(tuple(sorted(requirements, key=lambda req: req.key)))


# Tokens of the label selector lexer.
_IDENT, _BANG, _EQ, _DEQ, _NEQ, _COMMA, _LPAREN, _RPAREN, _LT, _GT, _END = range(11)
_SYMBOLS = {"!=": _NEQ, "==": _DEQ, "!": _BANG, "=": _EQ, ",": _COMMA, "(": _LPAREN, ")": _RPAREN}
_SYMBOLS |= {"<": _LT, ">": _GT}
_SPECIAL_CHARS = frozenset("!=,()<>")


def _tokenize(text: str) -> list[tuple[int, str]]:
    tokens: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in _SPECIAL_CHARS:
            two = text[i : i + 2]
            if two in _SYMBOLS:
                tokens.append((_SYMBOLS[two], two))
                i += 2
            else:
                tokens.append((_SYMBOLS[char], char))
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL_CHARS:
                i += 1
            tokens.append((_IDENT, text[start:i]))
    tokens.append((_END, ""))
    return tokens


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[int, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[int, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    @staticmethod
    def fail(found: str, expected: str) -> SelectorError:
        return SelectorError(f"unable to parse requirement: found '{found}', expected: {expected}")

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        if self.peek()[0] == _END:
            return requirements
        while True:
            requirements.append(self.requirement())
            kind, text = self.take()
            if kind == _END:
                return requirements
            if kind != _COMMA:
                raise self.fail(text, "',' or 'end of string'")
            if self.peek()[0] == _END:
                raise self.fail("", "identifier after ','")

    def requirement(self) -> Requirement:
        kind, text = self.take()
        if kind == _BANG:
            kind, key = self.take()
            if kind != _IDENT:
                raise self.fail(key, "identifier after '!'")
            return Requirement.create(key=key, operator=Operator.DOES_NOT_EXIST)
        if kind != _IDENT:
            raise self.fail(text, "!, identifier, or 'end of string'")
        key = text
        kind, text = self.peek()
        if kind in (_END, _COMMA):
            return Requirement.create(key=key, operator=Operator.EXISTS)
        self.take()
        if kind in (_EQ, _DEQ, _NEQ):
            operator = Operator.NOT_EQUALS if kind == _NEQ else Operator.EQUALS
            value_kind, value = self.peek()
            if value_kind == _IDENT:
                self.take()
            elif value_kind in (_END, _COMMA):
                value = ""  # `app=` selects the empty value, as in Kubernetes
            else:
                raise self.fail(value, "identifier")
            return Requirement.create(key=key, operator=operator, values=(value,))
        if kind == _IDENT and text in ("in", "notin"):
            operator = Operator.IN if text == "in" else Operator.NOT_IN
            return Requirement.create(key=key, operator=operator, values=self.value_list())
        if kind in (_LT, _GT):
            raise SelectorError(f"unable to parse requirement: operator '{text}' is not supported")
        raise self.fail(text, "'=', '!=', '==', 'in', 'notin'")

    def value_list(self) -> list[str]:
        kind, text = self.take()
        if kind != _LPAREN:
            raise self.fail(text, "'('")
        if self.peek()[0] == _RPAREN:
            self.take()
            return []
        values: list[str] = []
        while True:
            kind, text = self.peek()
            if kind == _IDENT:
                self.take()
                values.append(text)
                kind, text = self.peek()
            else:
                values.append("")  # `(a,)` or `(,a)`: an empty value, as in Kubernetes
            if kind == _RPAREN:
                self.take()
                return values
            if kind != _COMMA:
                raise self.fail(text, "',' or ')'")
            self.take()


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `app=web,tier!=db,env in (a,b),key,!key`; raises SelectorError on bad syntax."""
    return _selector(_LabelParser(text).parse())


def from_labels(labels: Mapping[str, str]) -> LabelSelector:
    """The selector `k1=v1,k2=v2,…` (a Service's or a matchLabels map)."""
    return _selector(
        Requirement.create(key=key, operator=Operator.EQUALS, values=(value,))
        for key, value in labels.items()
    )


def from_proto(sel: pb.LabelSelector, *, check: bool = True) -> LabelSelector:
    """Convert matchLabels + matchExpressions; an empty message matches everything.

    With `check=False` nothing is validated, for a caller that reports a bad
    selector's problems itself and still asks what it matches (admission
    comparing a selector with its pod template): keys, values and value counts
    are taken as they are, and an unknown operator becomes a requirement that
    no labels satisfy. A valid selector matches the same either way.
    """
    if not check:
        return LabelSelector(tuple(_unchecked(sel)))
    requirements = [
        Requirement.create(key=key, operator=Operator.EQUALS, values=(value,))
        for key, value in sel.match_labels.items()
    ]
    for index, expr in enumerate(sel.match_expressions):
        operator = PROTO_OPERATORS.get(expr.operator)
        if operator is None:
            raise SelectorError(
                f'matchExpressions[{index}].operator: "{expr.operator}" is not a valid label selector '
                f"operator ({', '.join(PROTO_OPERATORS)})"
            )
        requirements.append(Requirement.create(key=expr.key, operator=operator, values=expr.values))
    return _selector(requirements)


def _unchecked(sel: pb.LabelSelector) -> Iterable[Requirement]:
    for key, value in sel.match_labels.items():
        yield Requirement(key, Operator.EQUALS, (value,))
    for expr in sel.match_expressions:
        operator = PROTO_OPERATORS.get(expr.operator)
        if operator is None:
            yield Requirement(expr.key, Operator.IN, ())  # `in ()`: no value is in the empty set
        else:
            yield Requirement(expr.key, operator, tuple(sorted(set(expr.values))))


def to_string(sel: pb.LabelSelector) -> str:
    """The canonical selector string of a proto selector ("" when empty)."""
    return str(from_proto(sel))
