"""The wallet store on SQLite: each write is one short BEGIN IMMEDIATE transaction.

SQLite has one writer at a time and no data-modifying CTEs. Each write takes the
write lock at BEGIN (``Database.session(immediate=True)``), so every read in it is
current, and runs the fewest plain statements (UPDATE, INSERT, DELETE ...
RETURNING; SQLite >= 3.35): two, three for a charge that uses a hold. This
process's writers queue on one asyncio.Lock per store first, which spares them
SQLite's busy-handler sleeps (other processes still wait on the file lock).

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.money import ChainHead, LedgerEntry, LedgerKind
from callcontrol.errors import StoreError
from callcontrol.store.audit import audit_chain, audit_wallet
from callcontrol.store.db import Database
from callcontrol.store.models import LedgerEntryRow, utcnow
from callcontrol.store.wallet.common import (
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
)

__all__ = ["SqliteStatements", "SqliteWalletStore"]

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

_LEDGER = cast(Table, LedgerEntryRow.__table__)


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
        """Insert the entry the wallet UPDATE hashed (``wallet``: its RETURNING row)."""
        row = (
            await self._executor.execute(
                insert(LedgerEntryRow)
                .values(
                    id=wallet.entry_id,
                    created_at=params["now"],
                    kind=params["kind"],
                    amount_micro=params["amount"],
                    reference=params["reference"],
                    idempotency_key=params["key"],
                    description=params["description"],
                    balance_after_micro=wallet.balance_micro,
                    entry_hash=wallet.last_hash,
                )
                .returning(*_LEDGER.c)
            )
        ).one()
        return entry(row)


class SqliteWalletStore(SessionReads):
    """``WalletStore`` on SQLite (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._writers = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One short write transaction, after this process's earlier writers."""
        async with self._writers, self._db.session(immediate=True) as session:
            yield session

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        async with self._transaction() as session:
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

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        async with self._transaction() as session:
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

    async def hold(self, call_id: str, amount: int) -> bool:
        async with self._transaction() as session:
            if await SqliteStatements(session).hold(call_id, amount):
                return True
            reads = WalletReads(session)
            held = explain_hold(call_id, amount, await reads.state(), await reads.hold_of(call_id))
        if held is None:  # pragma: no cover - the write lock was held throughout
            raise StoreError(f"the wallet changed under the write lock (hold of call {call_id})")
        return held

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        async with self._transaction() as session:
            got = await SqliteStatements(session).hold_up_to(call_id, wanted)
            if got is None:
                raise StoreError(NO_WALLET)  # rolls the hold back
        return got

    async def release(self, call_id: str) -> int:
        async with self._transaction() as session:
            released = await SqliteStatements(session).release(call_id)
            if released is None:
                raise StoreError(NO_WALLET)  # rolls the delete back
        return released

    async def audit(self, anchor: ChainHead | None = None) -> list[str]:
        async with self._transaction() as session:  # the write lock: one consistent view
            problems, last = await audit_wallet(session)
        if last is None:
            return problems
        async with self._db.session() as session:  # no lock: entries up to last are final
            return problems + await audit_chain(session, last, anchor)
