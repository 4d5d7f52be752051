"""What both wallet stores share: results, row mappers, typed SQL, reads, refusals.

``WalletReads`` runs the plain queries on whatever executor it is given (a session,
or the connection a write ran on, to look at a refusal). ``SessionReads`` is the
read half of ``WalletStore``: each read in a short transaction of its own. The
``explain_*`` functions say why a write was not applied, from a look after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Table,
    TextClause,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine

from callcontrol.domain.money import (
    GENESIS_HASH,
    ChainHead,
    Hold,
    LedgerEntry,
    LedgerKind,
    WalletState,
    entry_body,
)
from callcontrol.errors import Conflict, StoreError
from callcontrol.store.db import Database
from callcontrol.store.models import (
    WALLET_ID,
    HoldRow,
    LedgerEntryRow,
    UTCDateTime,
    WalletRow,
    utcnow,
)
from callcontrol.store.unit import UnitSession, prepared

__all__ = [
    "ENTRY",
    "INSERT_ENTRY",
    "NO_WALLET",
    "Executor",
    "Posted",
    "Refused",
    "SessionReads",
    "WalletReads",
    "entry",
    "entry_params",
    "explain_charge",
    "explain_hold",
    "explain_post",
    "posted",
    "sql",
    "sql_entries",
]

NO_WALLET = "the wallet row is missing: run `callcontrol db upgrade`"

Executor = AsyncSession | AsyncConnection | UnitSession


class Posted(NamedTuple):
    """A ledger entry written (or found: ``duplicate``) and, for a call charge, the
    call's hold left after it."""

    entry: LedgerEntry
    duplicate: bool
    hold_left: int = 0


@dataclass(frozen=True, slots=True)
class Refused:
    """A debit the wallet could not pay: what was available, and the call's hold (a
    charge), when looked at after the refusal."""

    available: int
    hold: int = 0


# ---- typed text SQL --------------------------------------------------------------------

ENTRY = (
    "id, created_at, kind, amount_micro, reference, idempotency_key, description,"
    " balance_after_micro, entry_hash"
)
INSERT_ENTRY = (
    "INSERT INTO ledger_entries (id, created_at, kind, amount_micro, reference, idempotency_key,"
    " description, balance_after_micro, entry_hash)"
)
MAX_DESCRIPTION = 256
_BIND_TYPES: dict[str, TypeEngine[Any]] = {
    "amount": BigInteger(),
    "balance": BigInteger(),
    "entry_id": BigInteger(),
    "hash": String(),
    "body": LargeBinary(),
    "delta": BigInteger(),
    "wanted": BigInteger(),
    "call_id": String(),
    "key": String(),
    "kind": String(),
    "reference": String(),
    "description": String(),
    "now": UTCDateTime(),
}
_ENTRY_TYPES: dict[str, TypeEngine[Any]] = {"created_at": UTCDateTime()}


def _param(name: str) -> BindParameter[Any]:
    if name == "wallet_id":  # bound once here: callers never pass it
        return bindparam(name, WALLET_ID, type_=Integer())
    return bindparam(name, type_=_BIND_TYPES[name])


def sql(statement: str) -> TextClause:
    """``statement`` with typed parameters (asyncpg then casts them: ``$1::BIGINT``);
    ``:wallet_id`` is bound to ``WALLET_ID``."""
    names = sorted(set(re.findall(r"(?<![:\w]):(\w+)", statement)))
    return text(statement).bindparams(*(_param(name) for name in names))


def sql_entries(statement: str) -> TextualSelect:
    """``sql`` for a statement that returns ledger entries (``ENTRY``)."""
    return sql(statement).columns(**_ENTRY_TYPES)


def entry_params(
    *,
    kind: LedgerKind,
    amount: int,
    reference: str | None,
    idempotency_key: str,
    description: str,
) -> dict[str, Any]:
    """The bind parameters of a write that appends an entry of ``amount`` (signed, as
    stored): its fields, ``now`` (its created_at) and ``body``, the canonical encoding
    of them that the statement hashes into the chain (``domain.money``)."""
    now = utcnow()
    description = description[:MAX_DESCRIPTION]
    body = entry_body(
        kind=kind.value,
        amount=amount,
        created_at=now,
        reference=reference,
        idempotency_key=idempotency_key,
        description=description,
    )
    return {
        "now": now,
        "kind": kind.value,
        "amount": amount,
        "reference": reference,
        "key": idempotency_key,
        "description": description,
        "body": body,
    }


# ---- rows to domain values -------------------------------------------------------------


def entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        created_at=row.created_at,
        kind=LedgerKind(row.kind),
        amount=row.amount_micro,
        reference=row.reference,
        idempotency_key=row.idempotency_key,
        description=row.description,
        balance_after=row.balance_after_micro,
        entry_hash=row.entry_hash,
    )


def posted(row: Any) -> Posted:
    """A row of a one-statement write: ``duplicate``, the entry's columns, ``hold_left``."""
    return Posted(entry=entry(row), duplicate=bool(row.duplicate), hold_left=int(row.hold_left))


def _hold(row: Any) -> Hold:
    return Hold(
        call_id=row.call_id,
        amount=row.amount_micro,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
    )


# ---- reads -----------------------------------------------------------------------------

_LEDGER = cast(Table, LedgerEntryRow.__table__)
_HOLDS = cast(Table, HoldRow.__table__)


