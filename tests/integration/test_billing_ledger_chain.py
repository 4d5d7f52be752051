"""The ledger's hash chain on real SQLite and PostgreSQL: what the database refuses,
and what the audit finds when someone who bypasses the triggers forges history.

A forger here is someone who can write the database directly: ``superuser`` drops
the ledger's triggers (SQLite) or turns them off for the transaction (PostgreSQL's
replica role), as the owner of the database file or a superuser could.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.billing.wallet import Wallet
from callcontrol.domain.money import (
    GENESIS_HASH,
    MICRO,
    ChainHead,
    LedgerEntry,
    LedgerKind,
    chain_hash,
    entry_body,
)
from callcontrol.errors import Conflict, InvalidInput, StoreError
from callcontrol.store import migrate
from callcontrol.store.audit import audit_chain, audit_wallet
from callcontrol.store.db import Database

SQLITE_TRIGGERS = (
    "ledger_entries_no_update",
    "ledger_entries_no_delete",
    "ledger_entries_no_replace",
)


@asynccontextmanager
async def superuser(db: Database) -> AsyncIterator[AsyncSession]:
    """A transaction in which the ledger's triggers do not fire."""
    async with db.session() as session:
        if db.dialect == "sqlite":
            for name in SQLITE_TRIGGERS:
                await session.execute(text(f"DROP TRIGGER {name}"))
        else:
            await session.execute(text("SET LOCAL session_replication_role = replica"))
        yield session


async def story(db: Database) -> Wallet:
    """#1 purchase 10, #2 a call's charge of 3 (from its hold), #3 purchase 5: balance 12."""
    wallet = Wallet(db)
    await wallet.credit(10 * MICRO, LedgerKind.PURCHASE, "order-1", "purchase:order-1", "")
    await wallet.hold("call-a", 4 * MICRO)
    await wallet.charge("call-a", 3 * MICRO, "call-a:1")
    await wallet.release("call-a")
    await wallet.credit(5 * MICRO, LedgerKind.PURCHASE, "order-2", "purchase:order-2", "")
    assert await wallet.audit() == []
    return wallet


def recomputed(entries: list[LedgerEntry]) -> list[str]:
    """The chain over ``entries`` (oldest first), in Python."""
    hashes, previous = [], GENESIS_HASH
    for entry in entries:
        body = entry_body(
            kind=entry.kind.value,
            amount=entry.amount,
            created_at=entry.created_at,
            reference=entry.reference,
            idempotency_key=entry.idempotency_key,
            description=entry.description,
        )
        previous = chain_hash(previous, entry.id, entry.balance_after, body)
        hashes.append(previous)
    return hashes


async def head_of(db: Database) -> str:
    async with db.session() as session:
        return str(await session.scalar(text("SELECT last_hash FROM wallets")))


# ---- the encoding ----------------------------------------------------------------------


def test_the_encoding_is_the_documented_one() -> None:
    """Rebuilt from the words of ``domain.money``, independently of its code."""
    at = datetime(2025, 11, 28, 12, 0, 0, 250, tzinfo=UTC)
    body = entry_body(
        kind="refund",
        amount=-7,
        created_at=at,
        reference=None,
        idempotency_key="k",
        description="Grüße",
    )
    micros = int(at.timestamp()) * 1_000_000 + 250
    expected = (
        b"callcontrol-ledger-v1\x00"
        + struct.pack(">qq", -7, micros)
        + struct.pack(">i", 6)
        + b"refund"
        + struct.pack(">i", -1)
        + struct.pack(">i", 1)
        + b"k"
        + struct.pack(">i", 7)
        + "Grüße".encode()
    )
    assert body == expected
    data = bytes(32) + struct.pack(">qq", 3, 99) + body
    assert chain_hash(GENESIS_HASH, 3, 99, body) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="not a hex SHA-256"):
        chain_hash("forged", 3, 99, body)


def test_a_chain_head_prints_and_parses_back() -> None:
    head = ChainHead(42, "ab" * 32)
    assert ChainHead.parse(f" {head} ") == head
    assert ChainHead.parse(f"42:{'AB' * 32}") == head
    for text_ in ("42", "x:" + "ab" * 32, "42:abc", "-1:" + "ab" * 32):
        with pytest.raises(InvalidInput, match="not a chain head"):
            ChainHead.parse(text_)


# ---- every database stores what Python computes ----------------------------------------


