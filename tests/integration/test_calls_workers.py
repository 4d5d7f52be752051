"""Several workers on one PBX (setting workers) on one database: each worker sees its
own open calls; worker 1 also takes those of the PBX's nodes that no longer run (after
a change of workers) and claims them, never a running worker's; `calls close-lost`
accepts a worker's node (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_calls_scaleout import _answered_call, _run

from callcontrol.billing.service import ChargingService
from callcontrol.calls.records import CallStore
from callcontrol.config import Settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.errors import ConfigError, InvalidInput
from callcontrol.services import Services
from callcontrol.store.db import Database

RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,6,0,1/1,0.1 a second
"""
NODES = {  # call id -> node
    "one-app": "pbx_a",  # while workers was 1 ('_' would be a LIKE wildcard)
    "w1": "pbx_a/1",
    "w2": "pbx_a/2",
    "w3": "pbx_a/3",  # workers was 3, now 2
    "other-pbx": "pbxXa/1",  # another PBX whose name matches 'pbx_a' as a LIKE pattern
}


async def _setup(url: str, tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    db = Database.from_url(url)
    try:
        service = ChargingService(db)
        await service.import_rates(rates)
        await service.wallet.credit(10 * MICRO, LedgerKind.PURCHASE, "t", "t:funds", "test")
        for call_id, node in NODES.items():
            await _answered_call(db, node, call_id)
    finally:
        await db.dispose()


async def _open_ids(url: str, worker: int) -> list[str]:
    settings = Settings(database_url=url, pbx_node="pbx_a", workers=2)
    db = Database.from_url(url)
    try:
        services = Services(settings, db, ConfigError("no ARI"), ConfigError("no pay"), worker)
        return sorted(r.call_id for r in await services.store.open_records())
    finally:
        await db.dispose()


def test_worker_1_takes_the_calls_of_nodes_that_no_longer_run_never_a_running_workers(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_setup(database_url, tmp_path))
    assert asyncio.run(_open_ids(database_url, 1)) == ["one-app", "w1", "w3"]
    assert asyncio.run(_open_ids(database_url, 2)) == ["w2"]

    async def claim() -> tuple[bool, bool, str | None]:
        db = Database.from_url(database_url)
        try:
            store = CallStore(db, "pbx_a/1")
            moved = await store.claim("w3", "pbx_a/3")
            again = await store.claim("w3", "pbx_a/3")
            record = await store.get("w3")
            return moved, again, record.pbx_node if record else None
        finally:
            await db.dispose()

    assert asyncio.run(claim()) == (True, False, "pbx_a/1")  # once

    # a worker's node for `calls close-lost`; this host's own workers need --force
    with pytest.raises(InvalidInput, match="this host's own PBX node"):
        _run(database_url, "calls", "close-lost", "--pbx-node", "pbx_a/2", node="pbx_a")
    assert _run(database_url, "calls", "close-lost", "--pbx-node", "pbx_a/2") == 0
    assert "PBX node pbx_a/2: 1 calls in progress settled and closed" in capsys.readouterr().out
    assert asyncio.run(_open_ids(database_url, 2)) == []
