"""Units of work (``Database.unit``): one transaction, on SQLite in one hand-off to
its thread; the call path's joined transactions (``store.wallet.callpath``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from callcontrol.billing.wallet import Wallet
from callcontrol.calls.records import CallStore
from callcontrol.domain.call_records import CallDirection, CallRecord
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.money import LedgerKind
from callcontrol.errors import Conflict, NotFound, StoreError
from callcontrol.store.db import Database, UnitExecutor, sqlite_file
from callcontrol.store.models import CallRecordRow, UserRow
from callcontrol.store.unit import CHECKPOINT_EVERY
from callcontrol.store.wallet.callpath import Work


def _user_row(name: str, extension: str) -> UserRow:
    return UserRow(
        name=name, extension=extension, digest_md5="0" * 32, digest_sha256="0" * 64, realm="r"
    )


async def _names(session: UnitExecutor) -> list[str]:
    return list(await session.scalars(select(UserRow.name).order_by(UserRow.name)))


async def test_a_unit_commits_when_it_returns(database: Database) -> None:
    async def add(session: UnitExecutor) -> str:
        await session.execute(
            UserRow.__table__.insert().values(  # type: ignore[attr-defined]
                name="alice",
                extension="1001",
                digest_md5="0" * 32,
                digest_sha256="0" * 64,
                realm="r",
            )
        )
        return "added"

    assert await database.unit(add, immediate=True) == "added"
    assert await database.unit(_names) == ["alice"]
    async with database.session() as session:  # and the other connections see it
        assert await session.scalar(select(UserRow.name)) == "alice"


async def test_a_unit_rolls_back_everything_when_it_raises(database: Database) -> None:
    async def add_then_fail(session: UnitExecutor) -> None:
        await session.execute(
            UserRow.__table__.insert().values(  # type: ignore[attr-defined]
                name="bob",
                extension="1002",
                digest_md5="0" * 32,
                digest_sha256="0" * 64,
                realm="r",
            )
        )
        raise NotFound("stop")

    with pytest.raises(NotFound, match="stop"):
        await database.unit(add_then_fail, immediate=True)
    assert await database.unit(_names) == []


_INSERT_USER = text(
    "INSERT INTO users (name, extension, digest_md5, digest_sha256, realm, created_at, "
    "updated_at) VALUES (:name, :extension, :md5, :sha, 'r', CURRENT_TIMESTAMP, "
    "CURRENT_TIMESTAMP)"
)


@pytest.mark.parametrize("how", ["text only", "text then ORM", "ORM then text"])
@pytest.mark.parametrize("fails", [False, True])
async def test_a_unit_ends_as_one_whichever_statements_it_ran(
    database: Database, how: str, fails: bool
) -> None:
    """On SQLite a text statement runs on the driver and an ORM one through SQLAlchemy,
    which joins the unit's transaction: both commit, or both roll back, together."""

    async def add(name: str, extension: str, session: UnitExecutor) -> None:
        values = {"name": name, "extension": extension, "md5": "0" * 32, "sha": "0" * 64}
        await session.execute(_INSERT_USER, values)

    async def orm_read(session: UnitExecutor) -> None:
        await session.scalars(select(UserRow))  # mapped entities: the ORM Session

    async def work(session: UnitExecutor) -> None:
        if how == "ORM then text":
            await orm_read(session)
        await add("alice", "1001", session)
        if how == "text then ORM":
            await orm_read(session)
        await add("bob", "1002", session)
        if fails:
            raise NotFound("stop")

    if fails:
        with pytest.raises(NotFound, match="stop"):
            await database.unit(work, immediate=True)
    else:
        await database.unit(work, immediate=True)
    expected = [] if fails else ["alice", "bob"]
    assert await database.unit(_names) == expected
    async with database.session() as session:  # what another connection sees
        assert list(await session.scalars(select(UserRow.name).order_by(UserRow.name))) == expected
    assert await database.unit(_names) == expected  # and the kept connection is usable


async def test_a_unit_translates_library_errors(database: Database) -> None:
    async with database.session() as session:
        session.add(_user_row("alice", "1001"))

    async def duplicate(session: UnitExecutor) -> None:
        await session.execute(
            UserRow.__table__.insert().values(  # type: ignore[attr-defined]
                name="alice",
                extension="1009",
                digest_md5="0" * 32,
                digest_sha256="0" * 64,
                realm="r",
            )
        )

    with pytest.raises(Conflict, match="conflicts with existing data"):
        await database.unit(duplicate)