async def test_each_database_stores_the_chain_python_computes(database: Database) -> None:
    wallet = await story(database)
    await wallet.adjust(-MICRO, "Grüße, ein Fehler: 'quotes' and \\ backslash")
    await wallet.charge("call-b", MICRO, "call-b:1")  # no hold: from available
    entries = list(reversed(await wallet.ledger()))
    assert [entry.id for entry in entries] == [1, 2, 3, 4, 5]
    assert [entry.entry_hash for entry in entries] == recomputed(entries)
    head = await wallet.chain_head()
    assert head == ChainHead(5, entries[-1].entry_hash)
    assert await head_of(database) == head.entry_hash
    assert await wallet.audit(anchor=head) == []


async def test_a_new_wallet_has_the_genesis_head(database: Database) -> None:
    wallet = Wallet(database)
    assert await wallet.chain_head() == ChainHead(0, GENESIS_HASH)
    assert await head_of(database) == GENESIS_HASH
    assert await wallet.audit(anchor=ChainHead(0, GENESIS_HASH)) == []


async def test_a_retried_credit_neither_appends_nor_moves_the_head(database: Database) -> None:
    wallet = await story(database)
    head = await wallet.chain_head()
    again = await wallet.credit(5 * MICRO, LedgerKind.PURCHASE, "order-2", "purchase:order-2")
    assert (again.id, again.entry_hash) == (head.entry_id, head.entry_hash)
    assert await wallet.chain_head() == head
    assert await wallet.audit() == []


# ---- what the database refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param("INSERT OR REPLACE INTO ledger_entries {row}", id="replace-id"),
        pytest.param("REPLACE INTO ledger_entries {row}", id="replace-alias"),
        pytest.param(
            "INSERT INTO ledger_entries {row} ON CONFLICT (id) DO UPDATE SET amount_micro = 1",
            id="upsert",
        ),
    ],
)
async def test_rewriting_an_entry_by_insert_is_refused(database: Database, forgery: str) -> None:
    """REPLACE deletes the old row without firing the DELETE trigger; the 0003 trigger
    refuses the insert itself. An upsert fires the UPDATE trigger."""
    if "REPLACE" in forgery and database.dialect != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    wallet = await story(database)
    row = (
        "(id, created_at, kind, amount_micro, reference, idempotency_key, description,"
        " balance_after_micro, entry_hash)"
        f" VALUES (2, CURRENT_TIMESTAMP, 'call_charge', -1, 'call-a', 'call-a:1', 'call call-a',"
        f" 9000000, '{'0' * 64}')"
    )
    with pytest.raises((Conflict, StoreError), match="append-only"):
        async with database.session() as session:
            await session.execute(text(forgery.format(row=row)))
    entries = await wallet.ledger()
    assert entries[1].amount == -3 * MICRO
    assert await wallet.audit() == []
    # the wallet's own duplicate handling is unchanged: a retry finds its entry
    retry = await wallet.charge("call-a", 3 * MICRO, "call-a:1")
    assert retry.duplicate and retry.entry.id == 2


async def test_a_new_entry_with_a_used_key_is_refused(database: Database) -> None:
    await story(database)
    with pytest.raises(Conflict):
        async with database.session() as session:
            await session.execute(
                text(
                    "INSERT INTO ledger_entries (created_at, kind, amount_micro, reference,"
                    " idempotency_key, description, balance_after_micro, entry_hash)"
                    " VALUES (CURRENT_TIMESTAMP, 'refund', 1, NULL, 'call-a:1', '', 1, 'x')"
                )
            )


@pytest.mark.parametrize("table", ["ledger_entries", "wallets"])
async def test_truncate_is_refused_on_postgresql(database: Database, table: str) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite has no TRUNCATE (its DELETE trigger refuses DELETE FROM)")
    wallet = await story(database)
    with pytest.raises(StoreError, match=f"{table} cannot be truncated"):
        async with database.session() as session:
            await session.execute(text(f"TRUNCATE {table} CASCADE"))
    assert (await wallet.balance()).balance == 12 * MICRO
    assert await wallet.audit() == []


# ---- what the audit finds --------------------------------------------------------------


