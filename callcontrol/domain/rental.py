"""A number's rent: periods on the purchase's anniversary, and the ledger keys of its fees.

A number bought at ``bought_at`` is paid for one period at purchase (with its setup
fee, one ledger entry); each next period is charged on its anniversary: the same
day of each month at the same time (a day the month lacks falls on its last day:
bought on 31 January, renewed on 28 February, 31 March, ...). ``period_seconds``
replaces the calendar month by a fixed number of seconds (for tests and trials).

Every fee has an idempotency key that names the number, its ownership
(``generation``: how often the catalogue has released it before) and the period,
so that any number of processes, retries and catch-ups after downtime charge each
period of each ownership exactly once::

    number:+442079460150:g1:buy                     setup + first period
    number:+442079460150:g1:rent:20270128T093000Z   the period starting then

Unpaid (the wallet refused the rent): from the period's start the number has
``grace`` seconds, then it is suspended (refuses calls), and ``release_after``
seconds later it is released (back to the catalogue, after its ageing). A later
renewal that succeeds lifts a suspension.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RentalPolicy", "buy_key", "next_paid_until", "refund_key", "rent_key"]


@dataclass(frozen=True, slots=True)
class RentalPolicy:
    """How rent is charged: the period (0: a calendar month), the grace before a
    suspension, the time from suspension to release, and the ageing of a released
    number before the catalogue offers it again (all in seconds)."""

    period_seconds: int = 0
    grace: int = 7 * 86400
    release_after: int = 30 * 86400
    ageing: int = 90 * 86400
    reservation: int = 600


def _add_months(when: datetime, months: int) -> datetime:
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def next_paid_until(bought_at: datetime, paid_until: datetime, policy: RentalPolicy) -> datetime:
    """The end of the period that starts at ``paid_until`` (the next anniversary)."""
    if policy.period_seconds:
        return paid_until + timedelta(seconds=policy.period_seconds)
    months = (paid_until.year - bought_at.year) * 12 + paid_until.month - bought_at.month
    candidate = _add_months(bought_at, months)
    while candidate <= paid_until:
        months += 1
        candidate = _add_months(bought_at, months)
    return candidate


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


def buy_key(e164: str, generation: int) -> str:
    """The purchase's key: setup fee and first period, one entry."""
    return f"number:{e164}:g{generation}:buy"


def refund_key(e164: str, generation: int) -> str:
    """The refund of a purchase the catalogue could not complete."""
    return f"number:{e164}:g{generation}:buy:refund"


def rent_key(e164: str, generation: int, period_start: datetime) -> str:
    """The rent of the period that starts at ``period_start``."""
    return f"number:{e164}:g{generation}:rent:{_stamp(period_start)}"
