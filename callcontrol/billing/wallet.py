"""The wallet service: credits in, holds for live calls, call charges, the audit.

The money model is described in ``callcontrol.domain.money``. ``Wallet`` checks its
input (int micro-credits, kinds, idempotency keys), turns the store's refusals into
billing errors (InsufficientCredits, ChargeRefused) and retries with another amount
into Conflict, and logs what came in. The store does the rest: each write is atomic
and decides from the locked wallet row, on PostgreSQL in one statement, on SQLite in
one short write transaction. ``callcontrol.store.wallet`` says how each database keeps
concurrency honest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from callcontrol.billing.errors import ChargeRefused, InsufficientCredits
from callcontrol.domain.charging import Settlement
from callcontrol.domain.money import (
    CREDIT_KINDS,
    FEE_KINDS,
    MAX_DESCRIPTION,
    ChainHead,
    Hold,
    LedgerEntry,
    LedgerKind,
    WalletState,
    format_credits,
)
from callcontrol.domain.text import check_text
from callcontrol.errors import Conflict, InvalidInput
from callcontrol.store.db import Database
from callcontrol.store.wallet import (
    Posted,
    Refused,
    Settled,
    Ticked,
    TickPlan,
    Work,
    wallet_store_for,
)

__all__ = ["ChargeResult", "Wallet"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_KEY_LENGTH = 128
MAX_LEDGER_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """A call charge: its ledger entry, whether it was a retry, the call's hold after."""

    entry: LedgerEntry
    duplicate: bool
    hold_left: int


