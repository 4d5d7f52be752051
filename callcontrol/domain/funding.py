"""Funding rules without I/O: prices, the states of a payment attempt, auto-recharge policy.

Prices are integers in the currency's smallest unit (cents) for ONE credit; a purchase of
``credits_micro`` micro-credits costs ``credits_micro * price / 1_000_000`` minor units,
which must come out whole: an amount whose price is not a whole number of cents is refused
(``InvalidInput``), never rounded.

A payment attempt moves through these states (``ATTEMPT_STATES``)::

    created --> unknown --> (re-sent with the same idempotency key by the reconciler)
       |           |
       +-----------+--> pending -------------+
       |                                      v
       +--> needs_customer --> succeeded <----+      succeeded is final: credited once
       +--> failed --------^                        (a re-read may still find a failed or
                                                      3-D Secure payment paid later)

Auto-recharge reacts to a declined card by what the decline says (``decline_action``): a
hard decline, a 3-D Secure demand or a code nobody knows turns it off; a soft one waits
``retry_delays[n]`` and tries again, and after ``MAX_SOFT_DECLINES`` in a row it turns off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from callcontrol.domain.money import MICRO, format_credits
from callcontrol.errors import InvalidInput

__all__ = [
    "ACTIVE_STATES",
    "ATTEMPT_STATES",
    "MAX_SOFT_DECLINES",
    "Attempt",
    "AttemptKind",
    "AttemptState",
    "AutoRecharge",
    "DeclineAction",
    "Flow",
    "MethodKind",
    "Pricing",
    "StoredMethod",
    "decline_action",
    "month_start",
    "next_month_start",
    "parse_delays",
    "retry_at",
]

AttemptKind = Literal["purchase", "auto_recharge"]
AttemptState = Literal["created", "unknown", "pending", "needs_customer", "succeeded", "failed"]
ATTEMPT_STATES: tuple[AttemptState, ...] = (
    "created",
    "unknown",
    "pending",
    "needs_customer",
    "succeeded",
    "failed",
)
ACTIVE_STATES: tuple[AttemptState, ...] = ("created", "unknown", "pending")
"""Attempts whose money may still arrive: they count against the monthly cap."""

MAX_SOFT_DECLINES = 3
MethodKind = Literal["card", "bank_transfer"]
Flow = Literal["charge", "checkout"]


@dataclass(frozen=True, slots=True)
class StoredMethod:
    """A saved payment method as we keep it: never a card number."""

    id: int
    provider: str
    provider_ref: str | None
    kind: MethodKind
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    label: str
    is_default: bool

    def describe(self) -> str:
        """``card visa ****4242 (12/2034)`` or ``bank transfer / invoice: <label>``."""
        if self.kind == "card":
            expiry = f" ({self.exp_month:02d}/{self.exp_year})" if self.exp_year else ""
            return f"card {self.brand} ****{self.last4}{expiry}"
        return f"bank transfer / invoice{': ' + self.label if self.label else ''}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One purchase or auto-recharge at the provider; ``id`` is its idempotency key."""

    id: str
    kind: AttemptKind
    state: AttemptState
    flow: Flow
    credits_micro: int
    amount_minor: int
    currency: str
    provider: str
    customer_id: str
    method_id: int | None
    method_ref: str | None
    provider_payment_id: str | None
    decline_code: str | None
    message: str
    ledger_entry_id: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def ledger_key(self) -> str:
        """The ledger's idempotency key: the credit enters the ledger once, whoever books it."""
        return f"purchase:{self.id}"


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    """The wallet's auto-recharge settings and state."""

    enabled: bool
    threshold_micro: int
    amount_micro: int
    method_id: int | None
    monthly_cap_micro: int | None
    in_flight: str | None
    failures: int
    retry_at: datetime | None
    low_notified: bool
    off_reason: str | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class Pricing:
    """What one credit costs, and how much one purchase may buy (micro-credits)."""

    credit_price_minor: int
    currency: str
    minimum_micro: int
    maximum_micro: int

    def price_of(self, credits_micro: int) -> int:
        """The price in minor units of ``credits_micro``; InvalidInput if out of bounds
        or not a whole number of minor units."""
        if credits_micro < self.minimum_micro or credits_micro > self.maximum_micro:
            raise InvalidInput(
                f"a purchase is between {format_credits(self.minimum_micro)} and "
                f"{format_credits(self.maximum_micro)} credits, "
                f"not {format_credits(credits_micro)}"
            )
        minor, rest = divmod(credits_micro * self.credit_price_minor, MICRO)
        if rest:
            raise InvalidInput(
                f"{format_credits(credits_micro)} credits at {self.credit_price_minor} "
                f"{self.currency} minor units per credit is not a whole amount: "
                "choose an amount that is"
            )
        return minor


DeclineAction = Literal["retry", "switch_off"]


def decline_action(*, retryable: bool, hard: bool, failures_in_a_row: int) -> DeclineAction:
    """What auto-recharge does after its ``failures_in_a_row``-th decline in a row."""
    if hard or not retryable or failures_in_a_row >= MAX_SOFT_DECLINES:
        return "switch_off"
    return "retry"


def parse_delays(text: str) -> tuple[int, ...]:
    """``"3600,21600,86400"`` -> seconds; ValueError with the reason if not that."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError("must be positive whole seconds separated by commas, e.g. 3600,21600")
    return tuple(int(part) for part in parts)


def retry_at(now: datetime, delays: tuple[int, ...], failures_in_a_row: int) -> datetime:
    """When to try again after the n-th soft decline (the last delay repeats)."""
    index = min(max(failures_in_a_row, 1), len(delays)) - 1
    return now + timedelta(seconds=delays[index])


def month_start(now: datetime) -> datetime:
    """The first instant of ``now``'s calendar month, UTC: the monthly cap's window."""
    utc = now.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    """The first instant of the calendar month after ``now``'s, UTC."""
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)
