"""Repositories of billing: rate sets, the wallet row, the ledger and holds.

Like ``repositories``, each works inside the caller's session (one transaction) and
returns frozen values from ``callcontrol.domain``. The statements are written so
that ``callcontrol.billing.wallet`` can keep each operation short:

- ``WalletRepository.move`` is the one conditional UPDATE of the wallet row that
  changes the balance and/or the held amount *only if* ``available`` stays >= 0
  (and ``held`` >= 0). On PostgreSQL the UPDATE takes the row lock and re-checks
  its WHERE against the newest committed row, so concurrent transactions cannot
  both pass; on SQLite the write lock does the same. CHECK constraints back it up.
- Every transaction that touches a hold touches (or locks) the wallet row *first*,
  so all wallet work is serialized on one row and locks are always taken in the
  same order (wallet, then hold): no deadlocks.
- The ledger is only ever inserted into: there is no UPDATE or DELETE here (and
  the database's triggers refuse them).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.money import Hold, LedgerEntry, LedgerKind, WalletState
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction, Rate, RateSet
from callcontrol.store.models import (
    CallRecordRow,
    HoldRow,
    LedgerEntryRow,
    RateRow,
    RateSetRow,
    WalletRow,
    utcnow,
)

__all__ = ["RateRepository", "WalletRepository"]

WALLET_ID = 1
MAX_PROBLEMS = 20


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def _rate(row: RateRow) -> Rate:
    return Rate(
        id=row.id,
        direction=Direction(row.direction),
        prefix=row.prefix,
        country=row.country,
        number_type=None if row.number_type is None else NumberType(row.number_type),
        price_per_minute=row.price_per_minute_micro,
        connection_fee=row.connection_fee_micro,
        first_increment=row.first_increment,
        next_increment=row.next_increment,
        description=row.description,
    )


def _rate_set(row: RateSetRow) -> RateSet:
    return RateSet(
        id=row.id,
        source=row.source,
        sha256=row.sha256,
        rate_count=row.rate_count,
        imported_at=row.imported_at,
    )


class RateRepository:
    """Rate sets: an import adds a set; the newest set is in force."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_set(self, source: str, sha256: str, rates: Sequence[Rate]) -> RateSet:
        """Insert a rate set and all its rates (in the caller's one transaction)."""
        row = RateSetRow(source=source[-256:], sha256=sha256, rate_count=len(rates))
        self._session.add(row)
        await self._session.flush()
        if rates:
            await self._session.execute(
                insert(RateRow),
                [
                    {
                        "rate_set_id": row.id,
                        "direction": rate.direction.value,
                        "prefix": rate.prefix,
                        "country": rate.country,
                        "number_type": None if rate.number_type is None else rate.number_type,
                        "price_per_minute_micro": rate.price_per_minute,
                        "connection_fee_micro": rate.connection_fee,
                        "first_increment": rate.first_increment,
                        "next_increment": rate.next_increment,
                        "description": rate.description[:256],
                    }
                    for rate in rates
                ],
            )
        return _rate_set(row)

    async def current_set(self) -> RateSet | None:
        row = await self._session.scalar(
            select(RateSetRow)
            .order_by(RateSetRow.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return None if row is None else _rate_set(row)

    async def current_rates(self) -> builtins.list[Rate]:
        """The rates in force (of the newest set), in one query; [] before any import."""
        newest = select(func.max(RateSetRow.id)).scalar_subquery()
        rows = await self._session.scalars(
            select(RateRow)
            .where(RateRow.rate_set_id == newest)
            .order_by(RateRow.direction, RateRow.country, RateRow.prefix, RateRow.number_type)
            .execution_options(populate_existing=True)
        )
        return [_rate(row) for row in rows]

    async def get(self, rate_id: int) -> Rate | None:
        """Any rate by id, in force or from an older set (call records point at them)."""
        row = await self._session.get(RateRow, rate_id)
        return None if row is None else _rate(row)


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        created_at=row.created_at,
        kind=LedgerKind(row.kind),
        amount=row.amount_micro,
        reference=row.reference,
        idempotency_key=row.idempotency_key,
        description=row.description,
        balance_after=row.balance_after_micro,
    )


def _hold(row: Any) -> Hold:
    return Hold(
        call_id=row.call_id,
        amount=row.amount_micro,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
    )


class WalletRepository:
    """The wallet row, its ledger and its holds (statements only; see billing.wallet)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # ---- the wallet row ----------------------------------------------------------------

    async def state(self, *, lock: bool = False) -> WalletState | None:
        """Balance and held; ``lock`` takes the row lock (FOR UPDATE; SQLite: no-op,
        the caller's BEGIN IMMEDIATE already holds the write lock). None: no wallet."""
        statement = select(WalletRow.balance_micro, WalletRow.held_micro).where(
            WalletRow.id == WALLET_ID
        )
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.execute(statement)).first()
        return None if row is None else WalletState(balance=row[0], held=row[1])

    async def move(self, *, balance_delta: int = 0, held_delta: int = 0) -> int | None:
        """Add the deltas to balance and held iff afterwards ``0 <= held <= balance``.

        One conditional UPDATE; the new balance, or None when refused (or no wallet).
        """
        balance = WalletRow.balance_micro + balance_delta
        held = WalletRow.held_micro + held_delta
        result = await self._session.execute(
            update(WalletRow)
            .where(WalletRow.id == WALLET_ID, balance - held >= 0, held >= 0)
            .values(balance_micro=balance, held_micro=held, updated_at=utcnow())
            .returning(WalletRow.balance_micro)
            .execution_options(synchronize_session=False)
        )
        new_balance = result.scalar_one_or_none()
        return None if new_balance is None else int(new_balance)

    async def exists(self) -> bool:
        return (await self._session.scalar(select(func.count()).select_from(WalletRow))) == 1

    # ---- the ledger (insert only) --------------------------------------------------------

    async def append(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
        balance_after: int,
    ) -> LedgerEntry:
        """Insert one entry; IntegrityError (-> Conflict) if the key exists."""
        row = (
            await self._session.execute(
                insert(LedgerEntryRow)
                .values(
                    created_at=utcnow(),
                    kind=kind.value,
                    amount_micro=amount,
                    reference=reference,
                    idempotency_key=idempotency_key,
                    description=description[:256],
                    balance_after_micro=balance_after,
                )
                .returning(*cast(Table, LedgerEntryRow.__table__).c)
            )
        ).one()
        return _entry(row)

    async def entry_by_key(self, idempotency_key: str) -> LedgerEntry | None:
        table = cast(Table, LedgerEntryRow.__table__)
        row = (
            await self._session.execute(
                select(table).where(table.c.idempotency_key == idempotency_key)
            )
        ).first()
        return None if row is None else _entry(row)

    async def entries(self, limit: int) -> builtins.list[LedgerEntry]:
        """The newest entries first."""
        table = cast(Table, LedgerEntryRow.__table__)
        rows = await self._session.execute(select(table).order_by(table.c.id.desc()).limit(limit))
        return [_entry(row) for row in rows]

    async def last_entry_id(self) -> int:
        return int(await self._session.scalar(select(func.max(LedgerEntryRow.id))) or 0)

    async def charged_for(self, reference: str) -> int:
        """Net micro-credits charged for ``reference`` (call charges less refunds), >= 0."""
        total = await self._session.scalar(
            select(func.coalesce(func.sum(LedgerEntryRow.amount_micro), 0)).where(
                LedgerEntryRow.reference == reference,
                LedgerEntryRow.kind.in_([LedgerKind.CALL_CHARGE.value, LedgerKind.REFUND.value]),
            )
        )
        return -int(total or 0)

    # ---- holds ---------------------------------------------------------------------------

    async def hold_of(self, call_id: str) -> Hold | None:
        table = cast(Table, HoldRow.__table__)
        row = (await self._session.execute(select(table).where(table.c.call_id == call_id))).first()
        return None if row is None else _hold(row)

    async def insert_hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold; False (nothing done) if it already has one."""
        table = cast(Table, HoldRow.__table__)
        now = utcnow()
        dialect_insert = (
            postgresql.insert(table)
            if self._session.get_bind().dialect.name == "postgresql"
            else sqlite.insert(table)
        )
        result = await self._session.execute(
            dialect_insert.values(
                call_id=call_id, amount_micro=amount, created_at=now, updated_at=now
            )
            .on_conflict_do_nothing(index_elements=["call_id"])
            .returning(table.c.id)
        )
        return result.first() is not None

    async def add_to_hold(self, call_id: str, delta: int) -> bool:
        """Change the call's hold by ``delta`` (either sign); False if it has none."""
        result = await self._session.execute(
            update(HoldRow)
            .where(HoldRow.call_id == call_id)
            .values(amount_micro=HoldRow.amount_micro + delta, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def delete_hold(self, call_id: str) -> int | None:
        """Remove the call's hold; its amount, or None if it had none."""
        result = await self._session.execute(
            delete(HoldRow)
            .where(HoldRow.call_id == call_id)
            .returning(HoldRow.amount_micro)
            .execution_options(synchronize_session=False)
        )
        amount = result.scalar_one_or_none()
        return None if amount is None else int(amount)

    async def holds(self) -> builtins.list[Hold]:
        table = cast(Table, HoldRow.__table__)
        rows = await self._session.execute(select(table).order_by(table.c.created_at, table.c.id))
        return [_hold(row) for row in rows]

    # ---- audit ---------------------------------------------------------------------------

    async def audit(self) -> builtins.list[str]:
        """Every broken invariant, in words; [] when the wallet is consistent.

        Locks the wallet row first: every writer waits, so all the reads below see
        one consistent state (also under PostgreSQL's READ COMMITTED).
        """
        problems: list[str] = []
        state = await self.state(lock=True)
        if state is None:
            return ["the wallet row (id 1) is missing: run `callcontrol db upgrade`"]
        ledger_sum = int(
            await self._session.scalar(
                select(func.coalesce(func.sum(LedgerEntryRow.amount_micro), 0))
            )
            or 0
        )
        holds_sum = int(
            await self._session.scalar(select(func.coalesce(func.sum(HoldRow.amount_micro), 0)))
            or 0
        )
        if state.balance != ledger_sum:
            problems.append(
                f"balance {state.balance} micro-credits != sum of the ledger {ledger_sum}"
            )
        if state.held != holds_sum:
            problems.append(f"held {state.held} micro-credits != sum of the holds {holds_sum}")
        if state.held < 0 or state.available < 0:
            problems.append(
                f"negative amounts: held {state.held}, available {state.available} micro-credits"
            )
        last = (
            await self._session.execute(
                select(LedgerEntryRow.id, LedgerEntryRow.balance_after_micro)
                .order_by(LedgerEntryRow.id.desc())
                .limit(1)
            )
        ).first()
        if last is not None and last[1] != state.balance:
            problems.append(
                f"balance {state.balance} != balance_after {last[1]} of the last entry #{last[0]}"
            )
        problems.extend(await self._broken_chain())
        problems.extend(await self._negative_holds())
        problems.extend(await self._duplicate_keys())
        problems.extend(await self._orphan_holds())
        problems.extend(await self._settled_mismatches())
        return problems

    async def _rows(self, sql: str) -> builtins.list[Any]:
        return list((await self._session.execute(text(sql))).all())

    async def _broken_chain(self) -> builtins.list[str]:
        rows = await self._rows(
            "SELECT id, amount_micro, balance_after_micro, previous FROM ("
            " SELECT id, amount_micro, balance_after_micro,"
            " COALESCE(LAG(balance_after_micro) OVER (ORDER BY id), 0) AS previous"
            " FROM ledger_entries) AS chain"
            " WHERE balance_after_micro <> previous + amount_micro"
            f" ORDER BY id LIMIT {MAX_PROBLEMS}"
        )
        return [
            f"ledger entry #{id_}: balance_after {after} != previous {previous} + amount {amount}"
            for id_, amount, after, previous in rows
        ]

    async def _negative_holds(self) -> builtins.list[str]:
        rows = await self._rows(
            f"SELECT call_id, amount_micro FROM holds WHERE amount_micro < 0 LIMIT {MAX_PROBLEMS}"
        )
        return [f"hold of call {call_id} is negative: {amount}" for call_id, amount in rows]

    async def _duplicate_keys(self) -> builtins.list[str]:
        rows = await self._rows(
            "SELECT idempotency_key, COUNT(*) FROM ledger_entries GROUP BY idempotency_key"
            f" HAVING COUNT(*) > 1 LIMIT {MAX_PROBLEMS}"
        )
        return [f"idempotency key {key!r} is used by {n} ledger entries" for key, n in rows]

    async def _orphan_holds(self) -> builtins.list[str]:
        statement = (
            select(HoldRow.call_id, CallRecordRow.call_id, CallRecordRow.charge_state)
            .outerjoin(CallRecordRow, CallRecordRow.call_id == HoldRow.call_id)
            .where(
                (CallRecordRow.call_id.is_(None))
                | (
                    CallRecordRow.ended_at.is_not(None)
                    & (
                        CallRecordRow.charge_state.is_(None)
                        | (CallRecordRow.charge_state != "charging")
                    )
                )
            )
            .order_by(HoldRow.call_id)
            .limit(MAX_PROBLEMS)
        )
        problems = []
        for call_id, record_id, charge_state in await self._session.execute(statement):
            if record_id is None:
                problems.append(f"hold of call {call_id}: no such call record")
            else:
                problems.append(
                    f"hold of call {call_id}: the call ended ({charge_state or 'not charged'})"
                    " but its hold was not released"
                )
        return problems

    async def _settled_mismatches(self) -> builtins.list[str]:
        rows = await self._rows(
            "SELECT r.call_id, r.cost_micro,"
            " CAST(COALESCE(-SUM(l.amount_micro), 0) AS BIGINT) AS charged"
            " FROM call_records r LEFT JOIN ledger_entries l ON l.reference = r.call_id"
            " AND l.kind IN ('call_charge', 'refund')"
            " WHERE r.charge_state = 'settled' AND r.cost_micro IS NOT NULL"
            " GROUP BY r.call_id, r.cost_micro"
            " HAVING COALESCE(-SUM(l.amount_micro), 0) <> r.cost_micro"
            f" ORDER BY r.call_id LIMIT {MAX_PROBLEMS}"
        )
        return [
            f"call {call_id}: charged {charged} micro-credits in the ledger, its record says {cost}"
            for call_id, cost, charged in rows
        ]
