"""Funding rules: exact prices, the decline policy, back-off delays, the cap's month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.funding import (
    Pricing,
    decline_action,
    month_start,
    next_month_start,
    parse_delays,
    retry_at,
)
from callcontrol.domain.money import MICRO
from callcontrol.errors import InvalidInput

PRICING = Pricing(
    credit_price_minor=100, currency="eur", minimum_micro=MICRO, maximum_micro=1000 * MICRO
)


def test_a_price_is_exact_or_refused() -> None:
    assert PRICING.price_of(10 * MICRO) == 1000
    assert PRICING.price_of(MICRO * 5 // 2) == 250  # 2.5 credits
    with pytest.raises(InvalidInput, match="not a whole amount"):
        PRICING.price_of(MICRO + 1)  # 1.000001 credits: 100.0001 cents
    with pytest.raises(InvalidInput, match="between"):
        PRICING.price_of(MICRO - 1)
    with pytest.raises(InvalidInput, match="between"):
        PRICING.price_of(1000 * MICRO + 100)


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=1, max_value=10**4))
def test_an_accepted_price_converts_back_exactly(credits_cents: int, price: int) -> None:
    pricing = Pricing(price, "eur", 1, 10**9 * MICRO)
    credits = credits_cents * MICRO // 100
    try:
        minor = pricing.price_of(credits)
    except InvalidInput:
        assert credits * price % MICRO != 0
        return
    assert minor * MICRO == credits * price


@pytest.mark.parametrize(
    ("retryable", "hard", "in_a_row", "action"),
    [
        (True, False, 1, "retry"),
        (True, False, 2, "retry"),
        (True, False, 3, "switch_off"),
        (False, True, 1, "switch_off"),  # expired, lost, do_not_honor...
        (False, False, 1, "switch_off"),  # a code nobody knows: a person looks first
    ],
)
def test_what_a_decline_does(retryable: bool, hard: bool, in_a_row: int, action: str) -> None:
    assert decline_action(retryable=retryable, hard=hard, failures_in_a_row=in_a_row) == action


def test_back_off_delays() -> None:
    delays = parse_delays(" 3600, 21600,86400 ")
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert [retry_at(now, delays, n) - now for n in (1, 2, 3, 4)] == [
        timedelta(hours=1),
        timedelta(hours=6),
        timedelta(hours=24),
        timedelta(hours=24),
    ]
    for bad in ("", "1,x", "0", "-5", "1.5"):
        with pytest.raises(ValueError, match="positive whole seconds"):
            parse_delays(bad)


def test_the_cap_counts_calendar_months_in_utc() -> None:
    late = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert month_start(late) == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_month_start(late) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_month_start(datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)
