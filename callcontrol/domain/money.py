"""Money: integer micro-credits, and the values of the wallet and its ledger.

The money model
---------------

The organisation has one **wallet**. Its unit is the *credit*; every amount in the
product is an ``int`` of **micro-credits** (1 credit = 1,000,000 micro-credits),
never a float: text is parsed digit by digit (``parse_credits``) and printed the
same way (``format_credits``), so ``0.1 + 0.2`` is exactly ``0.3`` here.

The wallet's **ledger** is append-only. Every change of the balance is one
``LedgerEntry``: a signed amount (credits in > 0, charges < 0), a ``LedgerKind``,
a reference (the call id for call charges), a unique idempotency key (a retried
operation finds its entry instead of applying twice) and the balance right after
it. Hence the invariants, checked by ``Wallet.audit`` and partly by the database::

    balance        == sum(ledger amounts)          == the last entry's balance_after
    held           == sum(holds)                    >= 0
    available      == balance - held                >= 0   (the wallet never goes negative)
    balance_after  == previous balance_after + amount, entry by entry

A **hold** reserves credits for a live call: they stay in the balance but are not
*available* to other calls. Charging a call moves credits out of its hold into a
ledger entry; hanging up releases what is left. Nothing here rounds: rounding
happens once, in ``callcontrol.domain.rating.call_cost``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from callcontrol.config import shown
from callcontrol.errors import InvalidInput

__all__ = [
    "MAX_AMOUNT_MICRO",
    "MAX_AMOUNT_TEXT",
    "MAX_DESCRIPTION",
    "MICRO",
    "Hold",
    "LedgerEntry",
    "LedgerKind",
    "WalletState",
    "format_credits",
    "parse_credits",
]

MICRO = 1_000_000
"""Micro-credits per credit."""

DECIMALS = 6
MAX_AMOUNT_MICRO = 1_000_000 * MICRO
"""The largest amount an admin may type: one million credits."""

MAX_AMOUNT_TEXT = 40
"""The longest text ``parse_credits`` reads: checked before converting digits."""

MAX_DESCRIPTION = 256
"""The longest description (an adjustment's reason) a ledger entry keeps."""

_AMOUNT = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")


def parse_credits(
    text: str, *, allow_negative: bool = False, maximum: int = MAX_AMOUNT_MICRO
) -> int:
    """``"12"``, ``"0.015"``, ``"-3.5"`` (if allowed) -> micro-credits, exactly.

    At most 6 decimal places; no exponents, no ``nan``/``inf``, no thousands
    separators; at most ``MAX_AMOUNT_TEXT`` characters; the magnitude may not exceed
    ``maximum`` (micro-credits; default one million credits). Every refusal is an
    ``InvalidInput`` saying why.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"an amount of credits is text like 12 or 0.015, not {shown(text)}")
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("an amount of credits is required")
    if len(stripped) > MAX_AMOUNT_TEXT:  # before int(): no conversion of huge digit strings
        raise InvalidInput(
            f"{shown(text)} is not an amount of credits: at most {MAX_AMOUNT_TEXT} "
            f"characters, and at most {format_credits(maximum)} credits"
        )
    match = _AMOUNT.fullmatch(stripped)
    if match is None:
        raise InvalidInput(
            f"{shown(text)} is not an amount of credits: write digits with an optional "
            "decimal point, e.g. 12 or 0.015"
        )
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > DECIMALS:
        raise InvalidInput(
            f"{shown(text)} has too many decimal places: at most {DECIMALS} (one micro-credit)"
        )
    micro = int(whole) * MICRO + int(fraction.ljust(DECIMALS, "0"))
    if sign == "-" and micro:
        if not allow_negative:
            raise InvalidInput(f"{shown(text)} is negative: give a positive amount")
        micro = -micro
    if abs(micro) > maximum:
        limit = format_credits(maximum)
        if micro < 0:
            raise InvalidInput(f"{shown(text)} is too small: at least -{limit} credits")
        raise InvalidInput(f"{shown(text)} is too large: at most {limit} credits")
    return micro


def format_credits(micro: int) -> str:
    """Micro-credits as text with exactly 6 decimals: ``12015000`` -> ``"12.015000"``.

    The one printed form of an amount everywhere (CLI, logs, messages);
    ``parse_credits`` reads it back unchanged.
    """
    if isinstance(micro, bool) or not isinstance(micro, int):
        raise TypeError(f"amounts are int micro-credits, not {type(micro).__name__}")
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{fraction:06d}"


class LedgerKind(StrEnum):
    """Why the balance changed. The database has a CHECK on this closed set."""

    PURCHASE = "purchase"  # credits bought by the admin
    AUTO_RECHARGE = "auto_recharge"  # credits bought automatically below the threshold
    CALL_CHARGE = "call_charge"  # a call's usage (negative)
    NUMBER_PURCHASE = "number_purchase"  # buying a number (negative)
    NUMBER_RENTAL = "number_rental"  # a number's periodic rent (negative)
    REFUND = "refund"  # money given back (positive)
    ADJUSTMENT = "adjustment"  # an admin's correction, either sign, with a reason


CREDIT_KINDS = frozenset(
    {LedgerKind.PURCHASE, LedgerKind.AUTO_RECHARGE, LedgerKind.REFUND, LedgerKind.ADJUSTMENT}
)
"""Kinds ``Wallet.credit`` may write (money in)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One immutable change of the balance."""

    id: int
    created_at: datetime
    kind: LedgerKind
    amount: int  # micro-credits, signed
    reference: str | None
    idempotency_key: str
    description: str
    balance_after: int  # micro-credits


@dataclass(frozen=True, slots=True)
class Hold:
    """Credits reserved for one live call (``amount`` >= 0 micro-credits)."""

    call_id: str
    amount: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WalletState:
    """The wallet at one instant, in micro-credits: ``available = balance - held``."""

    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held
