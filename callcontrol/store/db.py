"""The database handle: engine, sessions, and translation of library errors.

``Database.from_url`` accepts ``sqlite+aiosqlite:///path`` (plain ``sqlite://``
is upgraded to aiosqlite) and ``postgresql+asyncpg://user:pass@host/db`` (plain
``postgresql://`` is upgraded to asyncpg). On SQLite every connection gets WAL,
``foreign_keys=ON``, a busy timeout and the SQL function ``ledger_hash`` (the
ledger's hash chain, ``callcontrol.domain.money.chain_hash``); transactions are
started by an explicit ``BEGIN`` (deferred, or ``BEGIN IMMEDIATE`` with
``session(immediate=True)`` for read-then-write work), which also makes
SAVEPOINTs work under pysqlite.
``autocommit()`` hands out a connection on which each statement is its own
transaction (the wallet's one-statement writes on PostgreSQL).

Errors leaving ``session()`` and ``autocommit()``:

- a database busy beyond the busy timeout (SQLite's write lock), a deadlock or a
  serialization failure -> ``StoreError("the database is busy ...: try again")``
- connection failures, timeouts -> ``StoreError("database unavailable: ...")``
- a constraint violation no repository caught more precisely -> ``Conflict``
- any other database error -> ``StoreError("database error: ...")``

Messages never contain the database password.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from callcontrol.domain.money import chain_hash
from callcontrol.errors import CallControlError, Conflict, StoreError
from callcontrol.store.unit import SqliteUnits, UnitSession

__all__ = [
    "TRANSLATED_ERRORS",
    "Database",
    "UnitExecutor",
    "make_parent_dir",
    "normalize_url",
    "sqlite_file",
    "translate_error",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a unit of work (``Database.unit``) runs its statements on.
UnitExecutor = AsyncSession | UnitSession

try:  # asyncpg raises its own errors while connecting; SQLAlchemy wraps only later ones.
    import asyncpg

    _CONNECT_ERRORS: tuple[type[BaseException], ...] = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    )
except ImportError:  # pragma: no cover - asyncpg is a dependency
    _CONNECT_ERRORS = ()

#: What ``translate_error`` translates (callers catch these around database work).
TRANSLATED_ERRORS: tuple[type[BaseException], ...] = (
    exc.SQLAlchemyError,
    OSError,
    TimeoutError,
    *_CONNECT_ERRORS,
)

# Reasons that mean "other writers held the database too long", not "it is down".
_BUSY = (
    "database is locked",
    "database table is locked",
    "deadlock detected",
    "could not serialize access",
)

_BEGIN_OPTION = "callcontrol_sqlite_begin"
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
_SUPPORTED = frozenset(_DRIVERS.values())


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and pick the async driver; StoreError if unsupported."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise StoreError(f"not a database URL: {error}") from None
    name = parsed.drivername
    if name in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[name])
    if parsed.drivername not in _SUPPORTED:
        raise StoreError(
            f"unsupported database driver {name!r}: use sqlite+aiosqlite or postgresql+asyncpg"
        )
    return parsed


def _redact(message: str, url: URL) -> str:
    if url.password:
        message = message.replace(str(url.password), "***")
    return message


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    source = orig if isinstance(orig, BaseException) else error
    text_ = str(source).strip() or type(source).__name__
    return text_.splitlines()[0]


def translate_error(error: BaseException, url: URL) -> CallControlError:
    """The project error for a database library error (see the module docstring)."""
    reason = _redact(_reason(error), url)
    where = url.render_as_string(hide_password=True)
    if isinstance(error, exc.IntegrityError):
        return Conflict(f"conflicts with existing data: {reason}")
    if any(busy in reason for busy in _BUSY):
        return StoreError(
            f"the database is busy (other commands were writing to it for too long): "
            f"try again ({reason}; {where})"
        )
    unavailable = isinstance(
        error, (exc.OperationalError, exc.InterfaceError, OSError, TimeoutError, *_CONNECT_ERRORS)
    ) or (isinstance(error, exc.DBAPIError) and error.connection_invalidated)
    if unavailable:
        return StoreError(f"database unavailable: {reason} ({where})")
    return StoreError(f"database error: {reason} ({where})")


class Database:
    """One engine and its sessions. Create once in the composition root, ``dispose`` at exit."""

    def __init__(self, engine: AsyncEngine, units: SqliteUnits | None = None) -> None:
        self._engine = engine
        self._units = units
        #: Units of work and sessions begun (``bench/profile_calls.py`` prints them).
        self.transactions = 0
        self._url = engine.url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._immediate_sessions = async_sessionmaker(
            engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"}),
            expire_on_commit=False,
            autoflush=False,
        )
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        echo: bool = False,
        busy_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        pool_size: int = 5,
    ) -> Database:
        """Build the engine for ``url``; no connection is made until first use."""
        parsed = normalize_url(url)
        if parsed.get_backend_name() == "sqlite":
            make_parent_dir(parsed)
            # No pre-ping: a SQLite connection is a file handle that cannot drop like a
            # server's socket, and the ping cost three thread hops per session.
            engine = create_async_engine(parsed, echo=echo, connect_args={"timeout": busy_timeout})
            busy_ms = int(busy_timeout * 1000)
            _install_sqlite_hooks(engine.sync_engine, busy_timeout_ms=busy_ms)
            units = None
            if sqlite_file(parsed) is not None:
                units = SqliteUnits(
                    parsed,
                    lambda sync: _install_sqlite_hooks(sync, busy_timeout_ms=busy_ms),
                    busy_timeout,
                )
            return cls(engine, units)
        else:
            engine = create_async_engine(
                parsed,
                echo=echo,
                pool_pre_ping=True,
                pool_size=pool_size,
                connect_args={"timeout": connect_timeout},
            )
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def deferred_to_thread(self) -> int:
        """SQLite: units that met another writer inline and ran in the unit thread
        (``store.unit.SqliteUnits``); 0 on PostgreSQL."""
        return 0 if self._units is None else self._units.deferred_to_thread

    @property
    def sync_engines(self) -> list[Engine]:
        """Every engine under this handle (the async engine's, and SQLite's two unit
        engines): for event listeners, e.g. the statement counts of bench/."""
        engines = [self._engine.sync_engine]
        if self._units is not None:
            engines.extend(self._units.engines)
        return engines

    @property
    def url(self) -> str:
        """The URL with the password hidden, for logs and messages."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    @asynccontextmanager
    async def session(self, *, immediate: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error.

        ``immediate=True`` takes SQLite's write lock at BEGIN (for read-then-write
        work that must not fail with a busy snapshot); PostgreSQL ignores it.
        """
        maker = self._immediate_sessions if immediate else self._sessions
        session = maker()
        self.transactions += 1
        try:
            try:
                async with session.begin():
                    if immediate:
                        await session.connection()  # BEGIN (IMMEDIATE) now, not lazily
                    yield session
            except TRANSLATED_ERRORS as error:
                raise translate_error(error, self._url) from error
        finally:
            try:
                await session.close()
            except TRANSLATED_ERRORS:  # the connection is already gone; nothing to release
                log.debug("closing a session on a failed connection", exc_info=True)

    async def unit(
        self, work: Callable[[UnitExecutor], Awaitable[T]], *, immediate: bool = False
    ) -> T:
        """Run ``work(session)`` in one transaction: committed when it returns, rolled
        back when it raises; errors translated as in ``session``.

        On a SQLite file the whole transaction runs in one go on a synchronous
        connection (``store.unit``: inline on the event loop, or in its thread when
        another writer holds the lock): ``work`` must then only await the session's
        statements.
        ``immediate``: as in ``session``. On PostgreSQL it is ``session`` itself.
        """
        self.transactions += 1
        if self._units is None:
            self.transactions -= 1  # session() counts it
            async with self.session(immediate=immediate) as session:
                return await work(session)
        return await self._units.run(work, immediate=immediate, translate=self._translate)

    def _translate(self, error: BaseException) -> BaseException | None:
        if isinstance(error, TRANSLATED_ERRORS):
            return translate_error(error, self._url)
        return None

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in autocommit: each statement commits on its own, with
        no BEGIN/COMMIT round trips. Errors are translated as in ``session``."""
        try:
            async with self._autocommit.connect() as connection:
                yield connection
        except TRANSLATED_ERRORS as error:
            raise translate_error(error, self._url) from error

    async def ping(self) -> None:
        """Round trip to the database; StoreError when it does not answer."""
        async with self.session() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection (and stop the unit thread)."""
        try:
            if self._units is not None:
                self._units.dispose()
            await self._engine.dispose()
        except TRANSLATED_ERRORS as error:
            raise translate_error(error, self._url) from error


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL and in-memory databases."""
    parsed = normalize_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def make_parent_dir(url: str | URL) -> None:
    """Create the directory of a SQLite file (the data dir) if it does not exist yet."""
    file = sqlite_file(url)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"database unavailable: cannot create {file}: {error}") from error


def _install_sqlite_hooks(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN (see _on_begin).
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function("ledger_hash", 4, chain_hash, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # Only a file not yet in WAL mode is switched: setting the mode is a write,
            # and a new connection beside busy writers could then fail at once with
            # "database is locked" (its read upgraded to a write after another commit:
            # SQLite gives no busy wait there), as five processes opening one file did.
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        if isinstance(driver, sqlite3.Connection) and driver.in_transaction:
            return  # a unit's, begun on the driver (store/unit.py): SQLAlchemy only joins it
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))
