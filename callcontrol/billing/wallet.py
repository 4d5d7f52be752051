"""The wallet service: credits in, holds for live calls, call charges, the audit.

The money model is described in ``callcontrol.domain.money``. Each write (``credit``,
``adjust``, ``hold``, ``extend_hold``, ``hold_up_to``, ``charge``, ``release``) is:

- on PostgreSQL ONE statement (data-modifying CTEs, ``WalletRepository``) run in
  autocommit: it locks the wallet row first, decides from the row it locked (the
  newest), writes the wallet, the call's hold and the ledger entry, and commits, with
  no round trip to the client while the row is locked. At most the pool's size of
  them run at once per ``Wallet``; the rest wait in order.
- on SQLite one short transaction (BEGIN IMMEDIATE: the write lock is taken first)
  of two or three statements (UPDATE/INSERT/DELETE ... RETURNING), queued behind a
  per-Wallet asyncio.Lock so this process's writers don't sleep in the busy handler.

How concurrency stays honest:

- ``available`` is checked against the locked wallet row, in the same statement (or
  write transaction) that changes it, and by the CHECK constraints: of 50 calls
  racing for the last credits, exactly the affordable ones pass.
- Idempotency: a credit or a charge carries a key, unique in the ledger. A retry
  (after a timeout, a crash, a reconnect) finds the entry and applies nothing twice.
  When two retries race, the loser's statement fails on the unique key (PostgreSQL:
  nothing of it is applied) or is refused by the wallet; it then returns the
  winner's entry.
- A refusal is explained by a look after the statement (a fresh snapshot): a hold
  that exists, no hold to extend, too few credits. If the look contradicts the
  refusal (the wallet changed in between), ``hold``/``extend_hold`` try again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.pool import QueuePool

from callcontrol.billing.errors import ChargeRefused, InsufficientCredits
from callcontrol.domain.money import (
    CREDIT_KINDS,
    Hold,
    LedgerEntry,
    LedgerKind,
    WalletState,
    format_credits,
)
from callcontrol.errors import Conflict, InvalidInput, NotFound, StoreError
from callcontrol.store.billing import Posted, WalletRepository
from callcontrol.store.db import TRANSLATED_ERRORS, Database, translate_error

__all__ = ["ChargeResult", "Wallet"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_KEY_LENGTH = 128
MAX_LEDGER_LIMIT = 1000
_RETRIES = 3
_PG_WRITERS = 5


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


_NO_WALLET = "the wallet row is missing: run `callcontrol db upgrade`"


class Wallet:
    """The organisation's wallet (one per database)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # SQLite has one writer at a time; queueing this process's writers here
        # spares them SQLite's busy-handler sleeps (other processes still wait on
        # the file lock). PostgreSQL needs no such lock: the row lock queues them.
        self._sqlite_writers = asyncio.Lock() if db.dialect == "sqlite" else None
        # PostgreSQL: each write is one statement, run in autocommit (its own
        # transaction): no BEGIN/COMMIT round trips, and the wallet row stays locked
        # only while the server runs the statement, not while the client answers.
        self._autocommit = (
            None
            if db.dialect == "sqlite"
            else db.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # All writes queue on one row anyway: more of them at once than the pool keeps
        # connections would only open overflow connections (closed again on return,
        # a connect per operation). The rest wait here, in order.
        pool = db.engine.pool
        self._pg_writers = asyncio.Semaphore(
            max(1, pool.size()) if isinstance(pool, QueuePool) else _PG_WRITERS
        )

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[WalletRepository]:
        """One short write transaction (BEGIN IMMEDIATE on SQLite)."""
        async with AsyncExitStack() as stack:
            if self._sqlite_writers is not None:
                await stack.enter_async_context(self._sqlite_writers)
            session = await stack.enter_async_context(self._db.session(immediate=True))
            yield WalletRepository(session)

    @asynccontextmanager
    async def _op(self) -> AsyncIterator[WalletRepository]:
        """Where one wallet operation runs: on PostgreSQL a connection in autocommit
        (the operation is one statement; a look after it is a fresh snapshot), on
        SQLite one short write transaction (``_write``)."""
        if self._autocommit is None:
            async with self._write() as repo:
                yield repo
            return
        try:
            async with self._pg_writers, self._autocommit.connect() as connection:
                yield WalletRepository(connection)
        except TRANSLATED_ERRORS as error:
            raise translate_error(error, self._autocommit.url) from error

    async def _read(self, work: Callable[[WalletRepository], Awaitable[T]]) -> T:
        async with self._db.session() as session:
            return await work(WalletRepository(session))

    # ---- reading -------------------------------------------------------------------------

    async def balance(self) -> WalletState:
        state = await self._read(lambda repo: repo.state())
        if state is None:
            raise StoreError(_NO_WALLET)
        return state

    async def ledger(self, limit: int = 50) -> list[LedgerEntry]:
        """The newest ledger entries first."""
        if not 1 <= limit <= MAX_LEDGER_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LEDGER_LIMIT}")
        return await self._read(lambda repo: repo.entries(limit))

    async def last_entry_id(self) -> int:
        """The newest ledger entry's id (0 if none): poll it to notice credits added."""
        return await self._read(lambda repo: repo.last_entry_id())

    async def last_credit_id(self) -> int:
        """The newest entry that added credits (0 if none). Live calls poll it to extend
        their limits; call charges do not move it, so a busy wallet does not wake them."""
        return await self._read(lambda repo: repo.last_credit_id())

    async def open_holds(self) -> list[Hold]:
        """Every hold, oldest first: the calls to settle after a crash."""
        return await self._read(lambda repo: repo.holds())

    async def hold_of(self, call_id: str) -> int:
        """The call's hold in micro-credits (0 if none)."""
        hold = await self._read(lambda repo: repo.hold_of(call_id))
        return 0 if hold is None else hold.amount

    async def charged_for(self, call_id: str) -> int:
        """What the ledger says the call was charged so far (net of refunds)."""
        return await self._read(lambda repo: repo.charged_for(call_id))

    async def audit(self) -> list[str]:
        """Broken invariants in words; empty when clean (see ``domain.money``)."""
        async with self._write() as repo:  # the wallet row locked: one consistent view
            return await repo.audit()

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
        return await self._post(kind, amount, reference, _key(idempotency_key), description)

    async def adjust(
        self,
        signed_amount: int,
        reason: str,
        *,
        idempotency_key: str | None = None,
        reference: str | None = None,
    ) -> LedgerEntry:
        """A correction of either sign, with a reason. A negative one may use only
        available credits (InsufficientCredits otherwise): held credits stay held."""
        if isinstance(signed_amount, bool) or not isinstance(signed_amount, int):
            raise TypeError("an adjustment is int micro-credits")
        if signed_amount == 0:
            raise InvalidInput("an adjustment of 0 changes nothing")
        if not reason.strip():
            raise InvalidInput("an adjustment needs a reason")
        key = _key(idempotency_key or f"adjustment:{uuid.uuid4()}")
        return await self._post(
            LedgerKind.ADJUSTMENT, signed_amount, reference, key, reason.strip()
        )

    async def _post(
        self, kind: LedgerKind, amount: int, reference: str | None, key: str, description: str
    ) -> LedgerEntry:
        try:
            async with self._op() as repo:
                posted = await repo.post(
                    kind=kind,
                    amount=amount,
                    reference=reference,
                    idempotency_key=key,
                    description=description,
                )
                if posted is None:
                    # refused, or a same-key entry committed since the statement began
                    posted = await self._not_posted(repo, key, amount)
        except Conflict as error:
            if isinstance(error, InsufficientCredits):
                raise
            existing = await self._read(lambda repo: repo.entry_by_key(key))
            if existing is None:
                raise
            posted = Posted(existing, duplicate=True)
        if posted.duplicate:
            return self._same(posted.entry, kind, amount)
        entry = posted.entry
        log.info("wallet %s %s (%s) -> %s", kind, format_credits(amount), key, entry.balance_after)
        return entry

    @staticmethod
    async def _not_posted(repo: WalletRepository, key: str, amount: int) -> Posted:
        existing = await repo.entry_by_key(key)
        if existing is not None:
            return Posted(existing, duplicate=True)
        state = await repo.state()
        if state is None:
            raise StoreError(_NO_WALLET)
        raise InsufficientCredits(
            f"cannot take {format_credits(-amount)} credits: only "
            f"{format_credits(state.available)} available"
        )

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

        Conflict if the call already has a hold (use ``extend_hold``).
        """
        _amount(amount, "a hold", minimum=0)
        for _ in range(_RETRIES):
            try:
                async with self._op() as repo:
                    if await repo.hold(call_id, amount):
                        return True
                    state, hold = await repo.state(), await repo.hold_of(call_id)
            except Conflict as error:  # a hold inserted since the statement began
                raise Conflict(f"call {call_id} already has a hold") from error
            if state is None:
                raise StoreError(_NO_WALLET)
            if state.available < amount:
                return False
            if hold is not None:
                raise Conflict(f"call {call_id} already has a hold")
            # changed between the statement and the look (PostgreSQL): try again
        return False  # pragma: no cover - the wallet changing under every attempt

    async def extend_hold(self, call_id: str, delta: int) -> bool:
        """Add ``delta`` to the call's hold if available; False if not. NotFound: no hold."""
        _amount(delta, "a hold extension")
        for _ in range(_RETRIES):
            async with self._op() as repo:
                if await repo.extend_hold(call_id, delta):
                    return True
                state, hold = await repo.state(), await repo.hold_of(call_id)
            if state is None:
                raise StoreError(_NO_WALLET)
            if state.available < delta:
                return False
            if hold is None:
                raise NotFound(f"call {call_id} has no hold to extend")
            # changed between the statement and the look (PostgreSQL): try again
        return False  # pragma: no cover - the wallet changing under every attempt

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        """Hold as much as available, up to ``wanted``, creating or extending the call's
        hold; returns how much was added (0 when nothing is available)."""
        _amount(wanted, "a hold", minimum=0)
        async with self._op() as repo:
            got = await repo.hold_up_to(call_id, wanted)
            if got is None:
                raise StoreError(_NO_WALLET)
        return got

    # ---- charging and releasing ----------------------------------------------------------

    async def charge(
        self, call_id: str, amount: int, idempotency_key: str, reference: str | None = None
    ) -> ChargeResult:
        """Debit a call: a ``call_charge`` entry of ``-amount`` and the call's hold
        reduced by as much of it as it covers, in one transaction.

        The rest, if the hold is smaller, comes from ``available``; beyond that the
        charge is refused (ChargeRefused) and nothing changes. ``reference`` defaults
        to the call id (the audit matches call charges to call records by it). A
        repeated key returns the first charge (``duplicate=True``) and charges nothing.
        """
        _amount(amount, "a charge")
        key = _key(idempotency_key)
        reference = call_id if reference is None else reference
        try:
            async with self._op() as repo:
                posted = await repo.charge(
                    call_id=call_id,
                    amount=amount,
                    reference=reference,
                    idempotency_key=key,
                    description=f"call {call_id}",
                )
                if posted is None:
                    # refused, or a same-key charge committed since the statement began
                    posted = await self._not_charged(repo, call_id, amount, key)
        except Conflict as error:
            if isinstance(error, ChargeRefused):
                raise
            # the same key inserted since the statement began: nothing was applied
            async with self._db.session() as session:
                repo = WalletRepository(session)
                existing = await repo.entry_by_key(key)
                if existing is None:
                    raise
                hold = await repo.hold_of(call_id)
            posted = Posted(existing, duplicate=True, hold_left=0 if hold is None else hold.amount)
        if posted.duplicate:
            self._same(posted.entry, LedgerKind.CALL_CHARGE, -amount)
        return ChargeResult(
            entry=posted.entry, duplicate=posted.duplicate, hold_left=posted.hold_left
        )

    @staticmethod
    async def _not_charged(repo: WalletRepository, call_id: str, amount: int, key: str) -> Posted:
        existing = await repo.entry_by_key(key)
        hold = await repo.hold_of(call_id)
        held = 0 if hold is None else hold.amount
        if existing is not None:
            return Posted(existing, duplicate=True, hold_left=held)
        state = await repo.state()
        if state is None:
            raise StoreError(_NO_WALLET)
        raise ChargeRefused(
            f"call {call_id}: charge of {format_credits(amount)} exceeds its hold "
            f"{format_credits(held)} + available {format_credits(state.available)}"
        )

    async def release(self, call_id: str) -> int:
        """Drop the call's hold; the amount released (0 if it had none). Idempotent."""
        async with self._op() as repo:
            amount = await repo.release(call_id)
            if amount is None:
                raise StoreError(_NO_WALLET)
        return amount
