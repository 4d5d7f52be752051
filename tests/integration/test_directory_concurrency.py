"""Admin commands at the same time: each applies whole, none fails for the other.

"Commands" are separate engines (their own connection pools) on the same database,
as separate `callcontrol` processes would be; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from callcontrol.directory import DirectoryService
from callcontrol.domain.directory import Number
from callcontrol.errors import StoreError
from callcontrol.store.db import Database, sqlite_file

REALM = "callcontrol"
PASSWORD = "correct horse battery"
NUMBER = "+442079460000"
COMMANDS = 20


async def test_twenty_concurrent_route_changes_all_apply(database_url: str) -> None:
    setup = DirectoryService(Database.from_url(database_url), REALM)
    await setup.add_user("alice", "1001", PASSWORD)
    await setup.add_user("bob", "1002", PASSWORD)
    await setup.add_number(NUMBER)
    await setup.db.dispose()

    dbs = [Database.from_url(database_url) for _ in range(COMMANDS)]

    async def command(i: int) -> Number:
        directory = DirectoryService(dbs[i], REALM)
        if i % 3 == 2:
            return await directory.clear_route(NUMBER)
        return await directory.route_to_user(NUMBER, "alice" if i % 3 else "bob")

    try:
        results = await asyncio.gather(
            *(command(i) for i in range(COMMANDS)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        final = await DirectoryService(dbs[0], REALM).get_number(NUMBER)
        assert final.route is None or final.route.user_name in {"alice", "bob"}
    finally:
        for db in dbs:
            await db.dispose()


async def test_a_database_busy_too_long_says_try_again(database_url: str) -> None:
    file = sqlite_file(database_url)
    if file is None:
        pytest.skip("SQLite's write lock: PostgreSQL writers wait on row locks instead")
    db = Database.from_url(database_url, busy_timeout=0.2)
    other = sqlite3.connect(file, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        directory = DirectoryService(db, REALM)
        with pytest.raises(StoreError, match=r"^the database is busy .*: try again"):
            await directory.add_number(NUMBER)
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.dispose()
