"""Money: micro-credits parsed and printed exactly, never through a float."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.money import (
    MAX_AMOUNT_MICRO,
    MICRO,
    WalletState,
    format_credits,
    parse_credits,
)
from callcontrol.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("12", 12 * MICRO),
        ("0.015", 15_000),
        ("0.000001", 1),
        ("  7.5 ", 7_500_000),
        ("+3", 3 * MICRO),
        ("1000000", MAX_AMOUNT_MICRO),
        ("0", 0),
        ("-0", 0),
        ("12.015000", 12_015_000),
    ],
)
def test_parse_credits_reads_decimal_text_exactly(text: str, micro: int) -> None:
    assert parse_credits(text) == micro


def test_a_tenth_plus_two_tenths_is_exactly_three_tenths() -> None:
    assert parse_credits("0.1") + parse_credits("0.2") == parse_credits("0.3")


def test_negative_amounts_only_where_allowed() -> None:
    assert parse_credits("-3.5", allow_negative=True) == -3_500_000
    with pytest.raises(InvalidInput, match="negative"):
        parse_credits("-3.5")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("   ", "required"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("inf", "not an amount"),
        ("1,000", "not an amount"),
        (".5", "not an amount"),
        ("5.", "not an amount"),
        ("0x10", "not an amount"),
        ("1.2.3", "not an amount"),
        ("--1", "not an amount"),
        ("١٢", "not an amount"),  # Arabic-Indic digits are not our digits
        ("0.0000001", "too many decimal places"),
        ("1.5000000", "too many decimal places"),
        ("1000000.000001", "at most 1000000.000000 credits"),
        ("99999999999999999999", "too large"),
    ],
)
def test_parse_credits_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_credits(text, allow_negative=True)


def test_parse_credits_has_a_custom_maximum() -> None:
    assert parse_credits("5", maximum=5 * MICRO) == 5 * MICRO
    with pytest.raises(InvalidInput, match=r"at most 5\.000000 credits"):
        parse_credits("5.000001", maximum=5 * MICRO)


def test_a_float_is_refused_not_converted() -> None:
    with pytest.raises(InvalidInput):
        parse_credits(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_credits(0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micro", "text"),
    [(0, "0.000000"), (1, "0.000001"), (12_015_000, "12.015000"), (-3_500_000, "-3.500000")],
)
def test_format_credits_always_prints_six_decimals(micro: int, text: str) -> None:
    assert format_credits(micro) == text


@given(st.integers(min_value=-MAX_AMOUNT_MICRO, max_value=MAX_AMOUNT_MICRO))
def test_format_then_parse_is_the_identity(micro: int) -> None:
    assert parse_credits(format_credits(micro), allow_negative=True) == micro


@given(st.integers(min_value=0, max_value=10**6 - 1), st.integers(min_value=0, max_value=999_999))
def test_parse_agrees_with_integer_arithmetic(whole: int, fraction: int) -> None:
    assert parse_credits(f"{whole}.{fraction:06d}") == whole * MICRO + fraction
    assert (
        parse_credits(f"{whole}.{fraction:06d}".rstrip("0").rstrip(".")) == whole * MICRO + fraction
    )


def test_wallet_state_available_is_balance_minus_held() -> None:
    assert WalletState(balance=10, held=4).available == 6
