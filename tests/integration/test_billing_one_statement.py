"""Wallet writes racing a transaction that changed the same call's hold or key.

On PostgreSQL each wallet write is one statement: it reads a snapshot taken when it
started, before it waited for the wallet row. Here a "blocker" (another engine, as
another app process) holds the wallet row, the operation under test starts and
waits behind it, and the blocker then changes what the waiting statement already
read (releases the hold, charges the same key, ...) and commits. The waiting
operation must act on what the blocker committed, and the audit stays clean.

On SQLite the waiting operation waits at BEGIN IMMEDIATE and simply reads afresh;
the stories run there too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, text

from callcontrol.billing.wallet import Wallet
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.errors import Conflict
from callcontrol.store.db import Database
from callcontrol.store.models import WalletRow
from callcontrol.store.wallet.postgres import PostgresStatements
from callcontrol.store.wallet.sqlite import SqliteStatements

#: The store's writes, run inside the blocker's transaction.
Statements = PostgresStatements | SqliteStatements

WAITING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[Database]]:
    """Three engines on one database: the blocker's and two more."""
    dbs = [Database.from_url(database_url) for _ in range(3)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.dispose()


async def until_waiting(db: Database, count: int) -> None:
    """Until ``count`` statements wait for a row lock (PostgreSQL); SQLite: a moment."""
    if db.dialect == "sqlite":
        await asyncio.sleep(0.3)
        return
    for _ in range(500):
        async with db.session() as session:
            if (await session.scalar(WAITING)) == count:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} statement(s) never waited for the wallet row")


@asynccontextmanager
async def blocker(db: Database) -> AsyncIterator[Statements]:
    """A transaction holding the wallet row (SQLite: the write lock) until it ends."""
    async with db.session(immediate=True) as session:
        locked = await session.scalar(select(WalletRow.id).with_for_update())
        assert locked is not None
        yield (
            PostgresStatements(session) if db.dialect == "postgresql" else SqliteStatements(session)
        )


async def behind(
    engines: list[Database],
    change: Callable[[Statements], Awaitable[Any]],
    *operations: Awaitable[Any],
) -> list[Any]:
    """Start ``operations`` while the blocker holds the wallet, let the blocker make
    its ``change`` and commit; the operations' outcomes (or exceptions)."""
    async with blocker(engines[0]) as repo:
        tasks = [asyncio.ensure_future(op) for op in operations]
        await until_waiting(engines[0], len(tasks))
        await change(repo)
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def funded(db: Database, credits: int, holds: dict[str, int]) -> Wallet:
    wallet = Wallet(db)
    await wallet.credit(credits * MICRO, LedgerKind.PURCHASE, None, "purchase")
    for call_id, amount in holds.items():
        assert await wallet.hold(call_id, amount)
    return wallet


async def clean(wallet: Wallet) -> None:
    state = await wallet.balance()
    assert state.held == sum(hold.amount for hold in await wallet.open_holds())
    for hold in await wallet.open_holds():
        await wallet.release(hold.call_id)
    assert await wallet.audit() == []


async def test_a_charge_racing_the_same_charge_from_another_engine_charges_once(
    engines: list[Database],
) -> None:
    """Both charges start (and take their snapshots) before either commits."""
    first = await funded(engines[0], 5, {"call": 2 * MICRO})
    one, two = Wallet(engines[1]), Wallet(engines[2])
    results = await behind(
        engines,
        lambda repo: asyncio.sleep(0),
        one.charge("call", MICRO, "call:minute-1"),
        two.charge("call", MICRO, "call:minute-1"),
    )
    assert sorted(result.duplicate for result in results) == [False, True]
    assert results[0].entry == results[1].entry
    assert [result.hold_left for result in results] == [MICRO, MICRO]
    state = await first.balance()
    assert (state.balance, state.held) == (4 * MICRO, MICRO)
    assert len(await first.ledger()) == 2
    await clean(first)


async def test_same_key_charges_from_two_engines_race_and_charge_once(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 100, {})
    one, two = Wallet(engines[1]), Wallet(engines[2])
    for minute in range(20):
        key = f"call:minute-{minute}"
        results = await asyncio.gather(
            one.charge("call", MICRO, key), two.charge("call", MICRO, key)
        )
        assert sorted(result.duplicate for result in results) == [False, True]
        assert results[0].entry.id == results[1].entry.id
    assert (await first.balance()).balance == 80 * MICRO
    assert await first.charged_for("call") == 20 * MICRO
    await clean(first)