def _amount(value: int, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is int micro-credits, not {type(value).__name__}")
    if value < minimum:
        raise InvalidInput(f"{what} must be at least {format_credits(minimum)} credits")
    return value


def _key(value: str) -> str:
    if not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidInput(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")
    return value


class Wallet:
    """The organisation's wallet (one per database), on the store for its dialect."""

    def __init__(self, db: Database) -> None:
        self._store = wallet_store_for(db)
        self._observers: list[Callable[[], None]] = []

    def observe(self, spent: Callable[[], None]) -> None:
        """Call ``spent()`` after every write that may have lowered ``available`` (a
        charge, a hold, a debit). It runs on the writer's path: it must only note the
        fact (e.g. set an ``asyncio.Event``), never wait or do I/O."""
        self._observers.append(spent)

    def _spent(self) -> None:
        for spent in self._observers:
            spent()

    # ---- reading -------------------------------------------------------------------------

    async def balance(self) -> WalletState:
        return await self._store.state()

    async def ledger(self, limit: int = 50) -> list[LedgerEntry]:
        """The newest ledger entries first."""
        if not 1 <= limit <= MAX_LEDGER_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LEDGER_LIMIT}")
        return await self._store.entries(limit)

    async def last_credit_id(self) -> int:
        """The newest entry that added credits (0 if none). Live calls poll it to extend
        their limits; call charges do not move it, so a busy wallet does not wake them."""
        return await self._store.last_credit_id()

    async def open_holds(self) -> list[Hold]:
        """Every hold, oldest first: the calls to settle after a crash."""
        return await self._store.holds()

    async def hold_of(self, call_id: str) -> int:
        """The call's hold in micro-credits (0 if none)."""
        hold = await self._store.hold_of(call_id)
        return 0 if hold is None else hold.amount

    async def charged_for(self, call_id: str) -> int:
        """What the ledger says the call was charged so far (net of refunds)."""
        return await self._store.charged_for(call_id)

    async def funds_of(self, call_id: str) -> tuple[int, int]:
        """``charged_for`` and ``hold_of`` of a call, as one view (one transaction)."""
        charged, hold = await self._store.funds_of(call_id)
        return charged, 0 if hold is None else hold.amount

    async def audit(self, anchor: ChainHead | None = None) -> list[str]:
        """Broken invariants in words; empty when clean (see ``domain.money``).

        The ledger's hash chain is recomputed and the first broken entry named. With
        ``anchor`` (a ``chain_head`` recorded earlier, outside the database) the
        audit also checks that the anchored entry still has that hash: what a
        forger who recomputes the chain, or cuts its newest entries and rewinds the
        head, cannot fake.
        """
        return await self._store.audit(anchor)

    async def chain_head(self) -> ChainHead:
        """The newest ledger entry's id and hash: print it with the audit so that
        operators can keep it, outside the database, as a later audit's anchor."""
        return await self._store.chain_head()

    # ---- money in and corrections --------------------------------------------------------

    async def credit(
        self,
        amount: int,
        kind: LedgerKind,
        reference: str | None,
        idempotency_key: str,
        description: str = "",
    ) -> LedgerEntry:
        """Add ``amount`` (> 0) to the balance; a repeated key returns the first entry."""
        _amount(amount, "a credit")
        if kind not in CREDIT_KINDS:
            raise InvalidInput(f"{kind} is not a kind of credit")
        description = check_text(description, "a credit's description", max_length=MAX_DESCRIPTION)
        return await self._post(kind, amount, reference, _key(idempotency_key), description)

    async def debit(
        self,
        amount: int,
        kind: LedgerKind,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> LedgerEntry:
        """Take a fee of ``amount`` (> 0) from the available credits: a number's
        purchase or rent. One atomic write (like every other): InsufficientCredits,
        and nothing taken, when the available credits do not cover it; a repeated
        key returns the first entry and takes nothing again."""
        _amount(amount, "a fee")
        if kind not in FEE_KINDS:
            raise InvalidInput(f"{kind} is not a kind of fee")
        description = check_text(description, "a fee's description", max_length=MAX_DESCRIPTION)
        return await self._post(kind, -amount, reference, _key(idempotency_key), description)

    async def adjust(
        self,
        signed_amount: int,
        reason: str,
        *,
        idempotency_key: str | None = None,
        reference: str | None = None,
    ) -> LedgerEntry:
        """A correction of either sign, with a reason (plain text on one line, at most
        ``MAX_DESCRIPTION`` characters). A negative one may use only available credits
        (InsufficientCredits otherwise): held credits stay held."""
        if isinstance(signed_amount, bool) or not isinstance(signed_amount, int):
            raise TypeError("an adjustment is int micro-credits")
        if signed_amount == 0:
            raise InvalidInput("an adjustment of 0 changes nothing")
        if not reason.strip():
            raise InvalidInput("an adjustment needs a reason")
        reason = check_text(reason, "the adjustment's reason", max_length=MAX_DESCRIPTION)
        key = _key(idempotency_key or f"adjustment:{uuid.uuid4()}")
        return await self._post(LedgerKind.ADJUSTMENT, signed_amount, reference, key, reason)

    async def _post(
        self, kind: LedgerKind, amount: int, reference: str | None, key: str, description: str
    ) -> LedgerEntry:
        posted = await self._store.post(
            kind=kind,
            amount=amount,
            reference=reference,
            idempotency_key=key,
            description=description,
        )
        if isinstance(posted, Refused):
            raise InsufficientCredits(
                f"cannot take {format_credits(-amount)} credits: only "
                f"{format_credits(posted.available)} available"
            )
        if posted.duplicate:
            return self._same(posted.entry, kind, amount)
        if amount < 0:
            self._spent()
        entry = posted.entry
        log.info("wallet %s %s (%s) -> %s", kind, format_credits(amount), key, entry.balance_after)
        return entry

    @staticmethod
    def _same(entry: LedgerEntry, kind: LedgerKind, amount: int) -> LedgerEntry:
        if entry.kind != kind or entry.amount != amount:
            raise Conflict(
                f"idempotency key {entry.idempotency_key!r} was used for "
                f"{entry.kind} {format_credits(entry.amount)}"
            )
        return entry

    # ---- holds ---------------------------------------------------------------------------

    async def hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold of ``amount`` if available; False (nothing held) if not.

        Conflict if the call already has a hold (``hold_up_to`` adds to one).
        """
        _amount(amount, "a hold", minimum=0)
        held = await self._store.hold(call_id, amount)
        if held and amount:
            self._spent()
        return held

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        """Hold as much as available, up to ``wanted``, creating or extending the call's
        hold; returns how much was added (0 when nothing is available)."""
        _amount(wanted, "a hold", minimum=0)
        added = await self._store.hold_up_to(call_id, wanted)
        if added:
            self._spent()
        return added

    # ---- charging and releasing ----------------------------------------------------------

    async def charge(
        self, call_id: str, amount: int, idempotency_key: str, reference: str | None = None
    ) -> ChargeResult:
        """Debit a call: a ``call_charge`` entry of ``-amount`` and the call's hold
        reduced by as much of it as it covers, atomically.

        The rest, if the hold is smaller, comes from ``available``; beyond that the
        charge is refused (ChargeRefused) and nothing changes. ``reference`` defaults
        to the call id (the audit matches call charges to call records by it). A
        repeated key returns the first charge (``duplicate=True``) and charges nothing.
        """
        _amount(amount, "a charge")
        posted = await self._store.charge(
            call_id=call_id,
            amount=amount,
            reference=call_id if reference is None else reference,
            idempotency_key=_key(idempotency_key),
            description=f"call {call_id}",
        )
        posted = self._charged(call_id, amount, posted)
        return ChargeResult(
            entry=posted.entry, duplicate=posted.duplicate, hold_left=posted.hold_left
        )

    def _charged(self, call_id: str, amount: int, posted: Posted | Refused) -> Posted:
        """A call charge's outcome checked: ChargeRefused, or Conflict for a key used
        for another amount; the observers told of a new one."""
        if isinstance(posted, Refused):
            raise ChargeRefused(
                f"call {call_id}: charge of {format_credits(amount)} exceeds its hold "
                f"{format_credits(posted.hold)} + available {format_credits(posted.available)}"
            )
        if posted.duplicate:
            self._same(posted.entry, LedgerKind.CALL_CHARGE, -amount)
        else:
            self._spent()
        return posted

    async def release(self, call_id: str) -> int:
        """Drop the call's hold; the amount released (0 if it had none). Idempotent."""
        return await self._store.release(call_id)

    # ---- a call's writes joined with its record's (``store.wallet.callpath``) -------------

    async def open_call(
        self, call_id: str, amount: int, *, record: Work[object] | None, refused: Work[object]
    ) -> bool:
        """``record`` (the call record's start, if not written yet), then ``hold``; if
        the hold is refused, ``refused`` (the record says why). One transaction on
        SQLite."""
        _amount(amount, "a hold", minimum=0)
        opened = await self._store.open_call(call_id, amount, record=record, refused=refused)
        if opened.held and amount:
            self._spent()
        return opened.held

    async def tick(
        self, call_id: str, plan: TickPlan, *, also: Work[object] | None = None
    ) -> Ticked:
        """A charging tick: ``also`` (the record's answer), the wallet read, the charge
        and the next hold ``plan`` decides from it; ChargeRefused as ``charge``. One
        transaction on SQLite."""
        ticked = await self._store.tick(call_id, plan, also=also)
        if ticked.posted is not None:
            self._charged(call_id, ticked.charged, ticked.posted)
        if ticked.added:
            self._spent()
        return ticked

    async def settle(
        self,
        call_id: str,
        decide: Callable[[int], Settlement],
        *,
        also: Callable[[Settlement], Work[T]],
    ) -> Settled[T]:
        """A call's settlement: ``decide`` (from what the ledger says it was charged)
        the final charge or refund, release its hold, ``also`` (the record's cost and
        end). ChargeRefused as ``charge`` (nothing of it applied). One transaction on
        SQLite."""
        settled = await self._store.settle(call_id, decide, also=also)
        if settled.posted is not None:
            self._charged(call_id, settled.settlement.charge_now, settled.posted)
        if isinstance(settled.refund, Refused):  # pragma: no cover - a credit is never refused
            raise Conflict(f"call {call_id}: its refund was refused")
        if settled.refund is not None:
            self._same(settled.refund.entry, LedgerKind.REFUND, settled.settlement.excess)
        return settled
