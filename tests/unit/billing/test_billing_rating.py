"""Rating: which rate applies, and exact costs. Each worked example is a small story."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.money import MICRO, parse_credits
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import (
    Direction,
    Rate,
    affordable_seconds,
    billable_seconds,
    call_cost,
    select_rate,
)

IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def rate(
    per_minute: str,
    increments: str = "60/60",
    fee: str = "0",
    *,
    direction: Direction = OUT,
    prefix: str | None = None,
    country: str | None = "GB",
    number_type: NumberType | None = None,
    id: int | None = None,
) -> Rate:
    first, next_ = (int(part) for part in increments.split("/"))
    return Rate(
        id=id,
        direction=direction,
        prefix=prefix,
        country=None if prefix is not None else country,
        number_type=number_type,
        price_per_minute=parse_credits(per_minute),
        connection_fee=parse_credits(fee),
        first_increment=first,
        next_increment=next_,
        description="",
    )


# ---- worked examples: exact costs --------------------------------------------------------


def test_a_minute_at_one_credit_per_minute_costs_one_credit() -> None:
    one = rate("1")
    assert call_cost(one, 60) == 1 * MICRO
    assert call_cost(one, 1) == 1 * MICRO  # the first block is billed whole
    assert call_cost(one, 61) == 2 * MICRO  # and so is every next block


@pytest.mark.parametrize(
    ("duration", "increments", "billable"),
    [
        (0, "60/60", 0),
        (1, "60/60", 60),
        (60, "60/60", 60),
        (61, "60/60", 120),
        (1, "30/6", 30),
        (30, "30/6", 30),
        (31, "30/6", 36),
        (36, "30/6", 36),
        (37, "30/6", 42),
        (95, "30/6", 96),
        (1, "1/1", 1),
        (59, "1/1", 59),
        (7, "6/6", 12),
        (61, "60/1", 61),
    ],
)
def test_billable_seconds_by_increments(duration: int, increments: str, billable: int) -> None:
    first, next_ = (int(p) for p in increments.split("/"))
    assert billable_seconds(duration, first, next_) == billable


def test_uk_mobile_call_with_a_connection_fee_at_30_6() -> None:
    """0.10 credit/min, 0.01 to connect, 30/6: the docstring's story."""
    mobile = rate("0.10", "30/6", fee="0.01")
    assert call_cost(mobile, 0) == parse_credits("0.01")  # answered, hung up at once
    assert call_cost(mobile, 1) == parse_credits("0.06")  # fee + 30 s
    assert call_cost(mobile, 31) == parse_credits("0.07")  # fee + 36 s
    assert call_cost(mobile, 95) == parse_credits("0.17")  # fee + 96 s


def test_an_unanswered_call_pays_no_connection_fee() -> None:
    assert call_cost(rate("0.10", fee="0.05"), 0, answered=False) == 0


def test_rounding_is_up_to_a_micro_credit_on_the_whole_call_not_per_block() -> None:
    """0.000007 credit/min at 1/1: each second costs 7/60 micro-credit.

    Rounded per second a 60 s call would cost 60 micro-credits; rounded once on the
    total it costs the 7 it should. 1 s costs ceil(7/60) = 1.
    """
    tiny = rate("0.000007", "1/1")
    assert call_cost(tiny, 60) == 7
    assert call_cost(tiny, 1) == 1
    assert call_cost(tiny, 9) == 2  # 63/60 -> 2


def test_a_us_call_at_6_6_increments() -> None:
    """0.008 credit/min, 6/6: a 61 s call is billed 66 s = 0.0088 credits."""
    assert call_cost(rate("0.008", "6/6"), 61) == parse_credits("0.0088")


def test_a_free_rate_costs_only_its_fee() -> None:
    assert call_cost(rate("0", fee="0"), 3600) == 0


# ---- affordable seconds ------------------------------------------------------------------


def test_ten_credits_at_one_credit_per_minute_last_ten_minutes() -> None:
    assert affordable_seconds(rate("1"), 10 * MICRO) == 600
    assert affordable_seconds(rate("1", "1/1"), 10 * MICRO) == 600


def test_a_connection_fee_takes_its_share_first() -> None:
    """10 credits, 0.1 to connect, 1/min: 9.9 minutes at 1/1, 9 at 60/60."""
    assert affordable_seconds(rate("1", "1/1", fee="0.1"), 10 * MICRO) == 594
    assert affordable_seconds(rate("1", "60/60", fee="0.1"), 10 * MICRO) == 540


def test_at_30_6_the_credits_end_on_a_block_boundary() -> None:
    """0.75 credit at 1/min, 30/6: 45 s would cost exactly 0.75, but 45 is not a
    block end (30, 36, 42, 48): 42 s is paid, 48 s is not."""
    assert affordable_seconds(rate("1", "30/6"), parse_credits("0.75")) == 42


def test_not_even_the_fee_fits() -> None:
    assert affordable_seconds(rate("1", fee="0.5"), parse_credits("0.4")) is None


def test_less_than_the_first_block_affords_only_zero_seconds() -> None:
    assert affordable_seconds(rate("1", "60/60"), parse_credits("0.5")) == 0


def test_a_free_rate_is_capped_at_the_limit() -> None:
    assert affordable_seconds(rate("0"), 0, limit=120) == 120


