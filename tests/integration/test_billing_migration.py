"""Migration 0002 (charging) up and down, on SQLite and PostgreSQL, keeping call records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import inspect, text

from callcontrol.billing.wallet import Wallet
from callcontrol.domain.call_records import CallDirection
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.store import migrate
from callcontrol.store.db import Database
from callcontrol.store.repositories import CallRecordRepository

BILLING_TABLES = {"rate_sets", "rates", "wallets", "ledger_entries", "holds"}
CHARGE_COLUMNS = {"rate_id", "billable_seconds", "cost_micro", "charge_state"}


async def _schema(url: str) -> tuple[set[str], set[str], set[str]]:
    db = Database.from_url(url)
    try:
        async with db.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: (
                    set(inspect(sync).get_table_names()),
                    {c["name"] for c in inspect(sync).get_columns("call_records")},
                    {ix["name"] or "" for ix in inspect(sync).get_indexes("call_records")},
                )
            )
    finally:
        await db.dispose()


async def _seed(url: str) -> None:
    db = Database.from_url(url)
    try:
        async with db.session() as session:
            await CallRecordRepository(session).start(
                call_id="kept",
                direction=CallDirection.INBOUND,
                caller="+15551234567",
                callee="+442079460000",
                channel_id="chan",
                started_at=datetime.now(UTC),
            )
        await Wallet(db).credit(MICRO, LedgerKind.PURCHASE, None, "before-downgrade")
    finally:
        await db.dispose()


async def _after_upgrade(url: str) -> None:
    db = Database.from_url(url)
    try:
        wallet = Wallet(db)
        state = await wallet.balance()  # the wallet row is back, empty
        assert (state.balance, state.held) == (0, 0)
        await wallet.credit(2 * MICRO, LedgerKind.PURCHASE, None, "after-upgrade")
        assert await wallet.audit() == []
        async with db.session() as session:
            record = await CallRecordRepository(session).get("kept")
            assert record is not None and record.charge_state is None
            count = await session.scalar(text("SELECT COUNT(*) FROM wallets"))
        assert count == 1
    finally:
        await db.dispose()


def test_0002_down_and_up_keeps_call_records(database_url: str) -> None:
    asyncio.run(_seed(database_url))
    migrate.downgrade(database_url, "0001")
    assert migrate.current(database_url) == "0001"
    tables, columns, indexes = asyncio.run(_schema(database_url))
    assert not tables & BILLING_TABLES
    assert not columns & CHARGE_COLUMNS
    assert "ix_call_records_open" in indexes
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head()
    tables, columns, indexes = asyncio.run(_schema(database_url))
    assert tables >= BILLING_TABLES
    assert columns >= CHARGE_COLUMNS
    assert "ix_call_records_open" in indexes
    asyncio.run(_after_upgrade(database_url))
