"""Storage: SQLAlchemy models, repositories, the wallet store and Alembic migrations.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) the shared one.
``Database`` owns the engine and translates library errors into project errors;
repositories (``repositories``, ``rates``) take an ``AsyncSession`` and hand out
frozen values from ``callcontrol.domain``; ``wallet`` is the wallet store, one
implementation per database, picked once by ``wallet_store_for``; ``audit`` checks
the wallet's invariants; ``migrate`` upgrades the schema.
"""

from callcontrol.store.db import Database, normalize_url

__all__ = ["Database", "normalize_url"]
