"""The wallet store on PostgreSQL: every write is ONE statement, in autocommit.

Each write (``post``, ``charge``, ``hold``, ``hold_up_to``, ``release``) is one
statement of data-modifying CTEs, run on a connection in autocommit
(``Database.autocommit``): the wallet row is locked only while the server executes
the statement and flushes its commit, with no client round trip in between. At
most the pool's size of writes run at once per store; the rest wait here, in order
(more would only open overflow connections that the pool closes on return).

Every statement follows one pattern, because all its parts read ONE snapshot, taken
when it started, i.e. before it waited for the wallet row; only rows it locks or
changes are re-read at their newest version (READ COMMITTED's EvalPlanQual), and
even then an UPDATE first filters by its WHERE and computes the new row, and checks
the CHECK constraints on it, from the snapshot's version: a ``WHERE balance - held
>= x`` refuses what the locked row allows, a ``SET held_micro = held_micro - x``
fails the CHECK on the snapshot's ``held`` (tests/integration/
test_billing_one_statement.py has such races). Hence:

1. ``cur``: the wallet row, FOR UPDATE, first. It waits for the lock and returns
   the newest version; no one can change the row until the statement commits.
2. ``hl``: the call's hold, FOR UPDATE, joined to ``cur`` so it is locked after the
   wallet (every write locks wallet, then hold: no deadlocks). Holds change only
   under the wallet lock, so it is current. (A hold inserted after the snapshot is
   not seen: the statement then acts as if it ran before that hold was taken.)
3. Decide from ``cur``/``hl`` only, and write ABSOLUTE values computed from them
   (``SET balance_micro = cur.balance, held_micro = cur.held``, never ``held_micro +
   x``), with a WHERE that does not read the row being updated: the snapshot's
   version then filters and CHECKs exactly like the newest one.
4. The idempotency key's NOT EXISTS reads the snapshot: a same-key entry committed
   since makes the ledger INSERT fail on the unique key and the whole statement
   with it (nothing applied); the store then returns the first entry.
5. Each part reads the RETURNING of the one before (the ledger row is inserted
   FROM the wallet update, the hold updated FROM it): order by data, not by text.
6. A ledger entry's id is ``nextval`` in a CTE ``n`` that reads ``cur`` (and only
   rows it will write): after the lock, so ids grow in the order of the chain. (In
   ``cur`` itself the scan would compute it before waiting for the lock.) Its hash
   is computed from ``cur``'s head (``_HASH``, the layout of ``domain.money``) and
   written to the head and, through RETURNING, to the entry.

A write that applies nothing is explained by a look on the same connection after
it (a fresh snapshot): the same key's entry, a hold that exists, too few credits.
If the look contradicts a refused ``hold`` (the wallet changed in between), the
hold is tried again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import QueuePool

from callcontrol.domain.money import ChainHead, LedgerKind
from callcontrol.errors import Conflict, StoreError
from callcontrol.store.audit import audit_chain, audit_wallet
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow
from callcontrol.store.wallet.callpath import SequentialCallPath
from callcontrol.store.wallet.common import (
    ENTRY,
    INSERT_ENTRY,
    NO_WALLET,
    Executor,
    Posted,
    Refused,
    SessionReads,
    WalletReads,
    entry_params,
    explain_charge,
    explain_hold,
    explain_post,
    posted,
    sql,
    sql_entries,
)

__all__ = ["PostgresStatements", "PostgresWalletStore"]

_DEFAULT_WRITERS = 5
_HOLD_ATTEMPTS = 3

# The entry's hash (``domain.money``: previous hash || id || balance_after || body),
# from the locked wallet row's head.
_HASH = (
    "encode(sha256(decode({head}, 'hex') || int8send({id}) || int8send({balance}) || :body), 'hex')"
)

_POST = sql_entries(f"""
WITH cur AS MATERIALIZED (
    SELECT balance_micro + :amount AS balance, held_micro AS held, last_hash
    FROM wallets WHERE id = :wallet_id FOR UPDATE
), n AS MATERIALIZED (
    SELECT cur.*, nextval('ledger_entries_id_seq') AS entry_id FROM cur
    WHERE cur.balance >= cur.held
      AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
), w AS (
    UPDATE wallets SET balance_micro = n.balance, held_micro = n.held,
        last_hash = {_HASH.format(head="n.last_hash", id="n.entry_id", balance="n.balance")},
        updated_at = :now
    FROM n
    WHERE wallets.id = :wallet_id
    RETURNING wallets.balance_micro, wallets.last_hash, n.entry_id
), e AS (
    {INSERT_ENTRY}
    SELECT w.entry_id, :now, :kind, :amount, :reference, :key, :description, w.balance_micro,
        w.last_hash
    FROM w
    RETURNING {ENTRY}
)
SELECT false AS duplicate, {ENTRY}, 0 AS hold_left FROM e
UNION ALL
SELECT true, {ENTRY}, 0 FROM ledger_entries WHERE idempotency_key = :key
""")

_CHARGE = sql_entries(f"""
WITH cur AS MATERIALIZED (
    SELECT balance_micro, held_micro, last_hash FROM wallets WHERE id = :wallet_id FOR UPDATE
), hl AS MATERIALIZED (
    SELECT holds.id, holds.amount_micro FROM holds JOIN cur ON true
    WHERE holds.call_id = :call_id FOR UPDATE OF holds
), f AS MATERIALIZED (
    SELECT cur.balance_micro - :amount AS balance,
        cur.held_micro - LEAST(:amount, COALESCE(hl.amount_micro, 0)) AS held,
        LEAST(:amount, COALESCE(hl.amount_micro, 0)) AS from_hold,
        COALESCE(hl.amount_micro, 0) AS hold_before, hl.id AS hold_id, cur.last_hash
    FROM cur LEFT JOIN hl ON true
), n AS MATERIALIZED (
    SELECT f.*, nextval('ledger_entries_id_seq') AS entry_id FROM f
    WHERE f.balance >= f.held
      AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = :key)
), w AS (
    UPDATE wallets SET balance_micro = n.balance, held_micro = n.held,
        last_hash = {_HASH.format(head="n.last_hash", id="n.entry_id", balance="n.balance")},
        updated_at = :now
    FROM n
    WHERE wallets.id = :wallet_id
    RETURNING wallets.balance_micro, wallets.last_hash, n.entry_id, n.from_hold,
        n.hold_before, n.hold_id
), h AS (
    UPDATE holds SET amount_micro = w.hold_before - w.from_hold, updated_at = :now
    FROM w WHERE holds.id = w.hold_id AND w.from_hold > 0
    RETURNING holds.id
), e AS (
    {INSERT_ENTRY}
    SELECT w.entry_id, :now, :kind, -:amount, :reference, :key, :description, w.balance_micro,
        w.last_hash
    FROM w
    RETURNING {ENTRY}
)
SELECT false AS duplicate, {ENTRY}, (SELECT hold_before - from_hold FROM w) AS hold_left
FROM e
UNION ALL
SELECT true, {ENTRY}, COALESCE((SELECT amount_micro FROM hl), 0)
FROM ledger_entries WHERE idempotency_key = :key
""")

_HOLD = sql("""
WITH cur AS MATERIALIZED (
    SELECT balance_micro AS balance, held_micro + :amount AS held
    FROM wallets WHERE id = :wallet_id FOR UPDATE
), w AS (
    UPDATE wallets SET balance_micro = cur.balance, held_micro = cur.held, updated_at = :now
    FROM cur
    WHERE wallets.id = :wallet_id AND cur.balance >= cur.held
      AND NOT EXISTS (SELECT 1 FROM holds WHERE call_id = :call_id)
    RETURNING wallets.id
)
INSERT INTO holds (call_id, amount_micro, created_at, updated_at)
SELECT :call_id, :amount, :now, :now FROM w
RETURNING id
""")

_HOLD_UP_TO = sql("""
WITH cur AS MATERIALIZED (
    SELECT LEAST(:wanted, balance_micro - held_micro) AS got, balance_micro AS balance,
        held_micro AS held
    FROM wallets WHERE id = :wallet_id FOR UPDATE
), w AS (
    UPDATE wallets
    SET balance_micro = cur.balance, held_micro = cur.held + cur.got, updated_at = :now
    FROM cur
    WHERE wallets.id = :wallet_id AND cur.got > 0
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

_RELEASE = sql("""
WITH cur AS MATERIALIZED (
    SELECT balance_micro AS balance, held_micro AS held
    FROM wallets WHERE id = :wallet_id FOR UPDATE
), hl AS MATERIALIZED (
    SELECT holds.id, holds.amount_micro FROM holds JOIN cur ON true
    WHERE holds.call_id = :call_id FOR UPDATE OF holds
), w AS (
    UPDATE wallets
    SET balance_micro = cur.balance, held_micro = cur.held - hl.amount_micro, updated_at = :now
    FROM cur, hl
    WHERE wallets.id = :wallet_id AND hl.amount_micro > 0
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


class PostgresStatements:
    """The one-statement writes, on the caller's executor: a connection in autocommit
    (``PostgresWalletStore``), or a transaction of the caller's (tests race them).
    Each returns what it applied; None/False: nothing applied (refused, no wallet, or
    the same key/hold only committed since the statement began)."""

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
        is new and ``available`` stays >= 0; or the entry with this key (``duplicate``)."""
        params = entry_params(
            kind=kind,
            amount=amount,
            reference=reference,
            idempotency_key=idempotency_key,
            description=description,
        )
        row = (await self._executor.execute(_POST, params)).first()
        return None if row is None else posted(row)

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
        it covers, the rest from ``available``, iff the key is new and it is affordable;
        or the entry with this key (``duplicate``)."""
        params = entry_params(
            kind=LedgerKind.CALL_CHARGE,
            amount=-amount,
            reference=reference,
            idempotency_key=idempotency_key,
            description=description,
        )
        # the statement takes the charge as a positive :amount (the entry's is -:amount)
        params.update(amount=amount, call_id=call_id)
        row = (await self._executor.execute(_CHARGE, params)).first()
        return None if row is None else posted(row)

    async def hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold of ``amount`` iff available and it has none."""
        params = {"now": utcnow(), "call_id": call_id, "amount": amount}
        return (await self._executor.execute(_HOLD, params)).first() is not None

    async def hold_up_to(self, call_id: str, wanted: int) -> int | None:
        """Hold as much as available up to ``wanted``, creating or extending the call's
        hold (also by 0); how much was added. None: no wallet."""
        params = {"now": utcnow(), "call_id": call_id, "wanted": wanted}
        row = (await self._executor.execute(_HOLD_UP_TO, params)).first()
        return None if row is None else int(row.got)

    async def release(self, call_id: str) -> int | None:
        """Drop the call's hold; the amount released (0 if none). None: no wallet."""
        params = {"now": utcnow(), "call_id": call_id}
        row = (await self._executor.execute(_RELEASE, params)).first()
        if row is None:
            return None
        if row.found != row.deleted:  # pragma: no cover - the hold row is locked
            raise StoreError(f"the hold of call {call_id} was not released")
        return int(row.released)


class PostgresWalletStore(SessionReads, SequentialCallPath):
    """``WalletStore`` on PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        pool = db.engine.pool
        self._writers = asyncio.Semaphore(
            max(1, pool.size()) if isinstance(pool, QueuePool) else _DEFAULT_WRITERS
        )

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit, once one of the pool's size of writers may go."""
        async with self._writers, self._db.autocommit() as connection:
            yield connection

    async def _first_entry(self, error: Conflict, key: str, call_id: str | None = None) -> Posted:
        """The entry a same-key write committed while ours ran (ours then failed on the
        unique key and applied nothing), with the call's hold if ``call_id``."""
        async with self._db.session() as session:
            reads = WalletReads(session)
            existing = await reads.entry_by_key(key)
            if existing is None:
                raise error
            hold = None if call_id is None else await reads.hold_of(call_id)
        return Posted(existing, duplicate=True, hold_left=0 if hold is None else hold.amount)

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        try:
            async with self._statement() as connection:
                done = await PostgresStatements(connection).post(
                    kind=kind,
                    amount=amount,
                    reference=reference,
                    idempotency_key=idempotency_key,
                    description=description,
                )
                if done is not None:
                    return done
                # refused, or a same-key entry committed since the statement began
                return await explain_post(WalletReads(connection), idempotency_key)
        except Conflict as error:
            return await self._first_entry(error, idempotency_key)

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        try:
            async with self._statement() as connection:
                done = await PostgresStatements(connection).charge(
                    call_id=call_id,
                    amount=amount,
                    reference=reference,
                    idempotency_key=idempotency_key,
                    description=description,
                )
                if done is not None:
                    return done
                # refused, or a same-key charge committed since the statement began
                return await explain_charge(WalletReads(connection), call_id, idempotency_key)
        except Conflict as error:
            return await self._first_entry(error, idempotency_key, call_id)

    async def hold(self, call_id: str, amount: int) -> bool:
        for _ in range(_HOLD_ATTEMPTS):
            try:
                async with self._statement() as connection:
                    if await PostgresStatements(connection).hold(call_id, amount):
                        return True
                    reads = WalletReads(connection)
                    state, hold = await reads.state(), await reads.hold_of(call_id)
            except Conflict as error:  # a hold inserted since the statement began
                raise Conflict(f"call {call_id} already has a hold") from error
            held = explain_hold(call_id, amount, state, hold)
            if held is not None:
                return held
            # changed between the statement and the look: try again
        return False  # pragma: no cover - the wallet changing under every attempt

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        async with self._statement() as connection:
            got = await PostgresStatements(connection).hold_up_to(call_id, wanted)
        if got is None:
            raise StoreError(NO_WALLET)
        return got

    async def release(self, call_id: str) -> int:
        async with self._statement() as connection:
            released = await PostgresStatements(connection).release(call_id)
        if released is None:
            raise StoreError(NO_WALLET)
        return released

    async def audit(self, anchor: ChainHead | None = None) -> list[str]:
        async with self._db.session() as session:  # audit_wallet locks the wallet row
            problems, last = await audit_wallet(session)
        if last is None:
            return problems
        async with self._db.session() as session:  # no lock: entries up to last are final
            return problems + await audit_chain(session, last, anchor)
