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

The ledger's hash chain
-----------------------

The ledger is also **tamper-evident**. Each entry carries ``entry_hash``, a SHA-256
over the previous entry's hash and its own fields; the wallet row carries the hash
of the newest entry, the **chain head** (``GENESIS_HASH`` while the ledger is
empty). The write that appends an entry computes its hash and moves the head in
the same statement (PostgreSQL) or write transaction (SQLite), under the wallet
row's lock::

    entry_hash  = sha256(previous hash (32 bytes) || id || balance_after || body)
    body        = "callcontrol-ledger-v1" NUL || amount || created_at
                  || kind || reference || idempotency_key || description

Integers are 8-byte big-endian signed (``created_at`` as microseconds since the
Unix epoch, UTC); each text is a 4-byte big-endian signed length of its UTF-8 bytes
followed by them, a NULL reference the length -1 alone. ``entry_body`` and
``chain_hash`` are that encoding, the one definition: the stores pass ``body`` to
the database, which adds the parts it alone knows (previous hash, id,
balance_after) in the same layout (PostgreSQL in SQL, SQLite by calling
``chain_hash`` registered as ``ledger_hash``); the audit recomputes every hash
with them.

What the chain proves, honestly: an entry changed, inserted or removed in the
middle of the ledger, or a head that no longer matches the newest entry, is
reported by the audit, naming the first broken entry. It is a plain hash, not a
keyed MAC: someone who can write the database AND recomputes the chain from the
forged entry on (and moves the head) leaves a consistent chain, and so does
someone who removes the newest entries and rewinds the head. What defeats them is
an **external anchor**: the head (entry id and hash, ``ChainHead``) written down
outside the database, e.g. ``Wallet.chain_head`` recorded by the operator after
each clean audit; ``Wallet.audit(anchor=...)`` checks that the anchored entry
still has that hash. A keyed HMAC instead of the plain hash was left out on
purpose: the app writes every entry, so the key would live beside the database
credentials (and travel in every PostgreSQL statement), and it would stop only a
forger who has the database but not the app's configuration; the anchor stops
every forger and needs no secret.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from callcontrol.domain.text import shown
from callcontrol.errors import InvalidInput

__all__ = [
    "FEE_KINDS",
    "GENESIS_HASH",
    "MAX_AMOUNT_MICRO",
    "MAX_AMOUNT_TEXT",
    "MAX_DESCRIPTION",
    "MICRO",
    "ChainHead",
    "Hold",
    "LedgerEntry",
    "LedgerKind",
    "WalletState",
    "chain_hash",
    "entry_body",
    "format_credits",
    "is_hash",
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

FEE_KINDS = frozenset({LedgerKind.NUMBER_PURCHASE, LedgerKind.NUMBER_RENTAL})
"""Kinds ``Wallet.debit`` may write (fees out, other than calls)."""


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
    entry_hash: str  # hex SHA-256, chained over the previous entry's (see above)


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


# ---- the ledger's hash chain (see the module docstring) ---------------------------------

GENESIS_HASH = "0" * 64
"""The chain head of an empty ledger: the "previous hash" of the first entry."""

_BODY_TAG = b"callcontrol-ledger-v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = re.compile(r"[0-9a-f]{64}")


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    data = value.encode("utf-8")
    return struct.pack(">i", len(data)) + data


def entry_body(
    *,
    kind: str,
    amount: int,
    created_at: datetime,
    reference: str | None,
    idempotency_key: str,
    description: str,
) -> bytes:
    """The canonical encoding of an entry's own fields (all but id and balance_after,
    which the database assigns). ``created_at`` must be timezone-aware."""
    if created_at.tzinfo is None:
        raise ValueError(f"naive datetime {created_at!r}: a ledger time is aware UTC")
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return b"".join(
        (
            _BODY_TAG,
            struct.pack(">qq", amount, micros),
            _text(kind),
            _text(reference),
            _text(idempotency_key),
            _text(description),
        )
    )


def chain_hash(previous: str, entry_id: int, balance_after: int, body: bytes) -> str:
    """The hex hash of an entry: ``previous`` (hex) is the entry before it's, or
    ``GENESIS_HASH``. ValueError if ``previous`` is not a hash (``is_hash``)."""
    if not is_hash(previous):
        raise ValueError(f"{previous!r} is not a hex SHA-256")
    data = bytes.fromhex(previous) + struct.pack(">qq", entry_id, balance_after) + body
    return hashlib.sha256(data).hexdigest()


def is_hash(value: object) -> bool:
    """A lowercase hex SHA-256, as the chain stores them."""
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest entry's id (0: none) and hash (``GENESIS_HASH``: none). Written down
    outside the database, it is the anchor a later audit checks the chain against."""

    entry_id: int
    entry_hash: str

    def __str__(self) -> str:
        return f"{self.entry_id}:{self.entry_hash}"

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """``"1234:<64 hex digits>"`` (as printed) -> ChainHead; InvalidInput if not."""
        entry_id, _, entry_hash = text.strip().partition(":")
        entry_hash = entry_hash.lower()
        if re.fullmatch(r"[0-9]{1,18}", entry_id) is None or not is_hash(entry_hash):
            raise InvalidInput(
                f"{text!r} is not a chain head: write the entry id, a colon and the 64 hex "
                "digits of its hash, as the audit prints them"
            )
        return cls(int(entry_id), entry_hash)
