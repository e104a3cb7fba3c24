"""Kubernetes resource quantities: "250m" CPU, "64Mi" memory, "1e3", "500k".

A quantity is a signed decimal number followed by one optional suffix: a decimal
SI suffix (n u m k M G T P E), a binary suffix (Ki Mi Gi Ti Pi Ei) or a decimal
exponent (e3, E-2). `parse_quantity` gives the exact value as a `Decimal`, so
"0.1" stays exact; `parse_cpu` and `parse_memory` convert to the integer units
the scheduler and kubelet count in (millicores and bytes), rounding up like
Kubernetes' MilliValue()/Value() so a request is never under-counted.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, DecimalException, localcontext

from kybernetes.core.api.errors import InvalidError

__all__ = [
    "QuantityError",
    "format_cpu",
    "format_memory",
    "parse_cpu",
    "parse_memory",
    "parse_quantity",
]

# Kubernetes' own wording for a malformed quantity, kept verbatim so errors read
# the same as kubectl's.
QUANTITY_SYNTAX = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"

# Stricter than the regex in the message (which lets "1.2.3" through to a
# second parsing stage): one number, then one suffix or one exponent. "E" alone
# is exa; "E3" is an exponent, which the alternation order resolves by
# backtracking.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?[0-9]+))?$"
)

_DECIMAL_SUFFIXES: dict[str, int] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}

# A bound on written exponents: without it "1e999999999" would make parse_cpu
# build a billion-digit integer on the API server's request path.
_MAX_EXPONENT = 1000

# Enough digits that no quantity a user can reasonably write is rounded while
# being scaled (2**60 alone has 19 digits).
_PRECISION = 200


class QuantityError(InvalidError, ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity: "1.5Gi" -> Decimal(1610612736), "250m" -> Decimal("0.250")."""
    if not isinstance(text, str):
        raise QuantityError(f"{QUANTITY_SYNTAX}, got {type(text).__name__}")
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(QUANTITY_SYNTAX)
    number = Decimal(match["number"])
    suffix = match["suffix"]
    exponent_text = match["exponent"]
    try:
        with localcontext(prec=_PRECISION):
            if suffix in _BINARY_SUFFIXES:
                return number * (2 ** _BINARY_SUFFIXES[suffix])
            if suffix is not None:
                return number.scaleb(_DECIMAL_SUFFIXES[suffix])
            if exponent_text is not None:
                exponent = int(exponent_text)
                if abs(exponent) > _MAX_EXPONENT:
                    raise QuantityError(f"quantity exponent {exponent} is out of range (±{_MAX_EXPONENT})")
                return number.scaleb(exponent)
            return number
    except DecimalException as exc:  # overflow while scaling: only reachable with absurd inputs
        raise QuantityError(f"quantity {text!r} is out of range") from exc


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def parse_cpu(text: str) -> int:
    """CPU in millicores: "250m" -> 250, "1" -> 1000, "0.5" -> 500; fractions of a millicore round up."""
    with localcontext(prec=_PRECISION):
        return _ceil(parse_quantity(text) * 1000)


def parse_memory(text: str) -> int:
    """Memory in bytes: "64Mi" -> 67108864, "128M" -> 128000000; fractions of a byte round up."""
    return _ceil(parse_quantity(text))


def format_cpu(millicores: int) -> str:
    """The canonical spelling of a CPU amount: 250 -> "250m", 2000 -> "2"."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


_FORMAT_BINARY: tuple[tuple[str, int], ...] = tuple(
    sorted(((suffix, 2**power) for suffix, power in _BINARY_SUFFIXES.items()), key=lambda item: -item[1])
)


def format_memory(num_bytes: int) -> str:
    """The canonical spelling of a byte count: the largest binary suffix dividing it exactly, else plain."""
    if num_bytes == 0:
        return "0"
    for suffix, scale in _FORMAT_BINARY:
        if num_bytes % scale == 0:
            return f"{num_bytes // scale}{suffix}"
    return str(num_bytes)
