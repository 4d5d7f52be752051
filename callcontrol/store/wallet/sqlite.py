"""The wallet store on SQLite: each write is one short BEGIN IMMEDIATE transaction.

SQLite has one writer at a time and no data-modifying CTEs. Each write takes the
write lock at BEGIN (``Database.unit(immediate=True)``), so every read in it is
current, and runs the fewest plain statements (UPDATE, INSERT, DELETE ...
RETURNING; SQLite >= 3.35): two, three for a charge that uses a hold. The whole
transaction is one hand-off to the database's unit thread (``store.unit``), which
runs this process's units one after another: they never sleep in SQLite's busy
handler for each other (other processes still wait on the file lock there).
The ``sqlite_*`` functions are the writes inside a transaction the caller opened,
so that the call path can join a hold or a release with its call record's write.

A write that appends a ledger entry hashes it in its wallet UPDATE: the next id is
``MAX(id) + 1`` (current under the write lock), and ``ledger_hash`` (the Python
``domain.money.chain_hash``, registered on each connection by ``store.db``) moves
the chain head; the INSERT then writes that id and hash into the entry.

A write that applies nothing is explained by a look in the same transaction (the
same key's entry, a hold that exists, too few credits): under the write lock the
look always agrees with the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callcontrol.domain.charging import Settlement
from callcontrol.domain.money import ChainHead, LedgerEntry, LedgerKind
from callcontrol.errors import StoreError
from callcontrol.store.audit import audit_chain, audit_wallet
from callcontrol.store.db import Database, UnitExecutor
from callcontrol.store.models import utcnow
from callcontrol.store.wallet.callpath import (
    Opened,
    Settled,
    Ticked,
    TickPlan,
    Work,
    charge_description,
    final_key,
    refund_description,
    refund_key,
)
from callcontrol.store.wallet.common import (
    ENTRY,
    INSERT_ENTRY,
    NO_WALLET,
    Executor,
    Posted,
    Refused,
    SessionReads,
    WalletReads,
    entry,
    entry_params,
    explain_charge,
    explain_hold,
    explain_post,
    sql,
    sql_entries,
)

__all__ = [
    "SqliteStatements",
    "SqliteWalletStore",
    "sqlite_hold",
    "sqlite_hold_up_to",
    "sqlite_release",
]

T = TypeVar("T")

# The next entry's id, and its hash moved into the wallet's chain head: ledger_hash is
# ``domain.money.chain_hash``, registered on each connection (``store.db``). SET reads
# the row before the update; RETURNING the row after it.
_NEXT_ID = "(SELECT COALESCE(MAX(id), 0) + 1 FROM ledger_entries)"
_POST = sql(f"""
UPDATE wallets SET balance_micro = balance_micro + :amount,
    last_hash = ledger_hash(last_hash, {_NEXT_ID}, balance_micro + :amount, :body),
    updated_at = :now
WHERE id = :wallet_id AND balance_micro + :amount >= held_micro
  AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
RETURNING balance_micro, last_hash, {_NEXT_ID} AS entry_id
""")

_HOLD_OF = "COALESCE((SELECT amount_micro FROM holds WHERE call_id = :call_id), 0)"
_CHARGE = sql(f"""
UPDATE wallets SET balance_micro = balance_micro - :amount,
    held_micro = held_micro - MIN(:amount, {_HOLD_OF}),
    last_hash = ledger_hash(last_hash, {_NEXT_ID}, balance_micro - :amount, :body),
    updated_at = :now
WHERE id = :wallet_id
  AND balance_micro - :amount >= held_micro - MIN(:amount, {_HOLD_OF})
  AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
RETURNING balance_micro, last_hash, {_NEXT_ID} AS entry_id,
    MIN(:amount, {_HOLD_OF}) AS from_hold, {_HOLD_OF} AS hold
