"""The wallet store: the wallet row, its ledger and its holds, one implementation per
database, picked once by ``wallet_store_for(db)``.

    __init__.py  WalletStore (the interface) and wallet_store_for (the factory)
    postgres.py  PostgresWalletStore: every write ONE statement, in autocommit
    sqlite.py    SqliteWalletStore: every write one short BEGIN IMMEDIATE transaction
    callpath.py  a call's writes joined with its record's (three transactions a call)
    common.py    results (Posted, Refused), row mappers, typed SQL, the reads, and
                 why a write was not applied

``callcontrol.billing.wallet.Wallet`` validates input, turns refusals into billing
errors and logs; everything about SQL and concurrency is here. Library errors leave
as project errors (``Database``: StoreError, Conflict).

How each database keeps concurrency honest:

- Every write checks ``available`` against the wallet row it has locked, in the same
  statement (PostgreSQL) or write transaction (SQLite) that changes balance, held,
  the call's hold and the ledger together; CHECK constraints back it. Of 50 calls
  racing for the last credits, exactly the affordable ones pass.
- Every write that touches a hold locks the wallet row *first*, so all wallet work
  is serialized on one row and locks are always taken in the same order (wallet,
  then hold): no deadlocks.
- PostgreSQL: a write is one statement of data-modifying CTEs in autocommit, so the
  row stays locked only while the server runs it and flushes its commit; at most the
  pool's size of writes run at once, the rest wait in the process (a semaphore). Its
  statements lock before they decide and write absolute values, because the parts of
  one statement read a snapshot older than the lock (``postgres`` explains).
- SQLite: a write takes the write lock at BEGIN (IMMEDIATE), so everything it reads
  is current, and runs two or three plain statements; this process's writers queue on
  an asyncio.Lock first instead of sleeping in SQLite's busy handler.
- Idempotency: a credit or a charge carries a key, unique in the ledger. A retry
  (after a timeout, a crash, a reconnect) finds the entry and applies nothing twice.
  When two retries race on PostgreSQL, the loser's statement fails on the unique key
  (nothing of it applied) or is refused by the wallet; it then returns the winner's
  entry.
- A refusal is explained by a look after the write, on the same connection or in the
  same transaction: the same key's entry, a hold that exists, too few credits. On
  PostgreSQL the look is a fresh snapshot and may contradict a refused hold (the
  wallet changed in between): the hold is then tried again.
- The ledger is only ever inserted into: there is no UPDATE or DELETE of it here
  (and the database's triggers refuse them, INSERT OR REPLACE on SQLite and
  TRUNCATE on PostgreSQL too).
- The ledger is hash-chained (``callcontrol.domain.money``): the wallet row, locked
  first by every write anyway, carries the chain head ``last_hash``. A write that
  appends an entry takes the entry's id after the lock, hashes the head, the id,
  the balance after it and the entry's encoded fields (``body``, computed here in
  Python), and writes the hash into the entry and the head, in the same statement
  (PostgreSQL: ``sha256`` in SQL) or the same wallet UPDATE (SQLite: the registered
  Python function ``ledger_hash``). So the chain's order is the order of the lock,
  and ids grow along it; ``audit`` recomputes it and names the first broken entry.

The one wallet row's id is ``models.WALLET_ID``, bound as ``:wallet_id`` in the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from callcontrol.domain.charging import Settlement
from callcontrol.domain.money import ChainHead, Hold, LedgerEntry, LedgerKind, WalletState
from callcontrol.store.db import Database
from callcontrol.store.wallet.callpath import Opened, Settled, Ticked, TickPlan, Work
from callcontrol.store.wallet.common import Posted, Refused
from callcontrol.store.wallet.postgres import PostgresWalletStore
from callcontrol.store.wallet.sqlite import SqliteWalletStore

__all__ = [
    "Opened",
    "Posted",
    "PostgresWalletStore",
    "Refused",
    "Settled",
    "SqliteWalletStore",
    "TickPlan",
    "Ticked",
    "WalletStore",
    "Work",
    "wallet_store_for",
]


T = TypeVar("T")


class WalletStore(Protocol):
    """The organisation's wallet in the database. StoreError when the wallet row is
    missing (``callcontrol db upgrade`` creates it) or the database fails."""

    # ---- reads: each in a short transaction of its own -----------------------------------

    async def state(self) -> WalletState: ...

    async def entries(self, limit: int) -> list[LedgerEntry]:
        """The newest ``limit`` ledger entries, newest first."""
        ...

    async def last_credit_id(self) -> int:
        """The newest entry that added credits (0 if none)."""
        ...

    async def holds(self) -> list[Hold]:
        """Every hold, oldest first."""
        ...

    async def hold_of(self, call_id: str) -> Hold | None: ...

    async def charged_for(self, reference: str) -> int:
        """Net micro-credits charged for ``reference`` (call charges less refunds)."""
        ...

    async def funds_of(self, call_id: str) -> tuple[int, Hold | None]:
        """``charged_for`` and ``hold_of`` of a call, read in one transaction."""
        ...

    async def chain_head(self) -> ChainHead:
        """The newest entry's id and hash (0 and ``GENESIS_HASH``: no entries)."""
        ...

    async def audit(self, anchor: ChainHead | None = None) -> list[str]:
        """Every broken invariant in words, read with the wallet locked (one view),
        the hash chain recomputed; ``anchor``, a head recorded earlier, must be in it."""
        ...

    # ---- writes: each atomic, each deciding from the locked wallet row ---------------------

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        """Add ``amount`` (either sign) to the balance and append its entry, iff the key
        is new and ``available`` stays >= 0. The entry with this key if it exists
        (``duplicate``; nothing changed); Refused if unaffordable."""
        ...

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused:
        """A ``call_charge`` of ``-amount``: the call's hold reduced by as much of it as
        it covers, the rest from ``available``. The entry with this key if it exists
        (``duplicate``; nothing changed); Refused beyond hold + available."""
        ...

    async def hold(self, call_id: str, amount: int) -> bool:
        """Create the call's hold of ``amount``; False if not available (nothing held).
        Conflict if the call already has a hold."""
        ...

    async def hold_up_to(self, call_id: str, wanted: int) -> int:
        """Hold as much as available up to ``wanted``, creating or extending the call's
        hold (also by 0); how much was added."""
        ...

    async def release(self, call_id: str) -> int:
        """Drop the call's hold; the amount released (0 if it had none)."""
        ...

    # ---- the call path: a call's writes joined with its record's (``callpath``) -----------

    async def open_call(
        self,
        call_id: str,
        amount: int,
        *,
        record: Work[object] | None,
        refused: Work[object],
    ) -> Opened:
        """``record`` (the call record's start), then ``hold(call_id, amount)``; if that
        is refused, ``refused`` (the record says so)."""
        ...

    async def tick(
        self, call_id: str, plan: TickPlan, *, also: Work[object] | None = None
    ) -> Ticked:
        """``also`` (the record's answer), the wallet read, the charge ``plan`` decides
        from it, then the hold it decides after the charge."""
        ...

    async def settle(
        self,
        call_id: str,
        decide: Callable[[int], Settlement],
        *,
        also: Callable[[Settlement], Work[T]],
    ) -> Settled[T]:
        """What the call was charged, ``decide``'s final charge or refund of it, the
        release of its hold and ``also(settlement)`` (the record's cost and end)."""
        ...


def wallet_store_for(db: Database) -> WalletStore:
    """The wallet store for ``db``'s dialect; pick it once and keep it (each store
    holds its writers' queue)."""
    if db.dialect == "sqlite":
        return SqliteWalletStore(db)
    return PostgresWalletStore(db)
