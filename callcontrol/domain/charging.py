"""Charging a live call in slices: the arithmetic, with no I/O.

A call is charged as it goes so that the PBX, not the app, enforces the limit
(DESIGN.md, "Charging: reserve, let the PBX enforce, settle"):

1. **Authorize** before answering: ``authorize(rate, available)`` needs the
   connection fee plus the first billing block.
2. At answer (``elapsed_s=0``) and then every ``interval`` seconds, ``next_step``
   says what to **charge now** (the cumulative cost of the elapsed time minus what
   was charged), how much **more to hold** for the next slice, and ``paid_until``:
   the second (since answer) that the call's charges plus its hold pay for. The
   caller sets ``TIMEOUT(absolute)`` to ``paid_until - elapsed_s``. When the credits
   end inside the slice, ``cut_off`` is True and ``paid_until`` is the exact second
   they run out: the PBX ends the call there.
3. On hangup, ``final_charge(rate, duration_s, charged_so_far)`` gives the billable
   seconds, the cost and what is still to charge; the caller releases the hold.

Seconds are whole seconds since answer; pass the floor of the measured talk time
(a call of 600.4 s is 600 s), which is what the PBX's timeout guarantees to fit.

Worked example, 10 credits, 1 credit/min, no fee, ``60/60``, interval 60 s:

    elapsed  charge now  hold after  paid_until  cut_off   (each tick 5 s early)
       0        0           1           60        no
      55        1           1          115        no     (55 s bill as the 1st minute)
     110        1           1          170        no
     ...
     495        1           1          555        no
     550        1           0          600        yes    (the PBX ends it at 600 s)

At ``30/6`` with 0.5 credit and 1 credit/min, the first 30 s block costs 0.5: paid
until 30 s exactly. With a 0.1 connection fee, 10 credits pay the fee and 9.9
minutes: 594 s at ``1/1``, 540 s at ``60/60`` (the 10th minute is not affordable).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callcontrol.domain.money import format_credits
from callcontrol.domain.rating import Rate, affordable_seconds, billable_seconds, call_cost

__all__ = [
    "DEFAULT_INTERVAL",
    "Authorization",
    "ChargeState",
    "ChargeStep",
    "Settlement",
    "authorize",
    "final_charge",
    "next_step",
    "paid_seconds",
]

DEFAULT_INTERVAL = 60
"""Seconds between debits of a live call (the slice held in advance)."""


class ChargeState(StrEnum):
    """A call record's charging state (``call_records.charge_state``)."""

    AUTHORIZED = "authorized"  # rate found, credits held: the call is being charged
    CHARGING = "charging"  # written by earlier versions at hangup; read like AUTHORIZED
    SETTLED = "settled"  # charged in full, hold released
    FREE = "free"  # not rated (a call between users)
    REFUSED_NO_CREDIT = "refused_no_credit"
    REFUSED_NO_RATE = "refused_no_rate"


@dataclass(frozen=True, slots=True)
class Authorization:
    """Whether a call may start: ``required`` = connection fee + first block."""

    allowed: bool
    required: int
    reason: str | None = None


def authorize(rate: Rate, available: int) -> Authorization:
    """May a call at ``rate`` start with ``available`` micro-credits?"""
    required = call_cost(rate, rate.first_increment)
    if available >= required:
        return Authorization(True, required)
    return Authorization(
        False,
        required,
        f"insufficient credits: {format_credits(available)} available, "
        f"{format_credits(required)} needed (connection fee and first "
        f"{rate.first_increment} s)",
    )


def paid_seconds(rate: Rate, charged: int, held: int, *, limit: int) -> int:
    """The second (since answer, at most ``limit``) that ``charged + held`` pays up to.

    0 when not even the connection fee is covered. Use it after a hold came back
    smaller than ``next_step`` planned (another call took the credits meanwhile).
    """
    paid = affordable_seconds(rate, charged + held, limit=limit)
    return 0 if paid is None else paid


@dataclass(frozen=True, slots=True)
class ChargeStep:
    """What to do at one tick of a live call; amounts in micro-credits.

    Apply in order: ``Wallet.charge(charge_now)`` (if > 0), then
    ``Wallet.hold_up_to(hold_more)`` (if > 0), then set the timeout to
    ``paid_until - elapsed`` seconds.
    """

    charge_now: int
    hold_more: int
    paid_until: int
    cut_off: bool
    shortfall: int = 0  # due but not payable (only when the call overran its paid time)


def next_step(
    rate: Rate,
    *,
    elapsed_s: int,
    charged: int,
    held: int,
    available: int,
    interval: int = DEFAULT_INTERVAL,
) -> ChargeStep:
    """Plan the tick at ``elapsed_s`` seconds after answer.

    ``charged``: what this call was charged so far; ``held``: its current hold;
    ``available``: the wallet's available credits (other than this hold).
    The charge is the cumulative cost of the elapsed time minus ``charged``, capped
    at ``held + available`` (the wallet never goes negative; any rest is
    ``shortfall``). The hold tops the call up to the cost of ``elapsed_s + interval``
    as far as ``available`` allows.
    """
    if elapsed_s < 0 or interval < 1:
        raise ValueError("elapsed_s >= 0 and interval >= 1 second")
    if min(charged, held, available) < 0:
        raise ValueError("amounts are >= 0 micro-credits")
    due = max(0, call_cost(rate, elapsed_s) - charged)
    charge_now = min(due, held + available)
    held_after = held - min(charge_now, held)
    available_after = available - max(0, charge_now - held)
    charged_after = charged + charge_now
    slice_end = elapsed_s + interval
    need = call_cost(rate, slice_end) - charged_after - held_after
    hold_more = max(0, min(need, available_after))
    paid = paid_seconds(rate, charged_after, held_after + hold_more, limit=slice_end)
    return ChargeStep(
        charge_now=charge_now,
        hold_more=hold_more,
        paid_until=max(paid, elapsed_s),
        cut_off=paid < slice_end,
        shortfall=due - charge_now,
    )


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of a call: its billable seconds and cost, and what is left to charge.

    ``excess`` > 0 only if more was charged than the final cost (a clock that
    went backwards): the caller refunds it.
    """

    billable_seconds: int
    cost: int
    charge_now: int
    excess: int = 0


def final_charge(
    rate: Rate, duration_s: int, charged_so_far: int, *, answered: bool = True
) -> Settlement:
    """Settle a call of ``duration_s`` talk seconds that was charged ``charged_so_far``."""
    cost = call_cost(rate, duration_s, answered=answered)
    billable = billable_seconds(duration_s, rate.first_increment, rate.next_increment)
    return Settlement(
        billable_seconds=billable,
        cost=cost,
        charge_now=max(0, cost - charged_so_far),
        excess=max(0, charged_so_far - cost),
    )