""")

_HOLD = sql("""
UPDATE wallets SET held_micro = held_micro + :amount, updated_at = :now
WHERE id = :wallet_id AND balance_micro - held_micro >= :amount
  AND NOT EXISTS (SELECT 1 FROM holds WHERE call_id = :call_id)
RETURNING id
""")

_ADD_TO_HOLD = sql("""
UPDATE holds SET amount_micro = amount_micro + :delta, updated_at = :now
WHERE call_id = :call_id
""")

# The hold first, by what the (unchanged) wallet row makes available; RETURNING reads
# that row too, so the wallet UPDATE after it adds the same amount.
_AVAILABLE = "(SELECT balance_micro - held_micro FROM wallets WHERE id = :wallet_id)"
_HOLD_UP_TO = sql(f"""
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
VALUES (:call_id, MAX(0, MIN(:wanted, COALESCE({_AVAILABLE}, 0))), :now, :now)
ON CONFLICT (call_id) DO UPDATE
SET amount_micro = amount_micro + excluded.amount_micro, updated_at = excluded.updated_at
RETURNING {_AVAILABLE} AS available
""")

_ADD_TO_HELD = sql("""
UPDATE wallets SET held_micro = held_micro + :amount, updated_at = :now
WHERE id = :wallet_id AND balance_micro - held_micro >= :amount
RETURNING id
""")

_INSERT_HOLD = sql("""
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
VALUES (:call_id, :amount, :now, :now)
""")

_RELEASE = sql("DELETE FROM holds WHERE call_id = :call_id RETURNING amount_micro")

_UNHOLD = sql("""
UPDATE wallets SET held_micro = held_micro - :amount, updated_at = :now
WHERE id = :wallet_id AND held_micro >= :amount
RETURNING id
""")

_APPEND = sql_entries(f"""
{INSERT_ENTRY}
VALUES (:entry_id, :now, :kind, :amount, :reference, :key, :description, :balance, :hash)
RETURNING {ENTRY}
""")


class SqliteStatements:
    """The statements of each write, in the caller's write transaction (BEGIN
    IMMEDIATE: every read is current). Each returns what it applied; None/False:
    nothing applied (refused, a duplicate key, or no wallet)."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | None:
        """Add ``amount`` (either sign) to the balance and append its entry, iff the key
        is new and ``available`` stays >= 0."""
        params = entry_params(
            kind=kind,
            amount=amount,
            reference=reference,
            idempotency_key=idempotency_key,
            description=description,
        )
        row = (await self._executor.execute(_POST, params)).first()
        if row is None:
            return None
        return Posted(await self._append(params, row), duplicate=False)

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | None:
        """A ``call_charge`` of ``-amount``: the call's hold reduced by as much of it as
        it covers, the rest from ``available``, iff the key is new and it is affordable."""
        params = entry_params(
            kind=LedgerKind.CALL_CHARGE,
            amount=-amount,
            reference=reference,
            idempotency_key=idempotency_key,
            description=description,
        )
        # the wallet UPDATE takes the charge as a positive :amount (the entry's is -amount)
        row = (
            await self._executor.execute(_CHARGE, {**params, "amount": amount, "call_id": call_id})
        ).first()
        if row is None:
            return None
        from_hold, hold_before = int(row.from_hold), int(row.hold)
        if from_hold:
            await self._executor.execute(
                _ADD_TO_HOLD, {"now": params["now"], "call_id": call_id, "delta": -from_hold}
            )
        entry_ = await self._append(params, row)
        return Posted(entry_, duplicate=False, hold_left=hold_before - from_hold)

    async def hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold of ``amount`` iff available and it has none."""
        params = {"now": utcnow(), "call_id": call_id, "amount": amount}
        if (await self._executor.execute(_HOLD, params)).first() is None:
            return False
        await self._executor.execute(_INSERT_HOLD, params)
        return True

    async def hold_up_to(self, call_id: str, wanted: int) -> int | None:
        """Hold as much as available up to ``wanted``, creating or extending the call's
        hold (also by 0); how much was added. None: no wallet (the caller must then
        raise, so that its transaction rolls the hold back)."""
        now = utcnow()
        params = {"now": now, "call_id": call_id, "wanted": wanted}
        available = (await self._executor.execute(_HOLD_UP_TO, params)).scalar_one()
        if available is None:
            return None
        got = max(0, min(wanted, int(available)))
        if (
            got
            and (await self._executor.execute(_ADD_TO_HELD, {"now": now, "amount": got})).first()
            is None
        ):
            raise StoreError(  # pragma: no cover - the caller holds the write lock
                f"the wallet changed under the write lock (hold of call {call_id})"
            )
        return got

    async def release(self, call_id: str) -> int | None:
        """Drop the call's hold; the amount released (0 if none). None: no wallet (the
        caller must then raise, so that its transaction rolls the delete back)."""
        amount = (await self._executor.execute(_RELEASE, {"call_id": call_id})).scalar_one_or_none()
        if not amount:
            return 0 if await WalletReads(self._executor).state() is not None else None
        params = {"now": utcnow(), "amount": amount}
        if (await self._executor.execute(_UNHOLD, params)).first() is None:
            if await WalletReads(self._executor).state() is None:
                return None
            raise StoreError(  # pragma: no cover - the CHECKs prevent it
                f"held total is below the hold of call {call_id}"
            )
        return int(amount)

    async def _append(self, params: dict[str, Any], wallet: Any) -> LedgerEntry:
        """Insert the entry the wallet UPDATE hashed (``wallet``: its RETURNING row).
        One prepared text statement: an ``insert().values(...)`` built per entry cost
        more CPU (coercion and cache keys of nine values) than the rest of a charge."""
        values = {
            **params,
            "entry_id": wallet.entry_id,
            "balance": wallet.balance_micro,
            "hash": wallet.last_hash,
        }
        return entry((await self._executor.execute(_APPEND, values)).one())


async def sqlite_hold(session: Executor, call_id: str, amount: int) -> bool:
    """``WalletStore.hold`` in the caller's write transaction (BEGIN IMMEDIATE)."""
    if await SqliteStatements(session).hold(call_id, amount):
        return True
    reads = WalletReads(session)
    held = explain_hold(call_id, amount, await reads.state(), await reads.hold_of(call_id))
    if held is None:  # pragma: no cover - the write lock was held throughout
        raise StoreError(f"the wallet changed under the write lock (hold of call {call_id})")
    return held


