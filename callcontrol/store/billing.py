"""Repositories of billing: rate sets, the wallet row, the ledger and holds.

Like ``repositories``, each works inside the caller's session (one transaction) and
returns frozen values from ``callcontrol.domain``; ``WalletRepository`` also works on
a connection in autocommit (PostgreSQL: each of its writes is one statement). The
statements are written so that ``callcontrol.billing.wallet`` keeps each operation
to one statement on PostgreSQL and a short write transaction on SQLite:

- every write checks ``available`` against the wallet row it has locked and changes
  balance, held, the call's hold and the ledger together; CHECK constraints back it.
- Every write that touches a hold locks the wallet row *first*, so all wallet work
  is serialized on one row and locks are always taken in the same order (wallet,
  then hold): no deadlocks. (The comment above ``_PG_POST`` explains why this
  matters inside one PostgreSQL statement.)
- The ledger is only ever inserted into: there is no UPDATE or DELETE here (and
  the database's triggers refuse them).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    TextClause,
    bindparam,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine

from callcontrol.domain.money import Hold, LedgerEntry, LedgerKind, WalletState
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction, Rate, RateSet
from callcontrol.errors import StoreError
from callcontrol.store.models import (
    CallRecordRow,
    HoldRow,
    LedgerEntryRow,
    RateRow,
    RateSetRow,
    UTCDateTime,
    WalletRow,
    utcnow,
)

__all__ = ["Posted", "RateRepository", "WalletRepository"]

WALLET_ID = 1
MAX_PROBLEMS = 20


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


def _posted(row: Any) -> Posted:
    """A row of a one-statement write: ``duplicate``, the entry's columns, ``hold_left``."""
    return Posted(entry=_entry(row), duplicate=bool(row.duplicate), hold_left=int(row.hold_left))


def _hold(row: Any) -> Hold:
    return Hold(
        call_id=row.call_id,
        amount=row.amount_micro,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
    )


class Posted(NamedTuple):
    """A ledger entry written (or found: ``duplicate``) and, for a call charge, the
    call's hold left after it."""

    entry: LedgerEntry
    duplicate: bool
    hold_left: int = 0


# ---- the one-statement writes ----------------------------------------------------------
#
# PostgreSQL: every write is ONE statement (data-modifying CTEs), run by the caller in
# autocommit, so the wallet row is locked only while the server executes the statement
# and flushes its commit. All parts of a statement read ONE snapshot, taken when it
# started, i.e. before it waited for the wallet row; only rows the statement locks or
# changes are re-read at their newest version (READ COMMITTED's EvalPlanQual), and
# even then an UPDATE first filters by its WHERE and computes the new row, and checks
# the CHECK constraints on it, from the snapshot's version: a ``WHERE balance - held
# >= x`` refuses what the locked row allows, a ``SET held_micro = held_micro - x``
# fails the CHECK on the snapshot's ``held`` (tests/integration/
# test_billing_one_statement.py has such races). Hence the pattern of every statement:
#
# 1. ``cur``: the wallet row, FOR UPDATE, first. It waits for the lock and returns
#    the newest version; no one can change the row until the statement commits.
# 2. ``hl``: the call's hold, FOR UPDATE, joined to ``cur`` so it is locked after the
#    wallet (every write locks wallet, then hold: no deadlocks). Holds change only
#    under the wallet lock, so it is current. (A hold inserted after the snapshot is
#    not seen: the statement then acts as if it ran before that hold was taken.)
# 3. Decide from ``cur``/``hl`` only, and write ABSOLUTE values computed from them
#    (``SET balance_micro = cur.balance, held_micro = cur.held``, never ``held_micro +
#    x``), with a WHERE that does not read the row being updated: the snapshot's
#    version then filters and CHECKs exactly like the newest one.
# 4. The idempotency key's NOT EXISTS reads the snapshot: a same-key entry committed
#    since makes the ledger INSERT fail on the unique key and the whole statement
#    with it (nothing applied); the caller then returns the first entry.
# 5. Each part reads the RETURNING of the one before (the ledger row is inserted
#    FROM the wallet update, the hold updated FROM it): order by data, not by text.
#
# SQLite has no data-modifying CTEs. The caller holds the write lock (BEGIN IMMEDIATE),
# so every read is current; each operation is the fewest plain statements (UPDATE,
# INSERT, DELETE ... RETURNING; SQLite >= 3.35) in that one transaction.