async def test_an_entry_rewritten_with_consistent_balances_is_named(database: Database) -> None:
    """The charge #2 of 3 credits becomes 1 credit; balance_after of #2 and #3 and the
    wallet's balance follow, so every balance invariant holds: only the chain breaks."""
    wallet = await story(database)
    async with superuser(database) as session:
        await session.execute(
            text(
                "UPDATE ledger_entries SET amount_micro = -1000000,"
                " balance_after_micro = 9000000 WHERE id = 2"
            )
        )
        await session.execute(
            text("UPDATE ledger_entries SET balance_after_micro = 14000000 WHERE id = 3")
        )
        await session.execute(text("UPDATE wallets SET balance_micro = 14000000"))
    assert (await wallet.ledger())[1].amount == -MICRO  # the forged history reads well
    problems = await wallet.audit()
    assert len(problems) == 1, problems
    assert problems[0].startswith("ledger entry #2: hash chain broken: stored hash ")
    assert "recomputed from its fields and entry #1" in problems[0]
    assert "(1 more entry after it does not match either)" in problems[0]


async def test_a_forger_who_rehashes_one_entry_breaks_the_next(database: Database) -> None:
    wallet = await story(database)
    first = (await wallet.ledger())[-1]
    forged = LedgerEntry(
        id=1,
        created_at=first.created_at,
        kind=first.kind,
        amount=first.amount,
        reference="order-666",
        idempotency_key=first.idempotency_key,
        description=first.description,
        balance_after=first.balance_after,
        entry_hash="",
    )
    (new_hash,) = recomputed([forged])
    async with superuser(database) as session:
        await session.execute(
            text("UPDATE ledger_entries SET reference = 'order-666', entry_hash = :h WHERE id = 1"),
            {"h": new_hash},
        )
    problems = await wallet.audit()
    assert len(problems) == 1, problems
    assert problems[0].startswith("ledger entry #2: hash chain broken")


async def test_a_malformed_hash_is_named_not_a_crash(database: Database) -> None:
    wallet = await story(database)
    async with superuser(database) as session:
        await session.execute(text("UPDATE ledger_entries SET entry_hash = 'forged' WHERE id = 2"))
    problems = await wallet.audit()
    assert problems[0].startswith("ledger entry #2: hash chain broken: stored hash 'forged'")
    assert "(1 more entry after it" in problems[0]


async def test_an_emptied_ledger_with_a_rewound_wallet_is_found(database: Database) -> None:
    """TRUNCATE (PostgreSQL) or DELETE (SQLite) of the ledger, and the wallet set to
    match: the sums agree, the head still names the last entry."""
    wallet = await story(database)
    empty = (
        "TRUNCATE ledger_entries"
        if database.dialect == "postgresql"
        else "DELETE FROM ledger_entries"
    )
    async with superuser(database) as session:
        await session.execute(text(empty))
        await session.execute(text("UPDATE wallets SET balance_micro = 0, held_micro = 0"))
    problems = await wallet.audit()
    assert len(problems) == 1, problems
    assert "the wallet's chain head " in problems[0]
    assert "of an empty ledger: entries were removed or added" in problems[0]


async def test_removing_the_newest_entries_is_found_by_the_head(database: Database) -> None:
    wallet = await story(database)
    async with superuser(database) as session:
        await session.execute(text("DELETE FROM ledger_entries WHERE id = 3"))
        await session.execute(text("UPDATE wallets SET balance_micro = 7000000"))
    problems = await wallet.audit()
    assert len(problems) == 1, problems
    assert "of the last entry #2: entries were removed or added" in problems[0]


async def test_cutting_the_tail_and_the_head_needs_an_anchor(database: Database) -> None:
    """The documented limit: removing the newest entries AND rewinding the head to
    the new last entry leaves a consistent database. The head recorded earlier (the
    anchor) is what tells."""
    wallet = await story(database)
    anchor = await wallet.chain_head()
    second = (await wallet.ledger())[1]
    async with superuser(database) as session:
        await session.execute(text("DELETE FROM ledger_entries WHERE id = 3"))
        await session.execute(
            text("UPDATE wallets SET balance_micro = 7000000, last_hash = :h"),
            {"h": second.entry_hash},
        )
    assert await wallet.audit() == []
    problems = await wallet.audit(anchor=anchor)
    assert problems == [
        f"anchor 3:{anchor.entry_hash[:16]}...: there is no entry #3; the ledger was cut back "
        "or renumbered"
    ]


