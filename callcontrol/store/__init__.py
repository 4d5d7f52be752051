"""Storage: SQLAlchemy models, repositories and Alembic migrations.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) the shared one.
``Database`` owns the engine; repositories take an ``AsyncSession`` and hand out
frozen values from ``callcontrol.domain``; ``migrate`` upgrades the schema.
"""

from callcontrol.store.db import Database, normalize_url

__all__ = ["Database", "normalize_url"]