async def test_sqlite_runs_a_whole_unit_in_one_go_and_refuses_one_that_waits(
    database: Database,
) -> None:
    """With no other writer, a unit runs inline on the event loop's thread, at once."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL runs units as sessions on the event loop")
    loop_thread = threading.get_ident()
    seen: list[int] = []

    async def where(session: UnitExecutor) -> None:
        seen.append(threading.get_ident())
        await _names(session)
        seen.append(threading.get_ident())

    await database.unit(where, immediate=True)
    await database.unit(where)
    assert seen == [loop_thread] * 4

    async def waits(session: UnitExecutor) -> None:
        await session.execute(
            UserRow.__table__.insert().values(  # type: ignore[attr-defined]
                name="carol",
                extension="1003",
                digest_md5="0" * 32,
                digest_sha256="0" * 64,
                realm="r",
            )
        )
        await asyncio.sleep(0)  # a unit may not wait on the event loop

    with pytest.raises(RuntimeError, match="waited on the event loop"):
        await database.unit(waits)
    assert await database.unit(_names) == []  # and nothing of it was committed


def _add_user(name: str, extension: str, ran: list[int]) -> Callable[[UnitExecutor], Any]:
    async def add(session: UnitExecutor) -> None:
        ran.append(threading.get_ident())
        await session.execute(
            UserRow.__table__.insert().values(  # type: ignore[attr-defined]
                name=name,
                extension=extension,
                digest_md5="0" * 32,
                digest_sha256="0" * 64,
                realm="r",
            )
        )

    return add


@pytest.mark.parametrize("immediate", [True, False], ids=["begin-immediate", "deferred-write"])
async def test_sqlite_a_unit_that_meets_another_writer_waits_in_the_thread(
    database: Database, tmp_path: Path, immediate: bool
) -> None:
    """Another connection holds the write lock: the unit's inline attempt (BEGIN
    IMMEDIATE, or a deferred unit's first write) is rolled back at once and the unit
    runs again from the start in the thread, which waits for the lock while the event
    loop goes on; it commits once, after the other writer."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL runs units as sessions on the event loop")
    assert await database.unit(_names) == []  # the app opened the file (WAL) first
    other = sqlite3.connect(sqlite_file(database.url) or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute(
        "INSERT INTO users (name, extension, digest_md5, digest_sha256, realm, created_at, "
        "updated_at) VALUES ('zed', '1099', '', '', 'r', '2026-01-01', '2026-01-01')"
    )
    ran: list[int] = []
    before = database.deferred_to_thread
    unit = asyncio.create_task(database.unit(_add_user("dana", "1004", ran), immediate=immediate))
    for _ in range(20):  # the loop runs while the unit waits for the lock
        await asyncio.sleep(0.01)
    assert not unit.done()
    assert database.deferred_to_thread == before + 1
    other.execute("COMMIT")
    other.close()
    await unit
    loop_thread = threading.get_ident()
    assert ran[-1] != loop_thread  # the run that committed was the thread's
    assert len(ran) == (1 if immediate else 2)  # a deferred unit had begun inline
    assert await database.unit(_names) == ["dana", "zed"]


async def test_sqlite_inline_commits_are_checkpointed_from_the_thread(database: Database) -> None:
    """The inline connection never checkpoints (no fsync on the event loop); every
    CHECKPOINT_EVERY of its commits the thread copies the WAL back into the database,
    so the WAL is reused instead of growing with every commit."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL runs units as sessions on the event loop")
    wal = Path(f"{sqlite_file(database.url)}-wal")

    async def write(session: UnitExecutor) -> None:
        await session.execute(text("CREATE TABLE IF NOT EXISTS pad (v BLOB)"))
        await session.execute(text("INSERT INTO pad VALUES (randomblob(3000))"))
        await session.execute(text("DELETE FROM pad"))

    await database.unit(write, immediate=True)  # creates the table
    first = wal.stat().st_size
    await database.unit(write, immediate=True)
    commit = wal.stat().st_size - first  # one commit's frames
    assert commit > 0
    commits = 1000
    assert commits > CHECKPOINT_EVERY * 2  # else this test cannot tell
    for _ in range(commits):
        await database.unit(write, immediate=True)
    # The checkpoints queued in the thread all run before dispose() returns; a
    # connection left open keeps the last close from checkpointing (and deleting) it.
    keep = sqlite3.connect(sqlite_file(database.url) or "")
    keep.execute("SELECT count(*) FROM users").fetchone()  # opened (the WAL's too), no transaction
    try:
        await database.dispose()
        assert wal.stat().st_size < commit * CHECKPOINT_EVERY * 2  # not commit * commits
    finally:
        keep.close()


async def test_a_unit_works_again_after_dispose(database: Database) -> None:
    await database.unit(_names)
    await database.dispose()
    assert await database.unit(_names) == []


async def test_sqlite_keeps_one_connection_across_units_and_replaces_a_broken_one(
    database: Database,
) -> None:
    """The unit thread keeps its connection between units (no pool checkout per unit);
    each unit begins as it asks (BEGIN IMMEDIATE or BEGIN), and a unit whose connection
    broke fails alone: the next one runs on a new connection."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL runs units as sessions on the event loop")
    drivers: list[sqlite3.Connection] = []
    writer_could_begin: list[bool] = []
    other = sqlite3.connect(sqlite_file(database.url) or "", timeout=0, isolation_level=None)

    async def driver(session: UnitExecutor) -> None:
        connection = session.get_bind().connection.driver_connection
        assert isinstance(connection, sqlite3.Connection)
        assert connection.in_transaction
        drivers.append(connection)
        try:  # another writer, now: the unit's BEGIN IMMEDIATE holds the write lock
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
            writer_could_begin.append(False)
        else:
            other.execute("ROLLBACK")
            writer_could_begin.append(True)

    try:
        await database.unit(driver, immediate=True)
        await database.unit(driver)
        assert drivers[0] is drivers[1]
        assert writer_could_begin == [False, True]  # each unit begins as it asks

        async def break_it(session: UnitExecutor) -> None:
            await driver(session)
            drivers[-1].close()  # as a driver failure would leave it
            await _names(session)

        with pytest.raises(StoreError):
            await database.unit(break_it)
        await database.unit(driver)
        assert drivers[-1] is not drivers[0]
        assert await database.unit(_names) == []
    finally:
        other.close()


