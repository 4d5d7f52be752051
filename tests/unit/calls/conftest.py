"""Fixtures for the call tests: the fake ARI server, an organisation's database, apps."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The fake ARI server lives with the ARI adapter's tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ari"))

from calls_harness import App, StartApp, make_org
from fake_ari import FakeAri

from callcontrol.calls.admission import Admission
from callcontrol.calls.context import CallEnds
from callcontrol.store.migrate import upgrade


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("template") / "callcontrol.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    server.channelvars = ("CALLCONTROL_CALL_ID", "CALLCONTROL_ROLE")  # as ari.conf sets them
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def db_url(migrated: Path, tmp_path: Path) -> str:
    """The organisation with 100 credits."""
    return await make_org(migrated, tmp_path)


@pytest.fixture
async def start_app(fake: FakeAri, db_url: str, tmp_path: Path) -> AsyncIterator[StartApp]:
    """Start an app instance (several in turn: a restart); all are closed at the end."""
    apps: list[App] = []

    async def start(
        url: str = db_url,
        *,
        flows: bool = False,
        admission: Admission | None = None,
        pbx_node: str | None = None,
        pbx_records: CallEnds | None = None,
    ) -> App:
        app = App(
            fake,
            url,
            tmp_path,
            flows=flows,
            admission=admission,
            pbx_node=pbx_node,
            pbx_records=pbx_records,
        )
        apps.append(app)
        return await app.start()

    yield start
    for app in reversed(apps):
        await app.close()


@pytest.fixture
async def app(start_app: StartApp) -> App:
    return await start_app()
