"""Schema migrations as plain function calls, for the CLI, the app and tests.

    upgrade("sqlite+aiosqlite:///var/callcontrol.db")      # to the newest revision
    current(url)                                            # "0001" or None (empty)

The Alembic configuration is built in code (no alembic.ini at run time). The
functions are synchronous; when called from inside a running event loop they
run the migration in a worker thread (blocking the caller until done), since
Alembic's environment drives its async engine with ``asyncio.run``.
Database failures come out as ``StoreError`` without the password.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from callcontrol.errors import StoreError
from callcontrol.store.db import TRANSLATED_ERRORS, normalize_url, translate_error

__all__ = ["MIGRATIONS_DIR", "current", "downgrade", "head", "upgrade"]

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
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""
    parsed = normalize_url(url)
    _guarded(parsed, lambda: command.upgrade(_config(parsed), revision))


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"``: drop everything). For development."""
    parsed = normalize_url(url)
    _guarded(parsed, lambda: command.downgrade(_config(parsed), revision))


def head() -> str | None:
    """The newest revision the package ships."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(url: str | URL) -> str | None:
    """The database's revision; None for a database that was never migrated."""
    parsed = normalize_url(url)

    async def read() -> str | None:
        engine = create_async_engine(parsed, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()

    revision = _guarded(parsed, lambda: asyncio.run(read()))
    if revision is not None and not isinstance(revision, str):  # pragma: no cover
        raise StoreError(f"unexpected revision {revision!r}")
    return revision
