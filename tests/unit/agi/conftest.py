"""Fixtures for the FastAGI tests: an organisation's database and a running server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The organisation (users, numbers, per-second rates) of the call tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ari"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calls"))

from agi_harness import Running, StartServer
from calls_harness import make_org

from callcontrol.agi.calls import AgiCalls
from callcontrol.agi.server import AgiServer
from callcontrol.billing.service import ChargingService
from callcontrol.billing.session import CallCharging
from callcontrol.calls.records import CallStore
from callcontrol.store.db import Database
from callcontrol.store.migrate import upgrade


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "callcontrol.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def agi(migrated: Path, tmp_path: Path) -> AsyncIterator[StartServer]:
    """``await agi(credits=..., timeout=..., calls_type=...)``: a running server."""
    started: list[tuple[Database, asyncio.Server]] = []

    async def start(
        *,
        credits: int | None = None,
        timeout: float = 2.0,
        authorize_timeout: float = 2.0,
        max_duration: int = 3600,
        calls_type: type[AgiCalls] = AgiCalls,
    ) -> Running:
        work = tmp_path / f"org{len(started)}"
        work.mkdir()
        url = await (
            make_org(migrated, work)
            if credits is None
            else make_org(migrated, work, credits=credits)
        )
        db = Database.from_url(url)
        store = CallStore(db)
        calls = calls_type(
            store,
            CallCharging(ChargingService(db), store),
            max_duration=max_duration,
            country="GB",
        )
        server = AgiServer(calls, timeout=timeout, authorize_timeout=authorize_timeout)
        listening = await server.start("127.0.0.1", 0)
        started.append((db, listening))
        return Running(db, server, calls, listening.sockets[0].getsockname()[1])

    yield start
    for db, listening in started:
        listening.close()
        await db.dispose()
