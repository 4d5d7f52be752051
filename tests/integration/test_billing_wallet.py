"""The wallet on real SQLite and PostgreSQL: credits, holds, charges, release, audit.

Each test is a small accounting story; every one ends with a clean audit unless
it is about the audit finding something.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from callcontrol.billing.errors import ChargeRefused, InsufficientCredits
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.call_records import CallDirection
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.errors import Conflict, InvalidInput, StoreError
from callcontrol.store.db import Database
from callcontrol.store.repositories import CallRecordRepository


async def start_call(db: Database, call_id: str) -> None:
    async with db.session() as session:
        await CallRecordRepository(session).start(
            call_id=call_id,
            direction=CallDirection.OUTBOUND,
            caller="1001",
            callee="+442079460000",
            channel_id=f"chan-{call_id}",
            started_at=datetime.now(UTC),
        )


async def funded(db: Database, credits: int) -> Wallet:
    wallet = Wallet(db)
    await wallet.credit(credits * MICRO, LedgerKind.PURCHASE, "order-1", "purchase:order-1", "")
    return wallet


async def test_a_new_wallet_is_empty_and_clean(database: Database) -> None:
    wallet = Wallet(database)
    state = await wallet.balance()
    assert (state.balance, state.held, state.available) == (0, 0, 0)
    assert await wallet.ledger() == []
    assert await wallet.last_credit_id() == 0
    assert await wallet.audit() == []


async def test_a_purchase_credited_twice_with_one_key_counts_once(database: Database) -> None:
    wallet = Wallet(database)
    first = await wallet.credit(25 * MICRO, LedgerKind.PURCHASE, "order-7", "pay:7", "card")
    again = await wallet.credit(25 * MICRO, LedgerKind.PURCHASE, "order-7", "pay:7", "card")
    assert again == first
    assert (await wallet.balance()).balance == 25 * MICRO
    assert first.balance_after == 25 * MICRO
    assert await wallet.last_credit_id() == first.id
    await wallet.hold("call-1", MICRO)
    await wallet.charge("call-1", MICRO, "call:call-1:final")
    assert await wallet.last_credit_id() == first.id  # a charge does not wake live calls
    assert (await wallet.ledger(limit=1))[0].kind == LedgerKind.CALL_CHARGE
    await wallet.release("call-1")
    with pytest.raises(Conflict, match=r"was used for purchase 25\.000000"):
        await wallet.credit(30 * MICRO, LedgerKind.PURCHASE, "order-7", "pay:7", "card")
    assert await wallet.audit() == []


async def test_credits_must_be_positive_ints_of_a_credit_kind(database: Database) -> None:
    wallet = Wallet(database)
    with pytest.raises(InvalidInput):
        await wallet.credit(0, LedgerKind.PURCHASE, None, "k0")
    with pytest.raises(InvalidInput, match="not a kind of credit"):
        await wallet.credit(5, LedgerKind.CALL_CHARGE, None, "k1")
    with pytest.raises(TypeError):
        await wallet.credit(1.5, LedgerKind.PURCHASE, None, "k2")  # type: ignore[arg-type]


async def test_an_adjustment_may_take_only_available_credits(database: Database) -> None:
    wallet = await funded(database, 10)
    await start_call(database, "c1")
    assert await wallet.hold("c1", 4 * MICRO)
    with pytest.raises(InsufficientCredits, match=r"only 6\.000000 available"):
        await wallet.adjust(-7 * MICRO, "typo in last purchase")
    entry = await wallet.adjust(-6 * MICRO, "typo in last purchase")
    assert (entry.kind, entry.amount, entry.balance_after) == (
        LedgerKind.ADJUSTMENT,
        -6 * MICRO,
        4 * MICRO,
    )
    assert entry.description == "typo in last purchase"
    with pytest.raises(InvalidInput, match="reason"):
        await wallet.adjust(MICRO, "  ")
    state = await wallet.balance()
    assert (state.balance, state.held, state.available) == (4 * MICRO, 4 * MICRO, 0)
    assert await wallet.audit() == []


async def test_a_call_holds_charges_and_releases(database: Database) -> None:
    """10 credits; a call holds 1, is charged 1 each minute, hangs up after 2.5."""
    wallet = await funded(database, 10)
    await start_call(database, "call-a")
    assert await wallet.hold("call-a", 1 * MICRO)
    assert (await wallet.balance()).available == 9 * MICRO
    first = await wallet.charge("call-a", 1 * MICRO, "call-a:1")
    assert (first.duplicate, first.hold_left) == (False, 0)
    assert (first.entry.kind, first.entry.amount, first.entry.reference) == (
        LedgerKind.CALL_CHARGE,
        -1 * MICRO,
        "call-a",
    )
    assert await wallet.hold_up_to("call-a", 1 * MICRO) == 1 * MICRO  # tops its hold up from 0
    await wallet.charge("call-a", 1 * MICRO, "call-a:2")
    assert await wallet.hold_up_to("call-a", 1 * MICRO) == 1 * MICRO
    assert await wallet.funds_of("call-a") == (2 * MICRO, 1 * MICRO)  # charged, held
    final = await wallet.charge("call-a", MICRO // 2, "call-a:final")
    assert final.hold_left == MICRO // 2
    assert await wallet.funds_of("call-a") == (2_500_000, MICRO // 2)
    assert await wallet.release("call-a") == MICRO // 2
    assert await wallet.release("call-a") == 0  # idempotent
    state = await wallet.balance()
    assert (state.balance, state.held) == (7_500_000, 0)
    assert await wallet.charged_for("call-a") == 2_500_000
    assert await wallet.funds_of("call-a") == (2_500_000, 0)
    assert await wallet.funds_of("call-b") == (0, 0)  # no such call
    assert await wallet.open_holds() == []
    assert await wallet.audit() == []


async def test_a_retried_charge_charges_nothing_twice(database: Database) -> None:
    wallet = await funded(database, 10)
    await start_call(database, "c")
    await wallet.hold("c", 3 * MICRO)
    first = await wallet.charge("c", 2 * MICRO, "c:minute-1")
    retry = await wallet.charge("c", 2 * MICRO, "c:minute-1")
    assert retry.duplicate and retry.entry == first.entry
    assert retry.hold_left == 1 * MICRO
    assert (await wallet.balance()).balance == 8 * MICRO
    with pytest.raises(Conflict, match="was used for call_charge"):
        await wallet.charge("c", 3 * MICRO, "c:minute-1")
    await wallet.release("c")
    assert await wallet.audit() == []


async def test_holds_never_exceed_available(database: Database) -> None:
    wallet = await funded(database, 5)
    for call_id in ("a", "b", "c"):
        await start_call(database, call_id)
    assert await wallet.hold("a", 3 * MICRO)
    assert not await wallet.hold("b", 3 * MICRO)
    assert await wallet.hold("b", 2 * MICRO)
    assert await wallet.hold_up_to("c", 1 * MICRO) == 0
    assert [hold.call_id for hold in await wallet.open_holds()] == ["a", "b", "c"]
    await wallet.release("a")
    assert await wallet.hold_up_to("c", 5 * MICRO) == 3 * MICRO
    with pytest.raises(Conflict, match="already has a hold"):
        await wallet.hold("c", 0)
    assert await wallet.release("b") == 2 * MICRO
    state = await wallet.balance()
    assert (state.held, state.available) == (3 * MICRO, 2 * MICRO)
    assert await wallet.audit() == []


async def test_a_charge_beyond_hold_and_available_is_refused(database: Database) -> None:
    wallet = await funded(database, 2)
    await start_call(database, "x")
    await wallet.hold("x", 1 * MICRO)
    # beyond the hold, the rest may come from available: 1 + 0.5
    result = await wallet.charge("x", 1_500_000, "x:1")
    assert result.hold_left == 0
    with pytest.raises(ChargeRefused, match=r"exceeds its hold 0\.000000 \+ available 0\.500000"):
        await wallet.charge("x", 600_000, "x:2")
    assert (await wallet.balance()).balance == 500_000
    assert await wallet.charged_for("x") == 1_500_000
    await wallet.release("x")
    assert await wallet.audit() == []


async def test_the_ledger_lists_newest_first(database: Database) -> None:
    wallet = await funded(database, 3)
    await wallet.adjust(MICRO, "goodwill")
    entries = await wallet.ledger(limit=10)
    assert [e.kind for e in entries] == [LedgerKind.ADJUSTMENT, LedgerKind.PURCHASE]
    assert [e.balance_after for e in entries] == [4 * MICRO, 3 * MICRO]
    with pytest.raises(InvalidInput):
        await wallet.ledger(limit=0)


async def test_the_ledger_is_append_only_in_the_database(database: Database) -> None:
    await funded(database, 3)
    for statement in (
        "UPDATE ledger_entries SET amount_micro = 1",
        "DELETE FROM ledger_entries",
    ):
        with pytest.raises((StoreError, Conflict), match="append-only"):
            async with database.session() as session:
                await session.execute(text(statement))


async def test_the_database_refuses_a_negative_available(database: Database) -> None:
    await funded(database, 1)
    with pytest.raises(Conflict):
        async with database.session() as session:
            await session.execute(text("UPDATE wallets SET held_micro = 2000000"))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        (
            "INSERT INTO ledger_entries (created_at, kind, amount_micro, reference,"
            " idempotency_key, description, balance_after_micro, entry_hash)"
            " VALUES (CURRENT_TIMESTAMP, 'purchase', 5, NULL, 'sneaky', '', 10000005, 'x')",
            "balance 10.000000 != sum of the ledger 10.000005",
        ),
        (
            "INSERT INTO ledger_entries (created_at, kind, amount_micro, reference,"
            " idempotency_key, description, balance_after_micro, entry_hash)"
            " VALUES (CURRENT_TIMESTAMP, 'refund', 5, NULL, 'chain', '', 7, 'x')",
            "balance_after 0.000007 != previous 10.000000 + amount 0.000005",
        ),
        (
            "INSERT INTO holds (call_id, amount_micro, created_at, updated_at)"
            " VALUES ('ghost', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "hold of call ghost: no such call record",
        ),
        (
            "INSERT INTO holds (call_id, amount_micro, created_at, updated_at)"
            " VALUES ('ghost', 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "held 0.000000 != sum of the holds 0.000003",
        ),
        (
            "UPDATE wallets SET balance_micro = 9000000",
            "balance 9.000000 != balance_after 10.000000 of the last entry",
        ),
    ],
)
async def test_the_audit_finds_an_injected_inconsistency(
    database: Database, sql: str, problem: str
) -> None:
    wallet = await funded(database, 10)
    assert await wallet.audit() == []
    async with database.session() as session:
        await session.execute(text(sql))
    problems = await wallet.audit()
    assert any(problem in p for p in problems), problems


async def test_the_audit_finds_an_unreleased_hold_and_a_settled_cost_mismatch(
    database: Database,
) -> None:
    wallet = await funded(database, 10)
    await start_call(database, "done")
    await wallet.hold("done", MICRO)
    await wallet.charge("done", MICRO, "done:1")
    async with database.session() as session:
        calls = CallRecordRepository(session)
        await calls.finish(
            "done",
            ended_at=datetime.now(UTC),
            disposition="answered",
            hangup_cause=16,
            ended_by=None,
        )
        assert await calls.set_charge("done", charge_state="settled", cost_micro=2 * MICRO)
    problems = await wallet.audit()
    assert any("hold of call done: the call ended (settled)" in p for p in problems), problems
    assert any(
        "call done: charged 1.000000 in the ledger, its record says 2.000000" in p for p in problems
    ), problems
    await wallet.release("done")
    async with database.session() as session:
        # a settled record is final: this changes nothing
        assert not await CallRecordRepository(session).set_charge("done", charge_state="charging")
    assert len(await wallet.audit()) == 1


async def test_set_charge_completes_the_call_record(database: Database) -> None:
    await start_call(database, "r")
    async with database.session() as session:
        calls = CallRecordRepository(session)
        assert await calls.set_charge("r", charge_state="authorized", rate_id=7)
        assert await calls.set_charge(
            "r", charge_state="settled", billable_seconds=120, cost_micro=2 * MICRO
        )
        record = await calls.get("r")
    assert record is not None
    assert (record.rate_id, record.billable_seconds, record.cost_micro, record.charge_state) == (
        7,
        120,
        2 * MICRO,
        "settled",
    )


async def test_a_missing_wallet_row_is_a_clear_error(database: Database) -> None:
    async with database.session() as session:
        await session.execute(text("DELETE FROM wallets"))
    wallet = Wallet(database)
    with pytest.raises(StoreError, match="db upgrade"):
        await wallet.balance()
    with pytest.raises(StoreError, match="db upgrade"):
        await wallet.hold("c", 1)
    assert "missing" in (await wallet.audit())[0]
