"""Statements run straight on SQLite's driver (``store.unit.Plan``): the same rows,
types, counts and errors as through SQLAlchemy, and the call path's statements all
take that way (none falls back to SQLAlchemy's per-execution work unnoticed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from callcontrol.calls import records
from callcontrol.errors import Conflict, StoreError
from callcontrol.store import ownership, rates, repositories
from callcontrol.store.db import Database, UnitExecutor
from callcontrol.store.models import CallRecordRow, UserRow
from callcontrol.store.unit import Plan, prepared
from callcontrol.store.wallet import common, sqlite

_INSERT_USER = prepared(
    insert(UserRow)
    .values(
        name=bindparam("v_name"),
        extension=bindparam("v_extension"),
        digest_md5="0" * 32,
        digest_sha256="0" * 64,
        realm="r",
        created_at=bindparam("v_at"),
        updated_at=bindparam("v_at"),
    )
    .returning(UserRow.id, UserRow.name, UserRow.created_at)
)
_RENAME = prepared(
    update(UserRow).where(UserRow.name == bindparam("old")).values(name=bindparam("v_new"))
)
_BY_NAME = prepared(
    select(UserRow.extension, UserRow.created_at).where(UserRow.name == bindparam("name"))
)
_AT = datetime(2026, 11, 27, 23, 59, 58, 123456, tzinfo=UTC)
_COUNT = text("SELECT COUNT(*) AS n FROM users WHERE extension > :low")


async def _exercise(session: UnitExecutor) -> dict[str, Any]:
    added = (
        await session.execute(_INSERT_USER, {"v_name": "alice", "v_extension": "1001", "v_at": _AT})
    ).one()
    await session.execute(_INSERT_USER, {"v_name": "bob", "v_extension": "1002", "v_at": _AT})
    renamed = await session.execute(_RENAME, {"old": "bob", "v_new": "robert"})
    none = await session.execute(_RENAME, {"old": "nobody", "v_new": "x"})
    row = (await session.execute(_BY_NAME, {"name": "robert"})).one()
    return {
        "added": (added.name, type(added.id), added.created_at),
        "renamed": (renamed.rowcount, none.rowcount),  # type: ignore[attr-defined]
        "row": (row.extension, row[0], type(row.created_at)),
        "count": await session.scalar(_COUNT, {"low": "1000"}),
        "missing": (await session.execute(_BY_NAME, {"name": "nobody"})).first(),
    }


async def test_a_plan_gives_what_sqlalchemy_gives(database: Database) -> None:
    """The same unit through SQLite's plans and through an AsyncSession (the path of
    PostgreSQL and of any session): the same values and types."""
    in_unit = await database.unit(_exercise, immediate=True)
    async with database.session() as session:
        await session.execute(text("DELETE FROM users"))
        in_session = await _exercise(session)
    assert in_unit == in_session
    assert in_unit["added"] == ("alice", int, _AT)  # to the microsecond, aware (UTC)
    assert in_unit["renamed"] == (1, 0)
    assert in_unit["row"] == ("1002", "1002", datetime)
    assert in_unit["count"] == 2
    assert in_unit["missing"] is None


async def test_a_plan_raises_sqlalchemy_errors_and_rolls_back(database: Database) -> None:
    async def twice(session: UnitExecutor) -> None:
        await session.execute(_INSERT_USER, {"v_name": "alice", "v_extension": "1001", "v_at": _AT})
        await session.execute(_INSERT_USER, {"v_name": "alice", "v_extension": "1002", "v_at": _AT})

    with pytest.raises((Conflict, StoreError)) as raised:
        await database.unit(twice, immediate=True)
    assert isinstance(raised.value.__cause__, IntegrityError)  # as from SQLAlchemy
    assert await database.unit(lambda s: s.scalar(_COUNT, {"low": "0"})) == 0

    async def without_a_value(session: UnitExecutor) -> None:
        await session.execute(_INSERT_USER, {"v_name": "carol", "v_at": _AT})

    with pytest.raises((InvalidRequestError, StoreError), match="v_extension"):
        await database.unit(without_a_value, immediate=True)


def test_every_call_path_statement_runs_on_the_driver() -> None:
    """Each statement of a call's transactions has a plan on SQLite: an ``IN (...)``
    (expanding), a cast or a statement built per call would leave it to SQLAlchemy,
    at ten times the CPU, without failing anything else."""
    dialect = create_engine("sqlite://").dialect
    statements = [
        repositories._NUMBER_ROUTE,
        repositories._USER_BY_NAME,
        repositories._USER_BY_EXTENSION,
        repositories._RECORD_BY_ID,
        ownership._PRESENTED,
        repositories._START_SQLITE,
        repositories._ANSWERED,
        repositories._FINISH,
        repositories._SET_CHARGE,
        records._CONNECTED,
        rates._CURRENT_SET_ID,
        common._STATE,
        common._CHARGED_FOR,
        common._HOLD_OF,
        sqlite._POST,
        sqlite._CHARGE,
        sqlite._HOLD,
        sqlite._ADD_TO_HOLD,
        sqlite._HOLD_UP_TO,
        sqlite._ADD_TO_HELD,
        sqlite._INSERT_HOLD,
        sqlite._RELEASE,
        sqlite._UNHOLD,
        sqlite._APPEND,
    ]
    assert [Plan.of(statement, dialect) is not None for statement in statements] == [True] * len(
        statements
    )
    expanding = prepared(select(CallRecordRow.call_id).where(CallRecordRow.call_id.in_(["a"])))
    assert Plan.of(expanding, dialect) is None  # left to SQLAlchemy, still correct
    defaults = prepared(insert(UserRow).values(name=bindparam("v_name")))  # created_at's default
    assert Plan.of(defaults, dialect) is None
    entities = prepared(select(UserRow).where(UserRow.name == bindparam("name")))
    assert Plan.of(entities, dialect) is None  # rows of mapped objects: the ORM's


async def test_a_charged_call_runs_no_statement_through_sqlalchemy(database: Database) -> None:
    """SQLAlchemy's cursor events see nothing of a call's units on SQLite: their BEGINs
    and statements all go straight to the driver."""
    units = [e for e in database.sync_engines if e.dialect.driver == "pysqlite"]
    if not units:
        pytest.skip("units run on SQLAlchemy sessions on PostgreSQL")
    seen: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    for engine in units:  # the inline lane's and the thread's
        event.listen(engine, "before_cursor_execute", count)
    store = records.CallStore(database)
    now = datetime.now(UTC)
    await store.inbound_route("+442079460000")
    from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy

    await store.start(
        call_id="c1",
        direction=CallDirection.INBOUND,
        caller="+491701234567",
        callee="+442079460000",
        channel_id="1.1",
        started_at=now,
    )
    await store.set_connected_user("c1", None, now + timedelta(seconds=1))
    await store.finish("c1", now + timedelta(seconds=5), Disposition.ANSWERED, 16, EndedBy.CALLER)
    record = await store.get("c1")  # as the AGI server's settle reads it
    assert seen == []
    assert record is not None
    assert (record.answered_at, record.ended_at, record.started_at) == (
        now + timedelta(seconds=1),
        now + timedelta(seconds=5),
        now,
    )
    assert (record.direction, record.disposition, record.hangup_cause, record.ended_by) == (
        CallDirection.INBOUND,
        Disposition.ANSWERED,
        16,
        EndedBy.CALLER,
    )
    assert (record.caller, record.callee, record.channel_id) == (
        "+491701234567",
        "+442079460000",
        "1.1",
    )

    async def orm_read(session: Any) -> object:  # the listener sees what SQLAlchemy runs
        return await session.get(UserRow, 1)

    await database.unit(orm_read)
    for engine in units:
        event.remove(engine, "before_cursor_execute", count)
    assert seen == ["SELECT"]


async def test_the_call_path_reads_a_user_by_name_or_extension_in_a_unit_and_a_session(
    database: Database,
) -> None:
    """A flow rings a user by name, an outgoing call finds its user by extension: both
    read columns (no ORM object), in a unit (on the driver, SQLite) and in a session."""
    async with database.session() as session:
        session.add(
            UserRow(
                name="alice",
                extension="1001",
                digest_md5="a" * 32,
                digest_sha256="b" * 64,
                realm="callcontrol",
            )
        )
    found = await database.unit(lambda session: repositories.user_by_name(session, "alice"))
    assert found is not None
    assert (found.name, found.extension, found.digest_md5, found.digest_sha256, found.realm) == (
        "alice",
        "1001",
        "a" * 32,
        "b" * 64,
        "callcontrol",
    )
    assert isinstance(found.id, int)
    by_extension = await database.unit(
        lambda session: repositories.user_by_extension(session, "1001")
    )
    assert by_extension == found
    assert await database.unit(lambda session: repositories.user_by_name(session, "bob")) is None
    async with database.session() as session:
        assert await repositories.user_by_name(session, "alice") == found
        assert await repositories.user_by_extension(session, "1999") is None
