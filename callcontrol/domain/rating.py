"""Rating: which rate applies to a call, and what a call of a given length costs.

A ``Rate`` prices one kind of call: a direction (inbound, outbound), a location
(an E.164 prefix, or a country), optionally a number type, a price per minute, a
connection fee and billing increments ``first/next`` in seconds (``60/60``,
``30/6``, ``1/1``). All amounts are int micro-credits (see ``domain.money``).

Choosing a rate (``select_rate``), for one direction:

1. the rate with the **longest prefix** matching the number's digits (a rate with
   a number type matches only numbers of that type; at equal length, a typed rate
   beats an untyped one);
2. else the number's **country with its type** (``GB`` + ``mobile``);
3. else the number's **country without a type** (``GB``: every other GB number);
4. else none: the call is refused (calls are never free by accident).

Two rates with the same key (direction, prefix or country, type) are an error when a
rate file is imported (``rate_key``), so there are never ties.

Costing a call (``call_cost``), e.g. 0.10 credit/min, connection fee 0.01, ``30/6``:

- a 0 s answered call is billed 0 s and costs the fee: 0.010000;
- 1 s is billed 30 s (the first block): 0.01 + 0.10 * 30/60 = 0.060000;
- 31 s is billed 36 s (first block, then one 6 s block): 0.01 + 0.06 = 0.070000;
- 95 s is billed 96 s: 0.01 + 0.16 = 0.170000.

Rounding happens once, **up to a whole micro-credit, on the total per-minute part**
(``ceil(price_per_minute * billable_seconds / 60)``), never per block, so the cost of
a call is the same however many times it was charged in slices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from callcontrol.domain.numbers import NumberType

__all__ = [
    "MAX_CALL_SECONDS",
    "Direction",
    "Rate",
    "RateSet",
    "affordable_seconds",
    "billable_seconds",
    "call_cost",
    "rate_key",
    "select_rate",
]

MAX_CALL_SECONDS = 7 * 24 * 3600
"""The longest call ``affordable_seconds`` reports (a free rate is not unlimited)."""


class Direction(StrEnum):
    """Which way a rated call goes. Calls between users are not rated (free)."""

    INBOUND = "inbound"  # charged by the receiving number's country and type
    OUTBOUND = "outbound"  # charged by the destination's prefix / country and type


@dataclass(frozen=True, slots=True)
class Rate:
    """The price of one kind of call. ``prefix`` is digits without ``+``.

    Exactly one of ``prefix`` and ``country`` is set (rate files enforce it).
    """

    id: int | None
    direction: Direction
    prefix: str | None
    country: str | None
    number_type: NumberType | None
    price_per_minute: int  # micro-credits per 60 s
    connection_fee: int  # micro-credits, once per answered call
    first_increment: int  # seconds
    next_increment: int  # seconds
    description: str = ""

    def __post_init__(self) -> None:
        if self.first_increment < 1 or self.next_increment < 1:
            raise ValueError("billing increments are whole seconds >= 1")
        if self.price_per_minute < 0 or self.connection_fee < 0:
            raise ValueError("prices are >= 0 micro-credits")
        if (self.prefix is None) == (self.country is None):
            raise ValueError("a rate names a prefix or a country (exactly one)")

    @property
    def increments(self) -> str:
        return f"{self.first_increment}/{self.next_increment}"

    @property
    def location(self) -> str:
        return f"+{self.prefix}" if self.prefix is not None else str(self.country)


@dataclass(frozen=True, slots=True)
class RateSet:
    """One import of a rate file. The newest set is the rate table in force."""

    id: int
    source: str
    sha256: str
    rate_count: int
    imported_at: datetime


def rate_key(rate: Rate) -> tuple[str, str, str]:
    """What makes a rate unique: direction, ``+prefix`` or country, number type."""
    return (rate.direction.value, rate.location, rate.number_type or "")


def _matches_type(rate: Rate, number_type: NumberType | None) -> bool:
    return rate.number_type is None or rate.number_type == number_type


def select_rate(
    rates: Iterable[Rate],
    direction: Direction,
    e164: str,
    country: str | None,
    number_type: NumberType | None,
) -> Rate | None:
    """The rate for a call to/from ``e164`` (see the module docstring for the order)."""
    digits = e164.removeprefix("+")
    best_prefix: tuple[int, int, Rate] | None = None
    by_country: Rate | None = None
    by_country_untyped: Rate | None = None
    for rate in rates:
        if rate.direction != direction or not _matches_type(rate, number_type):
            continue
        if rate.prefix is not None:
            if digits.startswith(rate.prefix):
                score = (len(rate.prefix), rate.number_type is not None)
                if best_prefix is None or score > best_prefix[:2]:
                    best_prefix = (*score, rate)
        elif country is not None and rate.country == country:
            if rate.number_type is not None:
                by_country = rate
            else:
                by_country_untyped = rate
    if best_prefix is not None:
        return best_prefix[2]
    return by_country or by_country_untyped


def billable_seconds(duration_s: int, first: int, next_: int) -> int:
    """Seconds billed for ``duration_s`` of talk with increments ``first/next_``.

    0 s is 0; up to ``first`` s is ``first``; beyond, whole ``next_`` blocks, rounded
    up: ``billable_seconds(61, 60, 60) == 120``, ``billable_seconds(31, 30, 6) == 36``.
    """
    if duration_s < 0:
        raise ValueError(f"a duration is >= 0 seconds, not {duration_s}")
    if first < 1 or next_ < 1:
        raise ValueError("billing increments are whole seconds >= 1")
    if duration_s == 0:
        return 0
    if duration_s <= first:
        return first
    blocks = -(-(duration_s - first) // next_)  # ceil without floats
    return first + blocks * next_


def _per_minute_part(price_per_minute: int, billable: int) -> int:
    return -(-(price_per_minute * billable) // 60)  # ceil to a whole micro-credit


def call_cost(rate: Rate, duration_s: int, *, answered: bool = True) -> int:
    """Micro-credits for a call of ``duration_s`` talk seconds (counted from answer).

    ``connection_fee`` (answered calls only) + ``ceil(price_per_minute * billable / 60)``.
    """
    billable = billable_seconds(duration_s, rate.first_increment, rate.next_increment)
    fee = rate.connection_fee if answered else 0
    return fee + _per_minute_part(rate.price_per_minute, billable)


def affordable_seconds(rate: Rate, budget: int, *, limit: int = MAX_CALL_SECONDS) -> int | None:
    """The longest talk time, in whole seconds up to ``limit``, whose cost fits ``budget``.

    ``budget`` is everything the call may spend in total (what it was charged so far
    plus what it holds). The result ``d`` satisfies ``call_cost(rate, d) <= budget``
    and, unless ``d == limit``, ``call_cost(rate, d + 1) > budget``: it is the second
    at which the credits run out, where the PBX must end the call. It always ends a
    billing block (10 credits at 1 credit/min, ``60/60``: 600; at ``30/6`` with 0.25
    credit left after the first block: the block that the 0.25 still pays).
    None when not even the connection fee fits.
    """
    if limit < 0:
        raise ValueError("limit is >= 0 seconds")
    left = budget - rate.connection_fee
    if left < 0:
        return None
    if rate.price_per_minute == 0:
        return limit
    # ceil(price * billable / 60) <= left  <=>  price * billable <= 60 * left
    max_billable = (60 * left) // rate.price_per_minute
    first, next_ = rate.first_increment, rate.next_increment
    if max_billable < first:
        return 0
    seconds = first + ((max_billable - first) // next_) * next_
    return min(seconds, limit)
