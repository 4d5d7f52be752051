"""The database handle: transactions, UTC datetimes, SQLite settings, error translation."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import make_url, select, text

from callcontrol.directory import DirectoryService
from callcontrol.errors import Conflict, NotFound, StoreError
from callcontrol.store import migrate
from callcontrol.store.db import Database, normalize_url
from callcontrol.store.models import CallRecordRow, UserRow

SECRET = "s3cr3t-Pw-XYZ"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _user_row(name: str, extension: str) -> UserRow:
    return UserRow(
        name=name, extension=extension, digest_md5="0" * 32, digest_sha256="0" * 64, realm="r"
    )


async def test_session_commits_on_success(database: Database) -> None:
    async with database.session() as session:
        session.add(_user_row("alice", "1001"))
    async with database.session() as session:
        assert await session.scalar(select(UserRow.name)) == "alice"


async def test_session_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(NotFound):
        async with database.session() as session:
            session.add(_user_row("alice", "1001"))
            await session.flush()
            raise NotFound("stop")
    async with database.session() as session:
        assert await session.scalar(select(UserRow.name)) is None


async def test_uncaught_integrity_error_becomes_conflict(database: Database) -> None:
    async with database.session() as session:
        session.add(_user_row("alice", "1001"))
    with pytest.raises(Conflict, match="conflicts with existing data"):
        async with database.session() as session:
            session.add(_user_row("alice", "1002"))


async def test_datetimes_come_back_aware_utc(database: Database) -> None:
    paris = timezone(timedelta(hours=1))
    started = datetime(2025, 3, 1, 13, 0, 0, 123456, tzinfo=paris)
    async with database.session() as session:
        session.add(
            CallRecordRow(
                call_id="c1",
                direction="inbound",
                caller="+33123456789",
                callee="+442079460000",
                channel_id="ch",
                started_at=started,
            )
        )
    async with database.session() as session:
        stored = await session.scalar(select(CallRecordRow.started_at))
    assert stored == started
    assert stored is not None and stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored == datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        async with database.session() as session:
            session.add(
                CallRecordRow(
                    call_id="c1",
                    direction="inbound",
                    caller="a",
                    callee="b",
                    channel_id="ch",
                    started_at=datetime(2025, 1, 1),
                )
            )


async def test_ping_and_dialect(database: Database) -> None:
    await database.ping()
    assert database.dialect in {"sqlite", "postgresql"}


async def test_sqlite_connection_settings(tmp_path: object) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path}/sub/dir/x.db")  # parent dirs are created
    try:
        assert db.engine.url.drivername == "sqlite+aiosqlite"
        async with db.session() as session:
            assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await session.scalar(text("PRAGMA foreign_keys")) == 1
            assert await session.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        await db.dispose()


async def test_immediate_session_takes_the_write_lock_at_begin(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    migrate.upgrade(url)  # from inside a running loop: runs in a worker thread
    db = Database.from_url(url, busy_timeout=0.2)
    try:
        async with db.session(immediate=True):
            # A second writer cannot even begin while the first holds the lock.
            with pytest.raises(StoreError, match=r"the database is busy .*: try again"):
                async with db.session(immediate=True):
                    pass
            # A deferred reader is not blocked (WAL).
            async with db.session() as reader:
                assert await reader.scalar(select(UserRow.name)) is None
        async with db.session(immediate=True) as session:
            session.add(_user_row("alice", "1001"))
        async with db.session() as session:
            assert await session.scalar(select(UserRow.name)) == "alice"
    finally:
        await db.dispose()


async def test_savepoints_work(database: Database) -> None:
    async with database.session() as session:
        session.add(_user_row("alice", "1001"))
        await session.flush()
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            async with session.begin_nested():
                session.add(_user_row("alice", "1002"))
                await session.flush()
        session.add(_user_row("bob", "1002"))
    async with database.session() as session:
        names = list(await session.scalars(select(UserRow.name).order_by(UserRow.name)))
    assert names == ["alice", "bob"]


async def test_dead_postgres_is_a_store_error_without_password() -> None:
    url = f"postgresql+asyncpg://admin:{SECRET}@127.0.0.1:{_closed_port()}/callcontrol"
    db = Database.from_url(url, connect_timeout=3)
    try:
        with pytest.raises(StoreError) as caught:
            await db.ping()
        message = str(caught.value)
        assert message.startswith("database unavailable: ")
        assert SECRET not in message
        assert "***" in message  # the URL is shown with the password hidden
        with pytest.raises(StoreError) as caught:
            await DirectoryService(db, "callcontrol").list_users()
        assert SECRET not in str(caught.value)
    finally:
        await db.dispose()
    assert SECRET not in db.url


@pytest.mark.postgres
async def test_missing_postgres_database_is_a_store_error(pg_url: str) -> None:
    url = make_url(pg_url).set(database="callcontrol_no_such_database")
    db = Database.from_url(url)
    try:
        with pytest.raises(StoreError, match=r"database unavailable: .*does not exist"):
            await db.ping()
    finally:
        await db.dispose()


def test_dead_postgres_migration_is_a_store_error() -> None:
    url = f"postgresql+asyncpg://admin:{SECRET}@127.0.0.1:{_closed_port()}/callcontrol"
    with pytest.raises(StoreError, match="database unavailable") as caught:
        migrate.upgrade(url)
    assert SECRET not in str(caught.value)


async def test_unreadable_sqlite_is_a_store_error(tmp_path: object) -> None:
    directory = f"{tmp_path}/a-directory.db"
    await asyncio.to_thread(__import__("os").mkdir, directory)
    db = Database.from_url(f"sqlite+aiosqlite:///{directory}")
    try:
        with pytest.raises(StoreError, match="database unavailable"):
            await db.ping()
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/d", "postgresql+asyncpg"),
        ("postgres://u@h/d", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg"),
    ],
)
def test_normalize_url_picks_async_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("given", ["mysql://u@h/d", "postgresql+psycopg2://u@h/d", "nonsense"])
def test_unsupported_urls_are_refused(given: str) -> None:
    with pytest.raises(StoreError):
        normalize_url(given)
