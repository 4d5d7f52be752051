"""A unit of work in ONE go on a synchronous SQLite connection, instead of one hop per
statement: inline on the event loop when no other connection holds the lock it needs,
else in SQLite's unit thread.

Why: through SQLAlchemy's AsyncSession over aiosqlite, every step of a transaction
(BEGIN, each execute, each fetch, COMMIT, the close) is a hop to the driver's thread
and back through the event loop, about 10 hops and 0.7 ms of CPU for a session of
one UPDATE. The call path ran 13 such sessions per call (bench/RESULTS.md). Round 3
ran the whole transaction in a thread in one hop; but that hop alone (submit, wake the
thread, its answer through the loop's self-pipe) cost about 100 us of CPU, while most
units of a call cost 15-300 us. So a unit now runs inline first (``SqliteUnits``).

How: store code stays written once, as ``async def work(session)`` awaiting
``session.execute(...)``: on PostgreSQL it gets an ``AsyncSession`` (asyncpg is
natively asynchronous: nothing to gain); on SQLite ``Database.unit`` runs it on a plain
(synchronous) SQLAlchemy connection over pysqlite, seen through ``UnitSession``, whose
awaitables complete at once. The coroutine is then driven to its end with a single
``send``: it never suspends (``run_to_end`` refuses one that does: a unit must only run
statements, never wait on the loop).

Text statements (``text()``, the ``sql()`` of the wallet and the call path) run
straight on the driver's cursor (``Plan``): SQLAlchemy's execution of a text
statement (cache key, compiled-cache lookup, execution context, result metadata)
cost about ten times what SQLite itself spends on it, and the call path is made of
them. The plan is built once per statement object, from the statement's own bind
and column types (the same conversions as SQLAlchemy's: datetimes, BLOBs); driver
errors leave as SQLAlchemy's (``DBAPIError.instance``), as from a Core statement.

Never waiting on the loop: the inline connection has a busy timeout of 0. A unit that
needs SQLite's write lock asks for it at BEGIN (``immediate=True``), so what it reads
is current until it commits; if another writer (another process, a unit in the
thread, a console session) holds it, the inline attempt fails at once, is rolled back,
and the unit runs again from the start in the thread, whose connection waits in
SQLite's busy handler (units there run one after another, in the order they came). A
deferred unit that writes meets the lock at its first write, and goes the same way.
The inline connection never checkpoints (an fsync on the loop); the thread does, every
``CHECKPOINT_EVERY`` inline commits. Code holding a write transaction of its own
(``Database.session(immediate=True)``) must not wait for a unit meanwhile: a write unit
would wait in the thread for that transaction (as any second writer on SQLite would;
none does today).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, Dialect, Result, ScalarResult
from sqlalchemy.engine.interfaces import _CoreAnyExecuteParams
from sqlalchemy.exc import DBAPIError, InvalidRequestError, MultipleResultsFound, NoResultFound
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, TextClause
from sqlalchemy.sql.selectable import TextualSelect

__all__ = ["Plan", "SqliteUnits", "TextRows", "UnitSession", "prepared", "run_to_end"]

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")


class UnitSession:
    """The part of ``AsyncSession`` store code awaits, inside a unit's thread: each
    awaitable has its answer already.

    The unit's transaction is begun on the driver (``_Lane.run``). A ``Plan`` runs on
    the driver's cursor; any other statement goes through the unit's Core connection,
    which first joins that transaction (``_joined``); only statements that load ORM
    entities (``select(UserRow)``, ``get``) go through an ORM ``Session`` on the same
    connection and transaction, made at first need: a Session costs about as much
    as the rest of a small transaction."""

    def __init__(self, connection: Connection, driver: sqlite3.Connection) -> None:
        self._connection = connection
        self._driver = driver
        self._orm: Session | None = None
        self._cursor: sqlite3.Cursor | None = None

    def _joined(self) -> Connection:
        """The Core connection, in the unit's transaction: SQLAlchemy's begin finds the
        driver already in one and issues nothing (``store.db``'s begin hook)."""
        if not self._connection.in_transaction():
            self._connection.begin()
        return self._connection

    def _session(self) -> Session:
        if self._orm is None:
            self._orm = Session(bind=self._joined(), expire_on_commit=False, autoflush=False)
        return self._orm

    def _runner(self, statement: Executable) -> Connection | Session:
        return self._session() if _loads_entities(statement) else self._joined()

    def _plan(self, statement: Executable, params: object) -> Plan | None:
        if params is not None and not isinstance(params, Mapping):
            return None  # executemany: SQLAlchemy's
        return Plan.of(statement, self._connection.dialect)

    def _run_plan(self, plan: Plan, params: Mapping[str, Any] | None) -> TextRows:
        if self._cursor is None:
            self._cursor = self._driver.cursor()
        return plan.run(self._cursor, params)

    async def execute(
        self, statement: Executable, params: _CoreAnyExecuteParams | None = None
    ) -> Result[Any]:
        plan = self._plan(statement, params)
        if plan is not None:
            return cast(Result[Any], self._run_plan(plan, cast(Mapping[str, Any] | None, params)))
        return self._runner(statement).execute(statement, params)

    async def scalar(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        plan = self._plan(statement, params)
        if plan is not None:
            return self._run_plan(plan, params).scalar()
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
        return self._joined()

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
        if self._orm is not None:
            self._orm.close()


_NO_PLAN = object()
_PLAN = "_callcontrol_sqlite_plan"
_PREPARED = "_callcontrol_prepared"

S = TypeVar("S", bound=Executable)


def prepared(statement: S) -> S:
    """Mark a statement built once (at import, its values as ``bindparam``s): in a
    SQLite unit it is compiled once and then runs straight on the driver's cursor
    (``Plan``); elsewhere it runs as any statement. Only for statements that never
    change: the plan is kept on the statement object."""
    statement.__dict__[_PREPARED] = True
    return statement


class Plan:
    """A statement as the sqlite3 driver takes it, built once and kept on the
    statement object: its SQL, the parameter names in order (None: by name, as
    SQLite reads the ``:name`` of ``text()`` itself), the bound defaults, the bind
    processors of its typed parameters and the result processors of its typed
    columns (by name for text, by position for a compiled statement)."""

    __slots__ = ("_rows", "binds", "by_name", "by_position", "defaults", "names", "sql")

    def __init__(
        self,
        sql: str,
        names: tuple[str, ...] | None,
        defaults: dict[str, Any],
        binds: Mapping[str, Callable[[Any], Any]],
        *,
        by_name: Mapping[str, Callable[[Any], Any]] | None = None,
        by_position: tuple[Callable[[Any], Any] | None, ...] | None = None,
    ) -> None:
        self.sql = sql
        self.names = names
        self.defaults = defaults
        self.binds = dict(binds)
        self.by_name = dict(by_name or {})
        self.by_position = by_position
        self._rows: dict[tuple[str, ...], tuple[Any, tuple[Callable[[Any], Any] | None, ...]]] = {}

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> Plan | None:
        """The statement's plan; None: leave it to SQLAlchemy (a statement built per
        call, escaped colons or casts in a text, expanding parameters)."""
        plan = statement.__dict__.get(_PLAN)
        if plan is None:
            if isinstance(statement, TextClause | TextualSelect):
                plan = cls._text(statement, dialect)
            elif statement.__dict__.get(_PREPARED):
                plan = cls._compiled(statement, dialect)
            plan = plan or _NO_PLAN
            statement.__dict__[_PLAN] = plan
        return plan if isinstance(plan, Plan) else None

    @classmethod
    def _text(cls, statement: TextClause | TextualSelect, dialect: Dialect) -> Plan | None:
        clause = statement.element if isinstance(statement, TextualSelect) else statement
        if not isinstance(clause, TextClause) or "\\:" in clause.text or "::" in clause.text:
            return None
        defaults: dict[str, Any] = {}
        binds: dict[str, Callable[[Any], Any]] = {}
        for name, bind in clause._bindparams.items():
            if bind.expanding:
                return None
            if bind.value is not None and not bind.required:
                defaults[name] = bind.value
            processor = bind.type._cached_bind_processor(dialect)
            if processor is not None:
                binds[name] = processor
        columns: dict[str, Callable[[Any], Any]] = {}
        if isinstance(statement, TextualSelect):
            for column in statement.column_args:
                processor = column.type._cached_result_processor(dialect, None)
                if processor is not None:
                    columns[column.key] = processor
        return cls(clause.text, None, defaults, binds, by_name=columns)

    @classmethod
    def _compiled(cls, statement: Executable, dialect: Dialect) -> Plan | None:
        if _loads_entities(statement):
            return None  # mapped objects are the ORM's to build
        compiled = cast(ClauseElement, statement).compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
            return None
        if any(bind.expanding for bind in compiled.binds.values()):
            return None
        if compiled.insert_prefetch or compiled.update_prefetch:
            return None  # Python-side column defaults: SQLAlchemy computes them per execution
        defaults = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.value is not None
        }
        columns = tuple(
            entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns
        )
        return cls(
            compiled.string,
            tuple(compiled.positiontup),
            defaults,
            cast(Mapping[str, Callable[[Any], Any]], compiled._bind_processors),
            by_position=columns,
        )

    def run(self, cursor: sqlite3.Cursor, params: Mapping[str, Any] | None) -> TextRows:
        values = dict(self.defaults)
        if params:
            values.update(params)
        for name, process in self.binds.items():
            if name in values:
                values[name] = process(values[name])
        bound: Mapping[str, Any] | tuple[Any, ...] = values
        if self.names is not None:
            missing = [name for name in self.names if name not in values]
            if missing:
                raise InvalidRequestError(f"a value is required for bind parameter {missing[0]!r}")
            bound = tuple(values[name] for name in self.names)
        try:
            cursor.execute(self.sql, bound)
            rows = cursor.fetchall()
        except sqlite3.Error as error:
            raise DBAPIError.instance(self.sql, bound, error, sqlite3.Error) from error
        description = cursor.description
        if description is None:
            return TextRows((), [], cursor.rowcount)
        names = tuple(d[0] for d in description)
        shape = self._rows.get(names)
        if shape is None:
            processors = self.by_position or tuple(self.by_name.get(name) for name in names)
            shape = (namedtuple("Row", names, rename=True), processors)
            self._rows[names] = shape
        make: Callable[[Any], Any] = cast(Any, shape[0])._make
        processors = shape[1]
        if any(processors):
            rows = [
                tuple(v if p is None else p(v) for v, p in zip(row, processors, strict=True))
                for row in rows
            ]
        return TextRows(names, [make(row) for row in rows], cursor.rowcount)


class TextRows:
    """The rows of a text statement, read at once: the part of SQLAlchemy's
    ``Result`` that store code uses (rows by attribute and by index)."""

    __slots__ = ("_keys", "_rows", "rowcount")

    def __init__(self, keys: tuple[str, ...], rows: list[Any], rowcount: int) -> None:
        self._keys = keys
        self._rows = rows
        self.rowcount = rowcount

    def keys(self) -> tuple[str, ...]:
        return self._keys

    def __iter__(self) -> Any:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        return self.one_or_none()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> TextRows:
        return TextRows(self._keys[:1], [row[0] for row in self._rows], self.rowcount)


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


def _driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _on_driver(driver: sqlite3.Connection, statement: str) -> None:
    """A BEGIN, COMMIT or ROLLBACK on the driver; its error leaves as SQLAlchemy's."""
    try:
        driver.execute(statement)
    except sqlite3.Error as error:
        raise DBAPIError.instance(statement, (), error, sqlite3.Error) from error


def _end(connection: Connection, driver: sqlite3.Connection, *, commit: bool) -> None:
    """Commit or roll back the unit's transaction: through SQLAlchemy if it joined it
    (it then knows its transaction ended), else on the driver."""
    if connection.in_transaction():
        if commit:
            connection.commit()
        else:
            connection.rollback()
    elif driver.in_transaction:
        _on_driver(driver, "COMMIT" if commit else "ROLLBACK")


class _Lane:
    """One synchronous engine (a pool of one) and the connection kept from it between
    units: checking one out of the pool and back (with its reset) cost about 35 us a
    unit. Used by one thread at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def run(self, work: Callable[[UnitSession], Awaitable[T]], immediate: bool) -> T:
        """``work`` in one transaction on the kept connection. BEGIN and COMMIT go
        straight to the driver: SQLAlchemy's transaction (its begin and commit events,
        the RootTransaction) cost about as much as SQLite's own work in a small unit.
        SQLAlchemy joins it only for a statement that is not a ``Plan`` (``UnitSession.
        _joined``), and then commits or rolls back what it joined."""
        connection = self._connected()
        driver = _driver(connection)
        try:
            _on_driver(driver, "BEGIN IMMEDIATE" if immediate else "BEGIN")
            session = UnitSession(connection, driver)
            try:
                awaitable = work(session)
                if not isinstance(awaitable, Coroutine):
                    raise TypeError("a unit of work is an async function")
                result: T = run_to_end(awaitable)
                session.close()
                _end(connection, driver, commit=True)
            except BaseException:
                session.close()
                try:  # (a COMMIT that failed, "busy" included, leaves the transaction open)
                    _end(connection, driver, commit=False)
                except Exception:  # the unit's own error is the one to report
                    log.debug("rolling back a failed unit", exc_info=True)
                    self.close()  # whatever state it is in, it is not used again
                raise
            return result
        except BaseException as error:
            # A unit that failed may leave its connection unusable (a driver error, a
            # failed rollback): the next unit opens a new one. Not after "busy": its
            # rollback was clean, and the inline lane meets it often under load.
            if not is_busy(error):
                self.close()
            raise

    def _connected(self) -> Connection:
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            self.close()
            connection = self._connection = self.engine.connect()
        return connection

    def checkpoint(self) -> None:
        """A TRUNCATE checkpoint on this lane's connection, between its units: it waits
        for the writer of the moment, then holds writers off (the inline lane's go to
        the thread meanwhile) until the WAL is copied back and emptied; a PASSIVE one
        would never catch up with writers that never pause."""
        try:
            driver = _driver(self._connected())
            busy_ms = driver.execute("PRAGMA busy_timeout").fetchone()[0]
            # Writers wait while it waits for readers: a long read (a console page)
            # holds calls' units back at most this long, then the next one tries again.
            driver.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            try:
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
            finally:
                driver.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        except Exception as error:  # the next one tries again
            log.warning("SQLite WAL checkpoint failed: %s", error)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: the pool discards it
                log.debug("closing a failed unit connection", exc_info=True)

    def dispose(self) -> None:
        self.close()
        self.engine.dispose()


def is_busy(error: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the
    lock the statement needs; nothing of the statement was applied."""
    orig = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.OperationalError) and code is not None and code & 0xFF in (5, 6)