def _start(store: CallStore, call_id: str) -> Work[CallRecord]:
    return store.start_work(
        call_id=call_id,
        direction=CallDirection.INBOUND,
        caller="+15551234567",
        callee="+15557654321",
        channel_id=f"chan-{call_id}",
        started_at=datetime.now(UTC),
        charge_state=ChargeState.AUTHORIZED,
    )


async def _record(database: Database, call_id: str) -> CallRecordRow | None:
    async with database.session() as session:
        return await session.get(CallRecordRow, call_id)


async def test_open_call_writes_the_record_and_the_hold_or_the_refusal(database: Database) -> None:
    wallet, store = Wallet(database), CallStore(database)
    await wallet.credit(100, LedgerKind.PURCHASE, None, "funds", "test")
    refused = store.charge_state_work
    held = await wallet.open_call(
        "a",
        60,
        record=_start(store, "a"),
        refused=refused("a", ChargeState.REFUSED_NO_CREDIT),
    )
    assert held and await wallet.hold_of("a") == 60
    record = await _record(database, "a")
    assert record is not None and record.charge_state == "authorized"
    held = await wallet.open_call(
        "b", 60, record=_start(store, "b"), refused=refused("b", ChargeState.REFUSED_NO_CREDIT)
    )
    assert not held and await wallet.hold_of("b") == 0
    record = await _record(database, "b")
    assert record is not None and record.charge_state == "refused_no_credit"
    assert (await wallet.balance()).held == 60
    assert await wallet.audit() == []


async def test_on_sqlite_a_call_record_and_its_hold_commit_together(database: Database) -> None:
    """The crash rule, more strictly: no record naming a rate without its hold, and no
    hold without its record (SQLite: one transaction; PostgreSQL: record first)."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps its one-statement wallet writes: record, then hold")
    wallet, store = Wallet(database), CallStore(database)
    await wallet.credit(100, LedgerKind.PURCHASE, None, "funds", "test")
    await wallet.hold("c", 10)  # the call already has a hold: open_call's hold fails
    with pytest.raises(Conflict):
        await wallet.open_call(
            "c",
            10,
            record=_start(store, "c"),
            refused=store.charge_state_work("c", ChargeState.REFUSED_NO_CREDIT),
        )
    assert await _record(database, "c") is None