async def test_a_charge_committed_meanwhile_with_the_same_key_is_returned(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {"call": 2 * MICRO})
    two = Wallet(engines[1])
    charged: list[Any] = []

    async def charge_first(repo: Statements) -> None:
        charged.append(
            await repo.charge(
                call_id="call",
                amount=MICRO,
                reference="call",
                idempotency_key="k",
                description="call call",
            )
        )

    [result] = await behind(engines, charge_first, two.charge("call", MICRO, "k"))
    assert result.duplicate and result.entry == charged[0].entry
    assert result.hold_left == MICRO
    with pytest.raises(Conflict, match="was used for call_charge"):
        await two.charge("call", 2 * MICRO, "k")
    assert (await first.balance()).balance == 4 * MICRO
    await clean(first)


async def test_a_charge_after_its_hold_was_released_meanwhile_uses_available(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {"x": 2 * MICRO})
    [result] = await behind(
        engines, lambda repo: repo.release("x"), Wallet(engines[1]).charge("x", MICRO, "x:1")
    )
    assert (result.duplicate, result.hold_left) == (False, 0)
    state = await first.balance()
    assert (state.balance, state.held) == (4 * MICRO, 0)
    assert await first.open_holds() == []
    await clean(first)


async def test_a_charge_after_its_hold_was_charged_meanwhile_uses_the_rest(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {"x": 2 * MICRO})

    async def charge_one(repo: Statements) -> None:
        await repo.charge(
            call_id="x", amount=MICRO, reference="x", idempotency_key="x:1", description="x"
        )

    [result] = await behind(engines, charge_one, Wallet(engines[1]).charge("x", 2 * MICRO, "x:2"))
    assert result.hold_left == 0  # 1 from the hold left, 1 from available
    state = await first.balance()
    assert (state.balance, state.held) == (2 * MICRO, 0)
    await clean(first)


async def test_a_release_after_its_hold_grew_meanwhile_releases_all_of_it(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {"x": MICRO})
    [released] = await behind(
        engines, lambda repo: repo.hold_up_to("x", 2 * MICRO), Wallet(engines[1]).release("x")
    )
    assert released == 3 * MICRO
    assert (await first.balance()).held == 0
    await clean(first)


async def test_releases_racing_from_two_engines_release_once(engines: list[Database]) -> None:
    first = await funded(engines[0], 5, {"x": 2 * MICRO})
    released = await behind(
        engines,
        lambda repo: asyncio.sleep(0),
        Wallet(engines[1]).release("x"),
        Wallet(engines[2]).release("x"),
    )
    assert sorted(released) == [0, 2 * MICRO]
    assert (await first.balance()).held == 0
    await clean(first)


async def test_hold_up_to_after_a_release_meanwhile_holds_anew(engines: list[Database]) -> None:
    first = await funded(engines[0], 5, {"x": 2 * MICRO})
    [got] = await behind(
        engines, lambda repo: repo.release("x"), Wallet(engines[1]).hold_up_to("x", 4 * MICRO)
    )
    assert got == 4 * MICRO
    assert [hold.amount for hold in await first.open_holds()] == [4 * MICRO]
    assert (await first.balance()).held == 4 * MICRO
    await clean(first)


async def test_hold_up_to_after_credits_were_spent_meanwhile_takes_what_is_left(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {"x": MICRO})

    async def spend(repo: Statements) -> None:
        await repo.post(
            kind=LedgerKind.ADJUSTMENT,
            amount=-3 * MICRO,
            reference=None,
            idempotency_key="spend",
            description="spend",
        )

    [got] = await behind(engines, spend, Wallet(engines[1]).hold_up_to("x", 4 * MICRO))
    assert got == MICRO
    state = await first.balance()
    assert (state.balance, state.held, state.available) == (2 * MICRO, 2 * MICRO, 0)
    await clean(first)


async def test_a_hold_taken_meanwhile_for_the_same_call_is_a_conflict(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 5, {})
    [error] = await behind(
        engines, lambda repo: repo.hold("x", MICRO), Wallet(engines[1]).hold("x", MICRO)
    )
    assert isinstance(error, Conflict)
    assert "already has a hold" in str(error)
    assert (await first.balance()).held == MICRO
    await clean(first)


