"""The wallet's audit: every broken money invariant, in words.

The invariants are those of ``callcontrol.domain.money``: the wallet row's balance is
the sum of the ledger and the last entry's ``balance_after``, each entry's
``balance_after`` continues the chain, held is the sum of the holds, nothing is
negative, an idempotency key is used once, a hold belongs to a live call, and a
settled call record's cost is what the ledger charged for it. Each query reports at
most ``MAX_PROBLEMS`` rows.

The hash chain (``callcontrol.domain.money``): the wallet's chain head must be the
last entry's hash, and every entry's hash is recomputed from its fields and the
hash stored in the entry before it; the first entry that does not match is named
(a forged entry, the one after a forged hash, or after removed or inserted
entries), with how many more do not. An ``anchor`` (a head recorded earlier,
outside the database) must still be in the chain.

``audit_wallet`` runs in the caller's session, which must be able to lock the
wallet row (see ``callcontrol.store.wallet``: each store runs it under its own write
strategy); it returns the last entry it saw. ``audit_chain`` then recomputes the
chain up to that entry in a session of its own, WITHOUT the lock: entries never
change, and every later entry has a higher id, so writers need not wait while
Python hashes a long ledger.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.money import (
    GENESIS_HASH,
    ChainHead,
    chain_hash,
    entry_body,
    format_credits,
    is_hash,
)
from callcontrol.store.models import WALLET_ID, CallRecordRow, HoldRow, LedgerEntryRow, WalletRow

__all__ = ["MAX_PROBLEMS", "audit_chain", "audit_wallet"]

MAX_PROBLEMS = 20
_PAGE = 5000  # ledger entries read at once to recompute the chain


async def audit_wallet(session: AsyncSession) -> tuple[list[str], ChainHead | None]:
    """Every broken invariant but the links of the hash chain, in words ([] when the
    wallet is consistent), and the last entry's id and stored hash (None: no wallet).

    Locks the wallet row first (FOR UPDATE; on SQLite the caller's BEGIN IMMEDIATE
    already holds the write lock): every writer waits, so all the reads below see
    one consistent state (also under PostgreSQL's READ COMMITTED).
    """
    wallet = (
        await session.execute(
            select(WalletRow.balance_micro, WalletRow.held_micro, WalletRow.last_hash)
            .where(WalletRow.id == WALLET_ID)
            .with_for_update()
        )
    ).first()
    if wallet is None:
        return [f"the wallet row (id {WALLET_ID}) is missing: run `callcontrol db upgrade`"], None
    balance, held, head = int(wallet[0]), int(wallet[1]), str(wallet[2])
    problems: list[str] = []
    ledger_sum = int(
        await session.scalar(select(func.coalesce(func.sum(LedgerEntryRow.amount_micro), 0))) or 0
    )
    holds_sum = int(
        await session.scalar(select(func.coalesce(func.sum(HoldRow.amount_micro), 0))) or 0
    )
    if balance != ledger_sum:
        problems.append(
            f"balance {format_credits(balance)} != sum of the ledger {format_credits(ledger_sum)}"
        )
    if held != holds_sum:
        problems.append(
            f"held {format_credits(held)} != sum of the holds {format_credits(holds_sum)}"
        )
    if held < 0 or balance - held < 0:
        problems.append(
            f"negative amounts: held {format_credits(held)}, "
            f"available {format_credits(balance - held)}"
        )
    last = (
        await session.execute(
            select(LedgerEntryRow.id, LedgerEntryRow.balance_after_micro, LedgerEntryRow.entry_hash)
            .order_by(LedgerEntryRow.id.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last[1] != balance:
        problems.append(
            f"balance {format_credits(balance)} != balance_after {format_credits(last[1])} "
            f"of the last entry #{last[0]}"
        )
    newest = ChainHead(0, GENESIS_HASH) if last is None else ChainHead(last[0], last[2])
    if head != newest.entry_hash:
        what = f"the last entry #{newest.entry_id}" if newest.entry_id else "an empty ledger"
        problems.append(
            f"the wallet's chain head {_short(head)} != {_short(newest.entry_hash)} of {what}: "
            "entries were removed or added, or the head was rewritten"
        )
    problems.extend(await _broken_chain(session))
    problems.extend(await _negative_holds(session))
    problems.extend(await _duplicate_keys(session))
    problems.extend(await _orphan_holds(session))
    problems.extend(await _settled_mismatches(session))
    return problems, newest


async def _rows(session: AsyncSession, sql: str) -> list[Any]:
    return list((await session.execute(text(sql))).all())


async def _broken_chain(session: AsyncSession) -> list[str]:
    rows = await _rows(
        session,
        "SELECT id, amount_micro, balance_after_micro, previous FROM ("
        " SELECT id, amount_micro, balance_after_micro,"
        " COALESCE(LAG(balance_after_micro) OVER (ORDER BY id), 0) AS previous"
        " FROM ledger_entries) AS chain"
        " WHERE balance_after_micro <> previous + amount_micro"
        f" ORDER BY id LIMIT {MAX_PROBLEMS}",
    )
    return [
        f"ledger entry #{id_}: balance_after {format_credits(after)} != previous "
        f"{format_credits(previous)} + amount {format_credits(amount)}"
        for id_, amount, after, previous in rows
    ]


_LEDGER = cast(Table, LedgerEntryRow.__table__)


def _short(value: str | None) -> str:
    """A hash as its first 16 digits; anything else as it is."""
    if value is None:
        return "nothing (the previous entry's hash is malformed)"
    return f"{value[:16]}..." if is_hash(value) else repr(value)


async def audit_chain(
    session: AsyncSession, upto: ChainHead, anchor: ChainHead | None = None
) -> list[str]:
    """The first entry up to ``upto`` whose stored hash is not recomputed from its
    fields and the hash stored in the entry before it; the anchor against the entry
    it names."""
    problems: list[str] = []
    first: str | None = None
    broken = 0
    previous, previous_id = GENESIS_HASH, 0
    anchor_seen = anchor is None or anchor.entry_id == 0
    while True:
        rows = (
            await session.execute(
                select(_LEDGER)
                .where(_LEDGER.c.id > previous_id, _LEDGER.c.id <= upto.entry_id)
                .order_by(_LEDGER.c.id)
                .limit(_PAGE)
            )
        ).all()
        for row in rows:
            computed = _recomputed(row, previous)
            if computed != row.entry_hash:
                broken += 1
                if first is None:
                    after = f"entry #{previous_id}" if previous_id else "the start of the chain"
                    first = (
                        f"ledger entry #{row.id}: hash chain broken: stored hash "
                        f"{_short(row.entry_hash)} != {_short(computed)} recomputed from its "
                        f"fields and {after}; this entry or the one before it was changed, "
                        "or entries between them were removed or inserted"
                    )
            if anchor is not None and row.id == anchor.entry_id:
                anchor_seen = True
                if row.entry_hash != anchor.entry_hash:
                    problems.append(
                        f"anchor {anchor.entry_id}:{_short(anchor.entry_hash)}: entry "
                        f"#{row.id} now has hash {_short(row.entry_hash)}; the history up to "
                        "it was rewritten"
                    )
            previous, previous_id = row.entry_hash, row.id
        if len(rows) < _PAGE:
            break
    if first is not None:
        more = {1: "", 2: " (1 more entry after it does not match either)"}.get(
            broken, f" ({broken - 1} more entries after it do not match either)"
        )
        problems.insert(0, first + more)
    if not anchor_seen and anchor is not None:
        problems.append(
            f"anchor {anchor.entry_id}:{_short(anchor.entry_hash)}: there is no entry "
            f"#{anchor.entry_id}; the ledger was cut back or renumbered"
        )
    return problems


def _recomputed(row: Any, previous: str) -> str | None:
    """The hash ``row`` must have after an entry hashed ``previous`` (None if
    ``previous`` is not a hash)."""
    if not is_hash(previous):
        return None
    body = entry_body(
        kind=row.kind,
        amount=row.amount_micro,
        created_at=row.created_at,
        reference=row.reference,
        idempotency_key=row.idempotency_key,
        description=row.description,
    )
    return chain_hash(previous, row.id, row.balance_after_micro, body)


async def _negative_holds(session: AsyncSession) -> list[str]:
    rows = await _rows(
        session,
        f"SELECT call_id, amount_micro FROM holds WHERE amount_micro < 0 LIMIT {MAX_PROBLEMS}",
    )
    return [
        f"hold of call {call_id} is negative: {format_credits(amount)}" for call_id, amount in rows
    ]


async def _duplicate_keys(session: AsyncSession) -> list[str]:
    rows = await _rows(
        session,
        "SELECT idempotency_key, COUNT(*) FROM ledger_entries GROUP BY idempotency_key"
        f" HAVING COUNT(*) > 1 LIMIT {MAX_PROBLEMS}",
    )
    return [f"idempotency key {key!r} is used by {n} ledger entries" for key, n in rows]


async def _orphan_holds(session: AsyncSession) -> list[str]:
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
    for call_id, record_id, charge_state in await session.execute(statement):
        if record_id is None:
            problems.append(f"hold of call {call_id}: no such call record")
        else:
            problems.append(
                f"hold of call {call_id}: the call ended ({charge_state or 'not charged'})"
                " but its hold was not released"
            )
    return problems


async def _settled_mismatches(session: AsyncSession) -> list[str]:
    rows = await _rows(
        session,
        "SELECT r.call_id, r.cost_micro,"
        " CAST(COALESCE(-SUM(l.amount_micro), 0) AS BIGINT) AS charged"
        " FROM call_records r LEFT JOIN ledger_entries l ON l.reference = r.call_id"
        " AND l.kind IN ('call_charge', 'refund')"
        " WHERE r.charge_state = 'settled' AND r.cost_micro IS NOT NULL"
        " GROUP BY r.call_id, r.cost_micro"
        " HAVING COALESCE(-SUM(l.amount_micro), 0) <> r.cost_micro"
        f" ORDER BY r.call_id LIMIT {MAX_PROBLEMS}",
    )
    return [
        f"call {call_id}: charged {format_credits(charged)} in the ledger, "
        f"its record says {format_credits(cost)}"
        for call_id, cost, charged in rows
    ]
