"""``callcontrol db upgrade|current``: the database schema (Alembic)."""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand
from callcontrol.config import Settings

__all__ = ["register"]


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate

    url = settings.effective_database_url
    migrate.upgrade(url)
    print(f"database at schema {migrate.current(url)}")
    return 0


def cmd_db_current(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate

    have, want = migrate.current(settings.effective_database_url), migrate.head()
    print(f"schema {have or 'none'} (latest {want})")
    return 0 if have == want else 1


def register(sub: Any, add: AddCommand) -> None:
    db = sub.add_parser("db", help="the database schema").add_subparsers(required=True)
    add(db, "upgrade", cmd_db_upgrade, "create or migrate the schema to the latest version")
    add(db, "current", cmd_db_current, "show the schema version")