async def test_a_credit_racing_the_same_credit_from_another_engine_counts_once(
    engines: list[Database],
) -> None:
    first = Wallet(engines[0])
    entries = await behind(
        engines,
        lambda repo: asyncio.sleep(0),
        Wallet(engines[1]).credit(3 * MICRO, LedgerKind.PURCHASE, "o", "order-1"),
        Wallet(engines[2]).credit(3 * MICRO, LedgerKind.PURCHASE, "o", "order-1"),
    )
    assert entries[0] == entries[1]
    assert (await first.balance()).balance == 3 * MICRO
    await clean(first)


async def test_a_refused_charge_that_lost_to_the_same_key_is_a_duplicate(
    engines: list[Database],
) -> None:
    """The winner spends the last credits: the loser is refused by the wallet check,
    then finds the winner's entry and returns it instead of ChargeRefused."""
    first = await funded(engines[0], 1, {})
    results = await behind(
        engines,
        lambda repo: asyncio.sleep(0),
        Wallet(engines[1]).charge("c", MICRO, "c:1"),
        Wallet(engines[2]).charge("c", MICRO, "c:1"),
    )
    assert sorted(result.duplicate for result in results) == [False, True]
    assert (await first.balance()).balance == 0
    await clean(first)


async def test_a_hold_after_credits_were_freed_meanwhile_is_taken(
    engines: list[Database],
) -> None:
    """The statement's snapshot says nothing is available; the row it locks says 5."""
    first = await funded(engines[0], 5, {"x": 5 * MICRO})
    [held] = await behind(
        engines, lambda repo: repo.release("x"), Wallet(engines[1]).hold("y", 3 * MICRO)
    )
    assert held is True
    assert (await first.balance()).held == 3 * MICRO
    await clean(first)


async def test_a_charge_affordable_only_after_a_credit_meanwhile_goes_through(
    engines: list[Database],
) -> None:
    first = await funded(engines[0], 1, {"x": MICRO})

    async def top_up(repo: Statements) -> None:
        await repo.post(
            kind=LedgerKind.PURCHASE,
            amount=5 * MICRO,
            reference=None,
            idempotency_key="top-up",
            description="",
        )

    [charged, extended] = await behind(
        engines,
        top_up,
        Wallet(engines[1]).charge("x", 3 * MICRO, "x:1"),
        Wallet(engines[2]).hold_up_to("x", MICRO),
    )
    assert not isinstance(charged, BaseException), charged
    assert extended == MICRO
    state = await first.balance()
    assert state.balance == 3 * MICRO
    assert state.held == sum(hold.amount for hold in await first.open_holds())
    await clean(first)


async def test_every_operation_racing_from_five_engines_keeps_the_books(
    database_url: str,
) -> None:
    """Random holds, top-ups of holds, charges (some retried), releases, credits and debits
    on a few calls from five engines at once: no deadlock, no error but the refusals,
    and the books balance: every charge that was not a duplicate is in the ledger."""
    dbs = [Database.from_url(database_url) for _ in range(5)]
    try:
        wallets = [Wallet(db) for db in dbs]
        first = wallets[0]
        await first.credit(20 * MICRO, LedgerKind.PURCHASE, None, "start")
        rng = random.Random(7)
        charged: dict[int, int] = {}

        async def one(i: int) -> None:
            wallet = wallets[i % len(wallets)]
            call_id = f"c{rng.randrange(6)}"
            amount = rng.randrange(1, 3 * MICRO)
            kind = rng.randrange(6)
            try:
                if kind == 0:
                    await wallet.hold(call_id, amount)
                elif kind == 1:
                    await wallet.hold_up_to(call_id, amount)
                elif kind == 2:
                    key = f"{call_id}:{rng.randrange(20)}"
                    result = await wallet.charge(call_id, MICRO // 4, key)
                    if not result.duplicate:
                        charged[result.entry.id] = -result.entry.amount
                elif kind == 3:
                    await wallet.release(call_id)
                elif kind == 4:
                    await wallet.credit(MICRO, LedgerKind.PURCHASE, None, f"p{rng.randrange(10)}")
                else:
                    await wallet.adjust(-MICRO // 2, "correction")
            except Conflict:  # refusals, a hold that exists
                pass

        await asyncio.gather(*(one(i) for i in range(300)))
        entries = await first.ledger(limit=1000)
        charges = {e.id: -e.amount for e in entries if e.kind == LedgerKind.CALL_CHARGE}
        assert charges == charged
        await clean(first)
    finally:
        for db in dbs:
            await db.dispose()