_ENTRY = (
    "id, created_at, kind, amount_micro, reference, idempotency_key, description,"
    " balance_after_micro"
)
_INSERT_ENTRY = (
    "INSERT INTO ledger_entries (created_at, kind, amount_micro, reference, idempotency_key,"
    " description, balance_after_micro)"
)
_BIND_TYPES: dict[str, TypeEngine[Any]] = {
    "amount": BigInteger(),
    "delta": BigInteger(),
    "wanted": BigInteger(),
    "from_hold": BigInteger(),
    "call_id": String(),
    "key": String(),
    "kind": String(),
    "reference": String(),
    "description": String(),
    "now": UTCDateTime(),
}
_ENTRY_TYPES: dict[str, TypeEngine[Any]] = {"created_at": UTCDateTime()}


def _sql(sql: str) -> TextClause:
    """``sql`` with typed parameters (asyncpg then casts them: ``$1::BIGINT``)."""
    names = sorted(set(re.findall(r"(?<![:\w]):(\w+)", sql)))
    return text(sql).bindparams(*(bindparam(name, type_=_BIND_TYPES[name]) for name in names))


def _sql_entries(sql: str) -> TextualSelect:
    return _sql(sql).columns(**_ENTRY_TYPES)


_PG_POST = _sql_entries(f"""
WITH cur AS MATERIALIZED (
    SELECT balance_micro + :amount AS balance, held_micro AS held
    FROM wallets WHERE id = 1 FOR UPDATE
), w AS (
    UPDATE wallets SET balance_micro = cur.balance, held_micro = cur.held, updated_at = :now
    FROM cur
    WHERE wallets.id = 1 AND cur.balance >= cur.held
      AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
    RETURNING wallets.balance_micro
), e AS (
    {_INSERT_ENTRY}
    SELECT :now, :kind, :amount, :reference, :key, :description, w.balance_micro FROM w
    RETURNING {_ENTRY}
)
SELECT false AS duplicate, {_ENTRY}, 0 AS hold_left FROM e
UNION ALL
SELECT true, {_ENTRY}, 0 FROM ledger_entries WHERE idempotency_key = :key
""")

_PG_CHARGE = _sql_entries(f"""
WITH cur AS MATERIALIZED (
    SELECT balance_micro, held_micro FROM wallets WHERE id = 1 FOR UPDATE
), hl AS MATERIALIZED (
    SELECT holds.id, holds.amount_micro FROM holds JOIN cur ON true
    WHERE holds.call_id = :call_id FOR UPDATE OF holds
), f AS MATERIALIZED (
    SELECT cur.balance_micro - :amount AS balance,
        cur.held_micro - LEAST(:amount, COALESCE(hl.amount_micro, 0)) AS held,
        LEAST(:amount, COALESCE(hl.amount_micro, 0)) AS from_hold,
        COALESCE(hl.amount_micro, 0) AS hold_before, hl.id AS hold_id
    FROM cur LEFT JOIN hl ON true
), w AS (
    UPDATE wallets SET balance_micro = f.balance, held_micro = f.held, updated_at = :now
    FROM f
    WHERE wallets.id = 1 AND f.balance >= f.held
      AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
    RETURNING wallets.balance_micro, f.from_hold, f.hold_before, f.hold_id
), h AS (
    UPDATE holds SET amount_micro = w.hold_before - w.from_hold, updated_at = :now
    FROM w WHERE holds.id = w.hold_id AND w.from_hold > 0
    RETURNING holds.id
), e AS (
    {_INSERT_ENTRY}
    SELECT :now, :kind, -:amount, :reference, :key, :description, w.balance_micro FROM w
    RETURNING {_ENTRY}
)
SELECT false AS duplicate, {_ENTRY}, (SELECT hold_before - from_hold FROM w) AS hold_left
FROM e
UNION ALL
SELECT true, {_ENTRY}, COALESCE((SELECT amount_micro FROM hl), 0)
FROM ledger_entries WHERE idempotency_key = :key
""")

