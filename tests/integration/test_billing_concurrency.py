"""Many calls on one wallet at once: never more spent than the wallet holds.

Each story runs on SQLite and PostgreSQL; "processes" are separate engines (their
own connection pools) on the same database, as several app instances would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callcontrol.billing.errors import ChargeRefused
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.domain.rating import Direction, Rate, call_cost
from callcontrol.store.db import Database

CALLS = 50
RATE = Rate(None, Direction.OUTBOUND, None, "GB", None, MICRO, 0, 60, 60)  # 1 credit/min
CALL_COST = call_cost(RATE, 60)  # one minute: exactly 1 credit


@pytest.fixture(params=[1, 5], ids=["one-process", "five-processes"])
async def wallets(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[list[Wallet]]:
    dbs = [Database.from_url(database_url) for _ in range(request.param)]
    try:
        yield [Wallet(db) for db in dbs]
    finally:
        for db in dbs:
            await db.dispose()


async def never_negative(wallet: Wallet, stop: asyncio.Event) -> int:
    """Sample the wallet while the calls run; returns how many samples were taken."""
    samples = 0
    while not stop.is_set():
        state = await wallet.balance()
        assert state.balance >= 0 and state.held >= 0 and state.available >= 0, state
        samples += 1
        await asyncio.sleep(0)
    return samples


async def test_fifty_calls_on_a_wallet_that_pays_for_ten(wallets: list[Wallet]) -> None:
    """Each call holds the cost of its minute, then is charged it and hangs up."""
    first = wallets[0]
    await first.credit(10 * CALL_COST, LedgerKind.PURCHASE, "order", "purchase:order")

    async def call(i: int) -> bool:
        wallet = wallets[i % len(wallets)]
        call_id = f"call-{i}"
        if not await wallet.hold(call_id, CALL_COST):
            return False
        result = await wallet.charge(call_id, CALL_COST, f"{call_id}:1")
        assert result.hold_left == 0
        await wallet.release(call_id)
        return True

    stop = asyncio.Event()
    sampler = asyncio.create_task(never_negative(first, stop))
    outcomes = await asyncio.gather(*(call(i) for i in range(CALLS)))
    stop.set()
    assert await sampler > 0
    assert sum(outcomes) == 10
    state = await first.balance()
    assert (state.balance, state.held) == (0, 0)
    assert len(await first.ledger(limit=100)) == 11
    assert await first.audit() == []


async def test_fifty_calls_charging_without_holds_cannot_overdraw(wallets: list[Wallet]) -> None:
    """Charges alone (no hold) are refused once the available credits are gone."""
    first = wallets[0]
    await first.credit(10 * CALL_COST, LedgerKind.PURCHASE, "order", "purchase:order")

    async def call(i: int) -> bool:
        try:
            await wallets[i % len(wallets)].charge(f"c{i}", CALL_COST, f"c{i}:1")
        except ChargeRefused:
            return False
        return True

    assert sum(await asyncio.gather(*(call(i) for i in range(CALLS)))) == 10
    assert (await first.balance()).balance == 0
    assert await first.audit() == []


async def test_partial_holds_share_the_last_credits_exactly(wallets: list[Wallet]) -> None:
    """50 calls each want 1 credit of 7.5: what they get adds up to 7.5, no more."""
    first = wallets[0]
    await first.credit(7_500_000, LedgerKind.PURCHASE, None, "p")
    got = await asyncio.gather(
        *(wallets[i % len(wallets)].hold_up_to(f"c{i}", MICRO) for i in range(CALLS))
    )
    assert sum(got) == 7_500_000
    assert sorted(got, reverse=True)[:8] == [MICRO] * 7 + [500_000]
    assert (await first.balance()).available == 0
    await asyncio.gather(*(first.release(f"c{i}") for i in range(CALLS)))
    assert (await first.balance()).held == 0
    assert await first.audit() == []


async def test_one_charge_retried_from_every_process_at_once_is_charged_once(
    wallets: list[Wallet],
) -> None:
    first = wallets[0]
    await first.credit(5 * MICRO, LedgerKind.PURCHASE, None, "p")
    await first.hold("call", 2 * MICRO)
    results = await asyncio.gather(
        *(wallets[i % len(wallets)].charge("call", MICRO, "call:minute-1") for i in range(20))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.entry.id for r in results}) == 1
    state = await first.balance()
    assert (state.balance, state.held) == (4 * MICRO, MICRO)
    await first.release("call")
    assert await first.audit() == []


async def test_one_purchase_credited_from_every_process_at_once_counts_once(
    wallets: list[Wallet],
) -> None:
    entries = await asyncio.gather(
        *(
            wallets[i % len(wallets)].credit(3 * MICRO, LedgerKind.PURCHASE, "o", "order-9")
            for i in range(20)
        )
    )
    assert len({entry.id for entry in entries}) == 1
    assert (await wallets[0].balance()).balance == 3 * MICRO
    assert await wallets[0].audit() == []


async def test_releases_and_extensions_racing_keep_held_equal_to_the_holds(
    wallets: list[Wallet],
) -> None:
    first = wallets[0]
    await first.credit(100 * MICRO, LedgerKind.PURCHASE, None, "p")
    for i in range(10):
        assert await first.hold(f"c{i}", MICRO)

    async def churn(i: int) -> None:
        wallet = wallets[i % len(wallets)]
        call_id = f"c{i % 10}"
        if i % 3 == 0:
            await wallet.release(call_id)
        else:
            await wallet.hold_up_to(call_id, MICRO)

    await asyncio.gather(*(churn(i) for i in range(CALLS)))
    holds = await first.open_holds()
    assert (await first.balance()).held == sum(hold.amount for hold in holds)
    await asyncio.gather(*(first.release(hold.call_id) for hold in holds))
    assert await first.audit() == []