async def sqlite_hold_up_to(session: Executor, call_id: str, wanted: int) -> int:
    """``WalletStore.hold_up_to`` in the caller's write transaction."""
    got = await SqliteStatements(session).hold_up_to(call_id, wanted)
    if got is None:
        raise StoreError(NO_WALLET)  # rolls the hold back
    return got


async def sqlite_release(session: Executor, call_id: str) -> int:
    """``WalletStore.release`` in the caller's write transaction."""
    released = await SqliteStatements(session).release(call_id)
    if released is None:
        raise StoreError(NO_WALLET)  # rolls the delete back
    return released


async def _charge(session: Executor, call_id: str, amount: int, key: str) -> Posted | Refused:
    """``WalletStore.charge`` of a call in the caller's write transaction."""
    done = await SqliteStatements(session).charge(
        call_id=call_id,
        amount=amount,
        reference=call_id,
        idempotency_key=key,
        description=charge_description(call_id),
    )
    if done is not None:
        return done
    return await explain_charge(WalletReads(session), call_id, key)


class SqliteWalletStore(SessionReads):
    """``WalletStore`` on SQLite (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._writers = asyncio.Lock()  # the audit's locked view, after earlier audits

    async def _write(self, work: Callable[[UnitExecutor], Awaitable[T]]) -> T:
        """One short write transaction (BEGIN IMMEDIATE) in one hand-off to the unit
        thread, which runs this process's units one after another."""
        return await self._db.unit(work, immediate=True)

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        async def work(session: Executor) -> Posted | Refused:
            done = await SqliteStatements(session).post(
                kind=kind,
                amount=amount,
                reference=reference,
                idempotency_key=idempotency_key,
                description=description,
            )
            if done is not None:
                return done
            return await explain_post(WalletReads(session), idempotency_key)

        return await self._write(work)

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        async def work(session: Executor) -> Posted | Refused:
            done = await SqliteStatements(session).charge(
                call_id=call_id,
                amount=amount,
                reference=reference,
                idempotency_key=idempotency_key,
                description=description,
            )
            if done is not None:
                return done
            return await explain_charge(WalletReads(session), call_id, idempotency_key)

        return await self._write(work)

    async def hold(self, call_id: str, amount: int) -> bool:
        return await self._write(lambda session: sqlite_hold(session, call_id, amount))

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        return await self._write(lambda session: sqlite_hold_up_to(session, call_id, wanted))

    async def release(self, call_id: str) -> int:
        return await self._write(lambda session: sqlite_release(session, call_id))

    # ---- the call path: each operation ONE transaction (``callpath``) ---------------------

    async def open_call(
        self,
        call_id: str,
        amount: int,
        *,
        record: Work[object] | None,
        refused: Work[object],
    ) -> Opened:
        async def work(session: UnitExecutor) -> Opened:
            if record is not None:
                await record(session)
            if await sqlite_hold(session, call_id, amount):
                return Opened(held=True)
            await refused(session)
            return Opened(held=False)

        return await self._write(work)

    async def tick(
        self, call_id: str, plan: TickPlan, *, also: Work[object] | None = None
    ) -> Ticked:
        async def work(session: UnitExecutor) -> Ticked:
            if also is not None:
                await also(session)
            state = await WalletReads(session).state()
            if state is None:
                raise StoreError(NO_WALLET)
            amount, key = plan.charge(state)
            posted: Posted | Refused | None = None
            hold_left: int | None = None
            if amount:
                posted = await _charge(session, call_id, amount, key)
                if isinstance(posted, Refused):
                    return Ticked(state, amount, posted, 0)
                hold_left = posted.hold_left
            wanted = plan.hold(state, hold_left)
            added = await sqlite_hold_up_to(session, call_id, wanted) if wanted else 0
            return Ticked(state, amount, posted, added)

        return await self._write(work)

    async def settle(
        self,
        call_id: str,
        decide: Callable[[int], Settlement],
        *,
        also: Callable[[Settlement], Work[T]],
    ) -> Settled[T]:
        async def work(session: UnitExecutor) -> Settled[T]:
            settlement = decide(await WalletReads(session).charged_for(call_id))
            posted: Posted | Refused | None = None
            if settlement.charge_now:
                posted = await _charge(session, call_id, settlement.charge_now, final_key(call_id))
                if isinstance(posted, Refused):
                    return Settled(settlement, posted, None, 0, None)
            refund: Posted | Refused | None = None
            if settlement.excess:
                key = refund_key(call_id)
                refund = await SqliteStatements(session).post(
                    kind=LedgerKind.REFUND,
                    amount=settlement.excess,
                    reference=call_id,
                    idempotency_key=key,
                    description=refund_description(call_id),
                ) or await explain_post(WalletReads(session), key)
            released = await sqlite_release(session, call_id)
            recorded = await also(settlement)(session)
            return Settled(settlement, posted, refund, released, recorded)

        return await self._write(work)

    async def audit(self, anchor: ChainHead | None = None) -> list[str]:
        # the write lock: one consistent view
        async with self._writers, self._db.session(immediate=True) as session:
            problems, last = await audit_wallet(session)
        if last is None:
            return problems
        async with self._db.session() as session:  # no lock: entries up to last are final
            return problems + await audit_chain(session, last, anchor)