_PG_HOLD = _sql("""
WITH cur AS MATERIALIZED (
    SELECT balance_micro AS balance, held_micro + :amount AS held
    FROM wallets WHERE id = 1 FOR UPDATE
), w AS (
    UPDATE wallets SET balance_micro = cur.balance, held_micro = cur.held, updated_at = :now
    FROM cur
    WHERE wallets.id = 1 AND cur.balance >= cur.held
      AND NOT EXISTS (SELECT 1 FROM holds WHERE call_id = :call_id)
    RETURNING wallets.id
)
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
SELECT :call_id, :amount, :now, :now FROM w
RETURNING id
""")

_PG_EXTEND_HOLD = _sql("""
WITH cur AS MATERIALIZED (
    SELECT balance_micro AS balance, held_micro + :delta AS held
    FROM wallets WHERE id = 1 FOR UPDATE
), hl AS MATERIALIZED (
    SELECT holds.id, holds.amount_micro FROM holds JOIN cur ON true
    WHERE holds.call_id = :call_id FOR UPDATE OF holds
), w AS (
    UPDATE wallets SET balance_micro = cur.balance, held_micro = cur.held, updated_at = :now
    FROM cur, hl
    WHERE wallets.id = 1 AND cur.balance >= cur.held
    RETURNING hl.id, hl.amount_micro + :delta AS amount
)
UPDATE holds SET amount_micro = w.amount, updated_at = :now
FROM w WHERE holds.id = w.id
RETURNING holds.id
""")

_PG_HOLD_UP_TO = _sql("""
WITH cur AS MATERIALIZED (
    SELECT LEAST(:wanted, balance_micro - held_micro) AS got, balance_micro AS balance,
        held_micro AS held
    FROM wallets WHERE id = 1 FOR UPDATE
), w AS (
    UPDATE wallets
    SET balance_micro = cur.balance, held_micro = cur.held + cur.got, updated_at = :now
    FROM cur
    WHERE wallets.id = 1 AND cur.got > 0
    RETURNING cur.got
), h AS (
    INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
    SELECT :call_id, COALESCE((SELECT got FROM w), 0), :now, :now FROM cur
    ON CONFLICT (call_id) DO UPDATE
    SET amount_micro = holds.amount_micro + excluded.amount_micro,
        updated_at = excluded.updated_at
    RETURNING id
)
SELECT COALESCE((SELECT got FROM w), 0) AS got, (SELECT count(*) FROM h) AS holds FROM cur
""")

_PG_RELEASE = _sql("""
WITH cur AS MATERIALIZED (
    SELECT balance_micro AS balance, held_micro AS held FROM wallets WHERE id = 1 FOR UPDATE
), hl AS MATERIALIZED (
    SELECT holds.id, holds.amount_micro FROM holds JOIN cur ON true
    WHERE holds.call_id = :call_id FOR UPDATE OF holds
), w AS (
    UPDATE wallets
    SET balance_micro = cur.balance, held_micro = cur.held - hl.amount_micro, updated_at = :now
    FROM cur, hl
    WHERE wallets.id = 1 AND hl.amount_micro > 0
    RETURNING wallets.id
), d AS (
    DELETE FROM holds USING hl
    WHERE holds.id = hl.id AND (hl.amount_micro = 0 OR EXISTS (SELECT 1 FROM w))
    RETURNING hl.amount_micro
)
SELECT COALESCE((SELECT amount_micro FROM d), 0) AS released,
    (SELECT count(*) FROM hl) AS found, (SELECT count(*) FROM d) AS deleted
FROM cur
""")

_LITE_POST = _sql("""
UPDATE wallets SET balance_micro = balance_micro + :amount, updated_at = :now
WHERE id = 1 AND balance_micro + :amount >= held_micro
  AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
RETURNING balance_micro
""")

_LITE_HOLD_OF = "COALESCE((SELECT amount_micro FROM holds WHERE call_id = :call_id), 0)"
_LITE_CHARGE = _sql(f"""
UPDATE wallets SET balance_micro = balance_micro - :amount,
    held_micro = held_micro - MIN(:amount, {_LITE_HOLD_OF}), updated_at = :now
WHERE id = 1
  AND balance_micro - :amount >= held_micro - MIN(:amount, {_LITE_HOLD_OF})
  AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
RETURNING balance_micro, MIN(:amount, {_LITE_HOLD_OF}) AS from_hold, {_LITE_HOLD_OF} AS hold
""")

