"""A unit of work in ONE hand-off to SQLite's thread, instead of one per statement.

Why: through SQLAlchemy's AsyncSession over aiosqlite, every step of a transaction
(BEGIN, each execute, each fetch, COMMIT, the close) is a hop to the driver's thread
and back through the event loop, about 10 hops and 0.7 ms of CPU for a session of
one UPDATE. The call path ran 13 such sessions per call (bench/RESULTS.md). Here the
whole transaction runs in the thread in one go: one hop, a few tens of microseconds.

How: store code stays written once, as ``async def work(session)`` awaiting
``session.execute(...)``: on PostgreSQL it gets an ``AsyncSession`` (asyncpg is
natively asynchronous: nothing to gain); on SQLite ``Database.unit`` runs it in a
dedicated thread on a plain (synchronous) SQLAlchemy connection over pysqlite,
seen through ``UnitSession``, whose awaitables complete at once. The coroutine is
then driven to its end with a single ``send``: it never suspends (``run_to_end``
refuses one that does: a unit must only run statements, never wait on the loop).

One thread, one connection: units of one process run one after another, in the
order they were submitted (SQLite has one writer anyway; a WAL reader never waits).
A unit that needs SQLite's write lock asks for it at BEGIN (``immediate=True``), so
what it reads is current until it commits; other processes' writers are waited for
in SQLite's busy handler, in that thread, never in the event loop. So code holding
a write transaction of its own (``Database.session(immediate=True)``) must not wait
for a unit meanwhile: a write unit queued before it would wait for that transaction
(as any second writer on SQLite would; none does today).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, Result, ScalarResult
from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

__all__ = ["SqliteUnits", "UnitSession", "run_to_end"]

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")


class UnitSession:
    """The part of ``AsyncSession`` store code awaits, inside a unit's thread: each
    awaitable has its answer already.

    Statements run on the unit's Core connection; only those that load ORM entities
    (``select(UserRow)``, ``get``) go through an ORM ``Session`` on the same
    connection and transaction, made at first need: a Session costs about as much
    as the rest of a small transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._orm: Session | None = None

    def _session(self) -> Session:
        if self._orm is None:
            self._orm = Session(bind=self._connection, expire_on_commit=False, autoflush=False)
        return self._orm

    def _runner(self, statement: Executable) -> Connection | Session:
        return self._session() if _loads_entities(statement) else self._connection

    async def execute(
        self, statement: Executable, params: _CoreAnyExecuteParams | None = None
    ) -> Result[Any]:
        return self._runner(statement).execute(statement, params)

    async def scalar(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        return self._runner(statement).scalar(statement, params)

    async def scalars(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> ScalarResult[Any]:
        return self._runner(statement).scalars(statement, params)

    async def get(
        self, entity: type[E], ident: Any, *, populate_existing: bool = False
    ) -> E | None:
        return self._session().get(entity, ident, populate_existing=populate_existing)

    def get_bind(self) -> Connection:
        return self._connection

    def close(self) -> None:
        if self._orm is not None:
            self._orm.close()


def _loads_entities(statement: Executable) -> bool:
    """A SELECT of mapped classes (not of their columns): it needs the ORM."""
    descriptions: list[dict[str, Any]] = getattr(statement, "column_descriptions", None) or []
    return any(isinstance(d.get("type"), type) for d in descriptions)


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (one ``send``)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a unit of work waited on the event loop: it may only run statements")


class SqliteUnits:
    """SQLite's unit runner: one thread, one synchronous engine on the same file."""

    def __init__(self, url: URL, configure: Callable[[Engine], None], busy_timeout: float) -> None:
        self._engine = create_engine(
            url.set(drivername="sqlite"),
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
        )
        configure(self._engine)
        self._thread: ThreadPoolExecutor | None = None  # started at first use

    @property
    def engine(self) -> Engine:
        return self._engine

    async def run(
        self,
        work: Callable[[UnitSession], Awaitable[T]],
        *,
        immediate: bool,
        begin: str,
        translate: Callable[[BaseException], BaseException | None],
    ) -> T:
        """``work`` in one transaction in the thread: committed if it returns, rolled
        back if it raises (its exception, translated, leaves here)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-unit")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, self._run, work, immediate, begin, translate
        )

    def _run(
        self,
        work: Callable[[UnitSession], Awaitable[T]],
        immediate: bool,
        begin: str,
        translate: Callable[[BaseException], BaseException | None],
    ) -> T:
        try:
            connection = self._engine.connect()
            try:
                options = {begin: "BEGIN IMMEDIATE"} if immediate else {}
                with connection.execution_options(**options).begin():
                    session = UnitSession(connection)
                    try:
                        awaitable = work(session)
                        if not isinstance(awaitable, Coroutine):
                            raise TypeError("a unit of work is an async function")
                        result: T = run_to_end(awaitable)
                        return result
                    finally:
                        session.close()
            finally:
                connection.close()
        except BaseException as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from error

    def dispose(self) -> None:
        """Stop the thread (after the units submitted) and close the connection; a
        later unit starts them again."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        self._engine.dispose()