# ---- choosing a rate ---------------------------------------------------------------------


RATES = [
    rate("0.010", country="GB", number_type=NumberType.LOCAL, id=1),
    rate("0.060", country="GB", number_type=NumberType.MOBILE, id=2),
    rate("0.100", country="GB", id=3),
    rate("0.008", prefix="4420", id=4),
    rate("0.005", prefix="44207", id=5),
    rate("0.110", prefix="4915", id=6),
    rate("0.090", prefix="49151", id=7),
    rate("0.095", prefix="49151", number_type=NumberType.MOBILE, id=8),
    rate("0.002", country="GB", number_type=NumberType.LOCAL, direction=IN, id=9),
    rate("0.025", country="GB", number_type=NumberType.TOLL_FREE, direction=IN, id=10),
]


def pick(direction: Direction, e164: str, country: str, kind: NumberType | None) -> int | None:
    chosen = select_rate(RATES, direction, e164, country, kind)
    return None if chosen is None else chosen.id


def test_longest_prefix_wins_over_shorter_prefixes_and_countries() -> None:
    assert pick(OUT, "+442079460000", "GB", NumberType.LOCAL) == 5
    assert pick(OUT, "+442089460000", "GB", NumberType.LOCAL) == 4
    assert pick(OUT, "+4915212345678", "DE", NumberType.MOBILE) == 6


def test_at_equal_prefix_a_typed_rate_beats_an_untyped_one() -> None:
    assert pick(OUT, "+4915112345678", "DE", NumberType.MOBILE) == 8
    assert pick(OUT, "+4915112345678", "DE", NumberType.NATIONAL) == 7


def test_country_with_type_then_country_without() -> None:
    assert pick(OUT, "+441134960000", "GB", NumberType.LOCAL) == 1
    assert pick(OUT, "+447400123456", "GB", NumberType.MOBILE) == 2
    assert pick(OUT, "+443001234567", "GB", NumberType.NATIONAL) == 3


def test_a_typed_rate_matches_only_its_type_and_direction_matters() -> None:
    assert pick(IN, "+441134960000", "GB", NumberType.LOCAL) == 9
    assert pick(IN, "+448081570000", "GB", NumberType.TOLL_FREE) == 10
    assert pick(IN, "+447400123456", "GB", NumberType.MOBILE) is None  # no inbound mobile


def test_no_rate_for_an_unpriced_country() -> None:
    assert pick(OUT, "+33123456789", "FR", NumberType.LOCAL) is None


def test_a_rate_must_name_a_prefix_or_a_country() -> None:
    with pytest.raises(ValueError, match="prefix or a country"):
        Rate(None, OUT, None, None, None, 1, 0, 60, 60)
    with pytest.raises(ValueError, match="increments"):
        Rate(None, OUT, None, "GB", None, 1, 0, 0, 60)


# ---- properties --------------------------------------------------------------------------

increments = st.tuples(st.integers(1, 120), st.integers(1, 120))
prices = st.integers(0, 5 * MICRO)
durations = st.integers(0, 20_000)


def any_rate(price: int, fee: int, inc: tuple[int, int]) -> Rate:
    return Rate(None, OUT, None, "GB", None, price, fee, inc[0], inc[1])


@given(durations, increments)
def test_billable_covers_the_duration_by_less_than_a_block(
    duration: int, inc: tuple[int, int]
) -> None:
    billable = billable_seconds(duration, *inc)
    assert billable >= duration
    if duration:
        assert billable < max(duration, inc[0]) + inc[1]


@given(prices, prices, increments, durations, durations)
def test_cost_never_falls_as_the_call_gets_longer(
    price: int, fee: int, inc: tuple[int, int], a: int, b: int
) -> None:
    r = any_rate(price, fee, inc)
    shorter, longer = sorted((a, b))
    assert call_cost(r, shorter) <= call_cost(r, longer)


@given(prices, prices, increments, durations, durations)
def test_charging_in_slices_costs_the_same_as_at_once(
    price: int, fee: int, inc: tuple[int, int], a: int, b: int
) -> None:
    """Cumulative charges telescope: (cost(a) - 0) + (cost(b) - cost(a)) == cost(b)."""
    r = any_rate(price, fee, inc)
    first, total = sorted((a, b))
    assert call_cost(r, first) + (call_cost(r, total) - call_cost(r, first)) == call_cost(r, total)


@given(st.integers(1, 5 * MICRO), prices, increments, st.integers(0, 50 * MICRO))
def test_affordable_seconds_is_the_last_second_that_fits(
    price: int, fee: int, inc: tuple[int, int], budget: int
) -> None:
    r = any_rate(price, fee, inc)
    seconds = affordable_seconds(r, budget, limit=10**12)
    if seconds is None:
        assert call_cost(r, 0) > budget
        return
    assert call_cost(r, seconds) <= budget
    assert call_cost(r, seconds + 1) > budget


@given(st.integers(1, 5 * MICRO), prices, st.integers(0, 50 * MICRO))
def test_with_one_second_increments_plus_one_second_never_fits(
    price: int, fee: int, budget: int
) -> None:
    r = any_rate(price, fee, (1, 1))
    seconds = affordable_seconds(r, budget, limit=10**12)
    if seconds is not None:
        assert call_cost(r, seconds) <= budget < call_cost(r, seconds + 1)