_LITE_HOLD = _sql("""
UPDATE wallets SET held_micro = held_micro + :amount, updated_at = :now
WHERE id = 1 AND balance_micro - held_micro >= :amount
  AND NOT EXISTS (SELECT 1 FROM holds WHERE call_id = :call_id)
RETURNING id
""")

_LITE_EXTEND_HOLD = _sql("""
UPDATE wallets SET held_micro = held_micro + :delta, updated_at = :now
WHERE id = 1 AND balance_micro - held_micro >= :delta
  AND EXISTS (SELECT 1 FROM holds WHERE call_id = :call_id)
RETURNING id
""")

_LITE_ADD_TO_HOLD = _sql("""
UPDATE holds SET amount_micro = amount_micro + :delta, updated_at = :now
WHERE call_id = :call_id
""")

# The hold first, by what the (unchanged) wallet row makes available; RETURNING reads
# that row too, so the wallet UPDATE after it adds the same amount.
_LITE_AVAILABLE = "(SELECT balance_micro - held_micro FROM wallets WHERE id = 1)"
_LITE_HOLD_UP_TO = _sql(f"""
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
VALUES (:call_id, MAX(0, MIN(:wanted, COALESCE({_LITE_AVAILABLE}, 0))), :now, :now)
ON CONFLICT (call_id) DO UPDATE
SET amount_micro = amount_micro + excluded.amount_micro, updated_at = excluded.updated_at
RETURNING {_LITE_AVAILABLE} AS available
""")

_LITE_ADD_TO_HELD = _sql("""
UPDATE wallets SET held_micro = held_micro + :amount, updated_at = :now
WHERE id = 1 AND balance_micro - held_micro >= :amount
RETURNING id
""")

_LITE_INSERT_HOLD = _sql("""
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
VALUES (:call_id, :amount, :now, :now)
""")

_LITE_RELEASE = _sql("DELETE FROM holds WHERE call_id = :call_id RETURNING amount_micro")

_LITE_UNHOLD = _sql("""
UPDATE wallets SET held_micro = held_micro - :amount, updated_at = :now
WHERE id = 1 AND held_micro >= :amount
RETURNING id
""")