# Built once (``store.unit.prepared``): the reads of every call's transactions (a
# call's hold: an AGI call's settle reads it).
_STATE = prepared(
    select(WalletRow.balance_micro, WalletRow.held_micro).where(WalletRow.id == WALLET_ID)
)
_HOLD_OF = prepared(select(_HOLDS).where(_HOLDS.c.call_id == bindparam("call_id")))
_CHARGED_FOR = prepared(
    select(func.coalesce(func.sum(LedgerEntryRow.amount_micro), 0)).where(
        LedgerEntryRow.reference == bindparam("reference", type_=String()),
        # not IN (...): an expanding parameter is rendered per execution
        or_(
            LedgerEntryRow.kind == LedgerKind.CALL_CHARGE.value,
            LedgerEntryRow.kind == LedgerKind.REFUND.value,
        ),
    )
)


class WalletReads:
    """The wallet row, its ledger and its holds, read on the caller's executor."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def state(self) -> WalletState | None:
        """Balance and held; None: no wallet row."""
        row = (await self._executor.execute(_STATE)).first()
        return None if row is None else WalletState(balance=row[0], held=row[1])

    async def entry_by_key(self, idempotency_key: str) -> LedgerEntry | None:
        row = (
            await self._executor.execute(
                select(_LEDGER).where(_LEDGER.c.idempotency_key == idempotency_key)
            )
        ).first()
        return None if row is None else entry(row)

    async def entries(self, limit: int) -> list[LedgerEntry]:
        """The newest entries first."""
        rows = await self._executor.execute(
            select(_LEDGER).order_by(_LEDGER.c.id.desc()).limit(limit)
        )
        return [entry(row) for row in rows]

    async def chain_head(self) -> ChainHead:
        """The newest entry's id and hash (0 and ``GENESIS_HASH``: no entries)."""
        row = (
            await self._executor.execute(
                select(_LEDGER.c.id, _LEDGER.c.entry_hash).order_by(_LEDGER.c.id.desc()).limit(1)
            )
        ).first()
        return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(row[0], row[1])

    async def last_credit_id(self) -> int:
        return int(
            await self._executor.scalar(
                select(func.max(LedgerEntryRow.id)).where(LedgerEntryRow.amount_micro > 0)
            )
            or 0
        )

    async def charged_for(self, reference: str) -> int:
        """Net micro-credits charged for ``reference`` (call charges less refunds), >= 0."""
        total = await self._executor.scalar(_CHARGED_FOR, {"reference": reference})
        return -int(total or 0)

    async def hold_of(self, call_id: str) -> Hold | None:
        row = (await self._executor.execute(_HOLD_OF, {"call_id": call_id})).first()
        return None if row is None else _hold(row)

    async def holds(self) -> list[Hold]:
        rows = await self._executor.execute(
            select(_HOLDS).order_by(_HOLDS.c.created_at, _HOLDS.c.id)
        )
        return [_hold(row) for row in rows]


class SessionReads:
    """The reads of a ``WalletStore``, the same on both databases: each in a short
    read transaction of its own (``Database.unit``: on SQLite one hand-off to its
    thread)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def state(self) -> WalletState:
        state = await self._db.unit(lambda session: WalletReads(session).state())
        if state is None:
            raise StoreError(NO_WALLET)
        return state

    async def entries(self, limit: int) -> list[LedgerEntry]:
        return await self._db.unit(lambda session: WalletReads(session).entries(limit))

    async def last_credit_id(self) -> int:
        return await self._db.unit(lambda session: WalletReads(session).last_credit_id())

    async def chain_head(self) -> ChainHead:
        return await self._db.unit(lambda session: WalletReads(session).chain_head())

    async def holds(self) -> list[Hold]:
        return await self._db.unit(lambda session: WalletReads(session).holds())

    async def hold_of(self, call_id: str) -> Hold | None:
        return await self._db.unit(lambda session: WalletReads(session).hold_of(call_id))

    async def charged_for(self, reference: str) -> int:
        return await self._db.unit(lambda session: WalletReads(session).charged_for(reference))

    async def funds_of(self, call_id: str) -> tuple[int, Hold | None]:
        async def work(session: Executor) -> tuple[int, Hold | None]:
            reads = WalletReads(session)
            return await reads.charged_for(call_id), await reads.hold_of(call_id)

        return await self._db.unit(work)


# ---- why a write was not applied -------------------------------------------------------


async def explain_post(reads: WalletReads, key: str) -> Posted | Refused:
    """A credit or debit not applied: the entry with its key (a retry), else refused."""
    existing = await reads.entry_by_key(key)
    if existing is not None:
        return Posted(existing, duplicate=True)
    state = await reads.state()
    if state is None:
        raise StoreError(NO_WALLET)
    return Refused(available=state.available)


async def explain_charge(reads: WalletReads, call_id: str, key: str) -> Posted | Refused:
    """A call charge not applied: the entry with its key (a retry), else refused."""
    existing = await reads.entry_by_key(key)
    hold = await reads.hold_of(call_id)
    held = 0 if hold is None else hold.amount
    if existing is not None:
        return Posted(existing, duplicate=True, hold_left=held)
    state = await reads.state()
    if state is None:
        raise StoreError(NO_WALLET)
    return Refused(available=state.available, hold=held)


def explain_hold(
    call_id: str, amount: int, state: WalletState | None, hold: Hold | None
) -> bool | None:
    """A hold not taken, from the wallet and the call's hold looked at after it:
    False if ``amount`` is not available, Conflict if the call has a hold; None if
    the look contradicts the refusal (the wallet changed in between)."""
    if state is None:
        raise StoreError(NO_WALLET)
    if state.available < amount:
        return False
    if hold is not None:
        raise Conflict(f"call {call_id} already has a hold")
    return None
