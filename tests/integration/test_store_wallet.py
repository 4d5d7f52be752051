"""The wallet store is picked once, by the database's dialect."""

from __future__ import annotations

from pathlib import Path

from callcontrol.store.db import Database
from callcontrol.store.wallet import PostgresWalletStore, SqliteWalletStore, wallet_store_for


async def test_each_database_gets_its_own_wallet_store(database: Database) -> None:
    store = wallet_store_for(database)
    expected = {"sqlite": SqliteWalletStore, "postgresql": PostgresWalletStore}
    assert type(store) is expected[database.dialect]
    assert (await store.state()).balance == 0  # and it works on that database


async def test_the_dialect_alone_picks_the_store(tmp_path: Path) -> None:
    """No connection is made to choose: a PostgreSQL URL nobody answers still picks
    the PostgreSQL store."""
    sqlite = Database.from_url(f"sqlite:///{tmp_path / 'w.db'}")
    postgres = Database.from_url("postgresql://nobody@127.0.0.1:9/none")
    try:
        assert isinstance(wallet_store_for(sqlite), SqliteWalletStore)
        assert isinstance(wallet_store_for(postgres), PostgresWalletStore)
    finally:
        await sqlite.dispose()
        await postgres.dispose()
