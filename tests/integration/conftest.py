"""Fixtures for integration tests: a real, migrated database, SQLite and PostgreSQL.

``database`` runs each test twice: on a fresh SQLite file and on a PostgreSQL
database created for this test session (emptied before each test). PostgreSQL is
reached through ``TEST_CALLCONTROL_PG_URL`` (an admin URL, default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``); when it does not
answer, the PostgreSQL half is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from callcontrol.store.autorecharge import AUTO_RECHARGE_ROW
from callcontrol.store.db import Database
from callcontrol.store.migrate import upgrade
from callcontrol.store.offline_payments import OFFLINE_STATE_ROW

DEFAULT_PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TABLES = (
    "call_records, number_assignments, catalogue_numbers, routes, numbers, users, rates, "
    "rate_sets, ledger_entries, holds, wallets, admin_audit, admin_tokens, admin_sessions, admins, "
    "payment_attempts, payment_methods, payment_customers, payment_webhook_events, "
    "auto_recharge, notifications, offline_payment_state"
)
# Migration 0002 creates the wallet's single row; emptying the tables recreates it.
WALLET_ROW = (
    "INSERT INTO wallets (id, balance_micro, held_micro, updated_at) "
    "VALUES (1, 0, 0, CURRENT_TIMESTAMP)"
)


def pg_admin_url() -> URL:
    return make_url(os.environ.get("TEST_CALLCONTROL_PG_URL", DEFAULT_PG_ADMIN_URL))


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(pg_admin_url()), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    admin = pg_admin_url()
    name = f"callcontrol_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        where = admin.render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL does not answer at {where}: {error}")
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("template") / "callcontrol.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "callcontrol.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    db = Database.from_url(url)
    try:
        async with db.session() as session:
            # Migration 0003's triggers refuse TRUNCATE of the ledger and the wallet;
            # a superuser's replica role skips them, for this transaction only.
            await session.execute(text("SET LOCAL session_replication_role = replica"))
            await session.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
            await session.execute(text(WALLET_ROW))
            await session.execute(text(AUTO_RECHARGE_ROW))
            await session.execute(text(OFFLINE_STATE_ROW))
    finally:
        await db.dispose()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database.from_url(database_url)
    try:
        yield db
    finally:
        await db.dispose()
