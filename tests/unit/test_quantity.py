"""Kubernetes resource quantities: parsing, rounding and canonical formatting."""

from decimal import Decimal

import pytest

from kybernetes.core.api.quantity import (
    QUANTITY_SYNTAX,
    QuantityError,
    format_cpu,
    format_memory,
    parse_cpu,
    parse_memory,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Decimal(1)),
        ("0", Decimal(0)),
        ("+2", Decimal(2)),
        ("-3", Decimal(-3)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
        ("5n", Decimal("5e-9")),
        ("5u", Decimal("5e-6")),
        ("250m", Decimal("0.25")),
        ("500k", Decimal(500_000)),
        ("128M", Decimal(128_000_000)),
        ("2G", Decimal(2 * 10**9)),
        ("3T", Decimal(3 * 10**12)),
        ("4P", Decimal(4 * 10**15)),
        ("5E", Decimal(5 * 10**18)),
        ("1Ki", Decimal(1024)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("2Ti", Decimal(2 * 2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("12e-2", Decimal("0.12")),
        ("1e+2", Decimal(100)),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "1\n", ".", "1.2.3", "abc", "Mi", "1Kb", "1ki", "1e", "1MiB", "1m1", "--1", "1e3Mi"]
)
def test_parse_quantity_refuses_bad_syntax(text):
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == QUANTITY_SYNTAX
    assert isinstance(info.value, ValueError)


def test_parse_quantity_refuses_absurd_exponent():
    with pytest.raises(QuantityError, match="out of range"):
        parse_quantity("1e999999")


def test_parse_quantity_refuses_non_strings():
    with pytest.raises(QuantityError):
        parse_quantity(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("250m", 250), ("1", 1000), ("0.5", 500), ("1.5", 1500), ("2", 2000), ("100u", 1), ("0.0001", 1), ("0", 0)],
)
def test_parse_cpu(text, millicores):
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize(
    ("text", "num_bytes"),
    [
        ("64Mi", 64 * 1024 * 1024),
        ("1Gi", 1024**3),
        ("128M", 128_000_000),
        ("1e3", 1000),
        ("500k", 500_000),
        ("1000", 1000),
        ("0.5Ki", 512),
        ("1500m", 2),  # fractions of a byte round up
    ],
)
def test_parse_memory(text, num_bytes):
    assert parse_memory(text) == num_bytes


@pytest.mark.parametrize(("millicores", "text"), [(250, "250m"), (2000, "2"), (1500, "1500m"), (0, "0"), (1, "1m")])
def test_format_cpu(millicores, text):
    assert format_cpu(millicores) == text
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (64 * 2**20, "64Mi"),
        (2**30, "1Gi"),
        (3 * 2**40, "3Ti"),
        (2**50, "1Pi"),
        (2**60, "1Ei"),
        (1536 * 1024, "1536Ki"),
        (1000, "1000"),
        (0, "0"),
    ],
)
def test_format_memory(num_bytes, text):
    assert format_memory(num_bytes) == text
    assert parse_memory(text) == num_bytes