class WalletRepository:
    """The wallet row, its ledger and its holds (statements only; see billing.wallet).

    Works on a session (one transaction) or, for the one-statement writes on
    PostgreSQL, on a connection in autocommit (each statement its own transaction).
    """

    def __init__(self, executor: AsyncSession | AsyncConnection) -> None:
        self._session = executor
        bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
        self._postgres = bind.dialect.name == "postgresql"

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

    async def exists(self) -> bool:
        return (await self._session.scalar(select(func.count()).select_from(WalletRow))) == 1

    # ---- the writes (one statement on PostgreSQL) -----------------------------------------

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
        is new and ``available`` stays >= 0. The entry with this key if it exists
        (``duplicate``; nothing changed). None: refused (or no wallet)."""
        params = {
            "now": utcnow(),
            "kind": kind.value,
            "amount": amount,
            "reference": reference,
            "key": idempotency_key,
            "description": description[:256],
        }
        if self._postgres:
            row = (await self._session.execute(_PG_POST, params)).first()
            return None if row is None else _posted(row)
        balance = (await self._session.execute(_LITE_POST, params)).scalar_one_or_none()
        if balance is None:
            existing = await self.entry_by_key(idempotency_key)
            return None if existing is None else Posted(existing, duplicate=True)
        entry = await self._append(params, balance_after=int(balance))
        return Posted(entry, duplicate=False)

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
        it covers, the rest from ``available``, iff the key is new and it is affordable.
        The entry with this key if it exists (``duplicate``; nothing changed). None:
        refused (or no wallet)."""
        params = {
            "now": utcnow(),
            "kind": LedgerKind.CALL_CHARGE.value,
            "call_id": call_id,
            "amount": amount,
            "reference": reference,
            "key": idempotency_key,
            "description": description[:256],
        }
        if self._postgres:
            row = (await self._session.execute(_PG_CHARGE, params)).first()
            return None if row is None else _posted(row)
        row = (await self._session.execute(_LITE_CHARGE, params)).first()
        if row is None:
            existing = await self.entry_by_key(idempotency_key)
            if existing is None:
                return None
            hold = await self.hold_of(call_id)
            return Posted(existing, duplicate=True, hold_left=0 if hold is None else hold.amount)
        balance, from_hold, hold_before = (int(value) for value in row)
        if from_hold:
            await self._session.execute(
                _LITE_ADD_TO_HOLD, {"now": params["now"], "call_id": call_id, "delta": -from_hold}
            )
        params["amount"] = -amount
        entry = await self._append(params, balance_after=balance)
        return Posted(entry, duplicate=False, hold_left=hold_before - from_hold)

    async def hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold of ``amount`` iff available and it has none. False:
        nothing done (refused, a hold exists, or no wallet: ask ``state``/``hold_of``)."""
        params = {"now": utcnow(), "call_id": call_id, "amount": amount}
        if self._postgres:
            return (await self._session.execute(_PG_HOLD, params)).first() is not None
        if (await self._session.execute(_LITE_HOLD, params)).first() is None:
            return False
        await self._session.execute(_LITE_INSERT_HOLD, params)
        return True

    async def extend_hold(self, call_id: str, delta: int) -> bool:
        """Add ``delta`` to the call's hold iff available and it has one. False: nothing
        done (refused, no hold, or no wallet)."""
        params = {"now": utcnow(), "call_id": call_id, "delta": delta}
        if self._postgres:
            return (await self._session.execute(_PG_EXTEND_HOLD, params)).first() is not None
        if (await self._session.execute(_LITE_EXTEND_HOLD, params)).first() is None:
            return False
        await self._session.execute(_LITE_ADD_TO_HOLD, params)
        return True

    async def hold_up_to(self, call_id: str, wanted: int) -> int | None:
        """Hold as much as available up to ``wanted``, creating or extending the call's
        hold (also by 0); how much was added. None if there is no wallet: the caller
        must then raise (on SQLite its transaction has a hold to roll back)."""
        now = utcnow()
        params = {"now": now, "call_id": call_id, "wanted": wanted}
        if self._postgres:
            row = (await self._session.execute(_PG_HOLD_UP_TO, params)).first()
            return None if row is None else int(row.got)
        available = (await self._session.execute(_LITE_HOLD_UP_TO, params)).scalar_one()
        if available is None:
            return None  # the caller raises: its transaction rolls the hold back
        got = max(0, min(wanted, int(available)))
        if got:
            params = {"now": now, "amount": got}
            if (await self._session.execute(_LITE_ADD_TO_HELD, params)).first() is None:
                raise StoreError(  # pragma: no cover - the caller holds the write lock
                    f"the wallet changed under the write lock (hold of call {call_id})"
                )
        return got

    async def release(self, call_id: str) -> int | None:
        """Drop the call's hold; the amount released (0 if none). None if there is no
        wallet: the caller must then raise (rolling back SQLite's transaction)."""
        now = utcnow()
        if self._postgres:
            params = {"now": now, "call_id": call_id}
            row = (await self._session.execute(_PG_RELEASE, params)).first()
            if row is None:
                return None
            if row.found != row.deleted:  # pragma: no cover - the hold row is locked
                raise StoreError(f"the hold of call {call_id} was not released")
            return int(row.released)
        amount = (
            await self._session.execute(_LITE_RELEASE, {"call_id": call_id})
        ).scalar_one_or_none()
        if not amount:
            return 0 if await self.exists() else None
        params = {"now": now, "amount": amount}
        if (await self._session.execute(_LITE_UNHOLD, params)).first() is None:
            if not await self.exists():
                return None
            raise StoreError(  # pragma: no cover - the CHECKs prevent it
                f"held total is below the hold of call {call_id}"
            )
        return int(amount)

    async def _append(self, params: dict[str, Any], *, balance_after: int) -> LedgerEntry:
        row = (
            await self._session.execute(
                insert(LedgerEntryRow)
                .values(
                    created_at=params["now"],
                    kind=params["kind"],
                    amount_micro=params["amount"],
                    reference=params["reference"],
                    idempotency_key=params["key"],
                    description=params["description"],
                    balance_after_micro=balance_after,
                )
                .returning(*cast(Table, LedgerEntryRow.__table__).c)
            )
        ).one()
        return _entry(row)

    # ---- the ledger (insert only) --------------------------------------------------------

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

    async def last_credit_id(self) -> int:
        return int(
            await self._session.scalar(
                select(func.max(LedgerEntryRow.id)).where(LedgerEntryRow.amount_micro > 0)
            )
            or 0
        )

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
