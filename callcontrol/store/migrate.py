"""Schema migrations as plain function calls, for the CLI, the app and tests.

    upgrade("sqlite+aiosqlite:///var/callcontrol.db")      # to the newest revision
    current(url)                                            # "0001" or None (empty)
    db = await open_current(url)                            # a Database, schema checked

Every command opens the database through ``open_current`` (in ``open_services``):
one query refuses, with a message saying what to do, a database that does not
exist (a missing SQLite file is not created), was never migrated, is behind
(``callcontrol db upgrade``), or has a schema version this package does not know
(migrated by a newer callcontrol). ``upgrade`` creates the SQLite file's directory
and refuses an unknown version too, instead of Alembic's traceback.

The Alembic configuration is built in code (no alembic.ini at run time). The
functions are synchronous; when called from inside a running event loop they
run the migration in a worker thread (blocking the caller until done), since
Alembic's environment drives its async engine with ``asyncio.run``.
Database failures come out as ``StoreError`` without the password.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command, util
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callcontrol.errors import StoreError
from callcontrol.store.db import (
    TRANSLATED_ERRORS,
    Database,
    make_parent_dir,
    normalize_url,
    sqlite_file,
    translate_error,
)

__all__ = ["MIGRATIONS_DIR", "current", "downgrade", "head", "open_current", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

T = TypeVar("T")


def _config(url: URL | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.attributes["url"] = url.render_as_string(hide_password=False)
    return config


def _outside_loop(function: Callable[[], T]) -> T:
    """Run ``function`` here, or in a worker thread if this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(function())
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=work, name="callcontrol-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _guarded(url: URL, function: Callable[[], T]) -> T:
    try:
        return _outside_loop(function)
    except TRANSLATED_ERRORS as error:
        raise translate_error(error, url) from error


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest).

    Creates a SQLite file's directory; StoreError for a schema version this package
    does not know."""
    parsed = normalize_url(url)
    have = current(parsed)
    if have is not None and have not in _revisions():
        raise StoreError(_unknown(have, parsed.render_as_string(hide_password=True)))
    make_parent_dir(parsed)
    try:
        _guarded(parsed, lambda: command.upgrade(_config(parsed), revision))
    except util.CommandError as error:
        raise StoreError(f"cannot migrate to {revision!r}: {error}") from error


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"``: drop everything). For development."""
    parsed = normalize_url(url)
    _guarded(parsed, lambda: command.downgrade(_config(parsed), revision))


def head() -> str | None:
    """The newest revision the package ships."""
    return ScriptDirectory.from_config(_config()).get_current_head()


@functools.cache
def _revisions() -> frozenset[str]:
    """Every revision the package ships."""
    script = ScriptDirectory.from_config(_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


def _unknown(revision: str, where: str) -> str:
    return (
        f"the database {where} is at schema version {revision!r}, which this callcontrol "
        f"does not know (its newest is {head()}): a newer callcontrol migrated it; run "
        "that version, or restore a backup made for this one"
    )


def _read_revision(sync: Connection) -> str | None:
    revision = MigrationContext.configure(sync).get_current_revision()
    if revision is not None and not isinstance(revision, str):  # pragma: no cover
        raise StoreError(f"unexpected revision {revision!r}")
    return revision


async def open_current(url: str | URL) -> Database:
    """The database at ``url``, once its schema is checked to be the newest this
    package ships; StoreError saying what to do otherwise (nothing is created)."""
    parsed = normalize_url(url)
    where = parsed.render_as_string(hide_password=True)
    file = sqlite_file(parsed)
    if file is not None and not file.exists():
        raise StoreError(f"no database at {file}: run `callcontrol db upgrade` to create it")
    db = Database.from_url(parsed)
    try:
        try:
            async with db.engine.connect() as connection:
                have = await connection.run_sync(_read_revision)
        except TRANSLATED_ERRORS as error:
            raise translate_error(error, parsed) from error
        want = head()
        if have is None:
            raise StoreError(f"the database {where} has no schema: run `callcontrol db upgrade`")
        if have not in _revisions():
            raise StoreError(_unknown(have, where))
        if have != want:
            raise StoreError(
                f"the database {where} is at schema {have}, this callcontrol needs {want}: "
                "run `callcontrol db upgrade`"
            )
    except BaseException:
        await db.dispose()
        raise
    return db


def current(url: str | URL) -> str | None:
    """The database's revision; None for a database that was never migrated (or a
    SQLite file that does not exist: it is not created)."""
    parsed = normalize_url(url)
    file = sqlite_file(parsed)
    if file is not None and not file.exists():
        return None

    async def read() -> str | None:
        engine = create_async_engine(parsed, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_read_revision)
        finally:
            await engine.dispose()

    return _guarded(parsed, lambda: asyncio.run(read()))