async def test_a_rehashed_history_is_found_by_an_anchor(database: Database) -> None:
    """A forger who recomputes the whole chain from the forged entry on, and the
    head, leaves a consistent database; an anchor from before says otherwise."""
    wallet = await story(database)
    anchor = await wallet.chain_head()
    entries = list(reversed(await wallet.ledger()))
    forged = [
        LedgerEntry(
            id=e.id,
            created_at=e.created_at,
            kind=e.kind,
            amount=e.amount,
            reference="order-666" if e.id == 1 else e.reference,
            idempotency_key=e.idempotency_key,
            description=e.description,
            balance_after=e.balance_after,
            entry_hash="",
        )
        for e in entries
    ]
    hashes = recomputed(forged)
    async with superuser(database) as session:
        await session.execute(
            text("UPDATE ledger_entries SET reference = 'order-666' WHERE id = 1")
        )
        for entry, entry_hash in zip(entries, hashes, strict=True):
            await session.execute(
                text("UPDATE ledger_entries SET entry_hash = :h WHERE id = :i"),
                {"h": entry_hash, "i": entry.id},
            )
        await session.execute(text("UPDATE wallets SET last_hash = :h"), {"h": hashes[-1]})
    assert await wallet.audit() == []
    problems = await wallet.audit(anchor=anchor)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"anchor 3:{anchor.entry_hash[:16]}...: entry #3 now has hash")
    assert "the history up to it was rewritten" in problems[0]


# ---- migration 0003 --------------------------------------------------------------------

BEFORE_0003 = (
    ("old-1", 5 * MICRO, 5 * MICRO, datetime(2025, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)),
    ("old-2", -2 * MICRO, 3 * MICRO, datetime(2025, 11, 27, 9, 1, tzinfo=UTC)),
)


async def _entries_before_0003(db: Database) -> None:
    """Two entries and the wallet as 0002 knew them (no hashes)."""
    async with db.session() as session:
        for key, amount, after, at in BEFORE_0003:
            stored = at if db.dialect == "postgresql" else at.strftime("%Y-%m-%d %H:%M:%S.%f")
            await session.execute(
                text(
                    "INSERT INTO ledger_entries (created_at, kind, amount_micro, reference,"
                    " idempotency_key, description, balance_after_micro)"
                    " VALUES (:at, 'adjustment', :amount, NULL, :key, 'Korrektur', :after)"
                ),
                {"at": stored, "amount": amount, "key": key, "after": after},
            )
        await session.execute(text("UPDATE wallets SET balance_micro = 3000000"))


async def test_0003_hashes_the_entries_already_there_and_goes_down(database_url: str) -> None:
    migrate.downgrade(database_url, "0002")
    db = Database.from_url(database_url)
    try:
        await _entries_before_0003(db)
        await db.dispose()
        migrate.upgrade(database_url)
        wallet = Wallet(db)
        assert await wallet.audit() == []
        entries = list(reversed(await wallet.ledger()))
        assert [entry.created_at for entry in entries] == [at for *_, at in BEFORE_0003]
        assert [entry.entry_hash for entry in entries] == recomputed(entries)
        assert await head_of(db) == entries[-1].entry_hash
        await wallet.credit(MICRO, LedgerKind.PURCHASE, None, "after-0003")
        assert await wallet.audit() == []
        await db.dispose()
        migrate.downgrade(database_url, "0002")
        async with db.session() as session:
            columns = (await session.execute(text("SELECT * FROM ledger_entries"))).keys()
        assert "entry_hash" not in columns
        with pytest.raises((Conflict, StoreError), match="append-only"):  # 0002's triggers
            async with db.session() as session:
                await session.execute(text("UPDATE ledger_entries SET amount_micro = 1"))
        await db.dispose()
        migrate.upgrade(database_url)
        assert await Wallet(db).audit() == []
    finally:
        await db.dispose()


async def test_the_chain_is_recomputed_up_to_the_locked_view(database: Database) -> None:
    """``audit_chain`` runs after the locked view, up to the last entry that view saw:
    entries appended in between are neither waited for nor mistaken for forgeries."""
    wallet = await story(database)
    async with database.session(immediate=True) as session:
        problems, last = await audit_wallet(session)
    assert problems == [] and last == await wallet.chain_head()
    await wallet.credit(MICRO, LedgerKind.PURCHASE, None, "while-auditing")
    async with database.session() as session:
        assert await audit_chain(session, last, anchor=last) == []
