"""Migrations: the migrated schema is exactly the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from callcontrol.store import migrate
from callcontrol.store.db import Database
from callcontrol.store.models import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _indexes(connection: Connection) -> dict[str, dict[str, Any]]:
    return {ix["name"] or "": dict(ix) for ix in inspect(connection).get_indexes("call_records")}


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []
        indexes = await connection.run_sync(_indexes)
    assert set(indexes) >= {"ix_call_records_open", "ix_call_records_started_at"}
    where = indexes["ix_call_records_open"].get("dialect_options", {})
    assert "ended_at IS NULL" in " ".join(str(v) for v in where.values())


async def test_current_is_head(database_url: str) -> None:
    assert migrate.head() == "0007"
    assert migrate.current(database_url) == "0007"


def test_fresh_database_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()


def test_migrations_ship_inside_the_package() -> None:
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()
    assert (migrate.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (migrate.MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head()