# The inline lane never checkpoints on its own commits (that would fsync on the event
# loop); every CHECKPOINT_EVERY inline commits the thread checkpoints (_Lane.checkpoint).
CHECKPOINT_EVERY = 200
CHECKPOINT_WAIT_MS = 100


class SqliteUnits:
    """SQLite's unit runner: two synchronous engines on the same file, one connection
    each: the inline lane (busy timeout 0, no checkpoints) on the event loop, the
    threaded lane in one thread for units that met another writer (module docstring)."""

    def __init__(self, url: URL, configure: Callable[[Engine], None], busy_timeout: float) -> None:
        threaded = create_engine(
            url.set(drivername="sqlite"),
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
        )
        configure(threaded)
        inline = create_engine(
            url.set(drivername="sqlite"),
            connect_args={"timeout": 0, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
        )
        configure(inline)
        event.listen(inline, "connect", _never_wait_or_checkpoint)  # after configure's hook
        self._threaded = _Lane(threaded)
        self._inline = _Lane(inline)
        self._thread: ThreadPoolExecutor | None = None  # _executor()
        self._inline_lock = threading.Lock()
        self._inline_commits = 0
        #: Units that met another writer inline and ran in the thread (bench/, tests).
        self.deferred_to_thread = 0

    @property
    def engines(self) -> list[Engine]:
        return [self._inline.engine, self._threaded.engine]

    async def run(
        self,
        work: Callable[[UnitSession], Awaitable[T]],
        *,
        immediate: bool,
        translate: Callable[[BaseException], BaseException | None],
    ) -> T:
        """``work`` in one transaction, inline or in the thread: committed if it returns,
        rolled back if it raises (its exception, translated, leaves here)."""
        try:
            # Another thread's event loop may be in the inline lane (a second loop in
            # the process): then this unit goes to the thread too.
            if self._inline_lock.acquire(blocking=False):
                try:
                    return self._run_inline(work, immediate)
                except BaseException as error:
                    if not is_busy(error):
                        raise
                finally:
                    self._inline_lock.release()
            self.deferred_to_thread += 1
            return await self._in_thread(self._threaded.run, work, immediate)
        except BaseException as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from error

    def _run_inline(self, work: Callable[[UnitSession], Awaitable[T]], immediate: bool) -> T:
        result = self._inline.run(work, immediate)
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0:
            self._executor().submit(self._threaded.checkpoint)  # the WAL stops growing
        return result

    def _executor(self) -> ThreadPoolExecutor:
        """The unit thread, started at first use (and again after ``dispose``)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-unit")
        return self._thread

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    def dispose(self) -> None:
        """Stop the thread (after the units submitted) and close the connections; a
        later unit starts them again."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        self._inline.dispose()
        self._threaded.dispose()


def _never_wait_or_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")
