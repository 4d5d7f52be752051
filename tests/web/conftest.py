"""Fixtures for the console: the real app factory on a real, migrated SQLite database.

``console`` is a running console (aiohttp's test server on a free port) over real
services: the demo data, an admin ``admin`` with ``PASSWORD``, the shipped flows
copied to a temporary directory, and Asterisk played by the fake ARI server of the
unit tests (registration states, endpoint pushes). Live calls come from a
``FakeLiveCalls`` the test fills in, standing in for the serve process's CallManager.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callcontrol.config import Settings, load_settings
from callcontrol.demo import seed_demo
from callcontrol.services import Services, open_services
from callcontrol.store.migrate import upgrade
from callcontrol.web.console.app import console_app
from callcontrol.web.console.throttle import LoginThrottle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "ari"))
from console_harness import ADMIN, PASSWORD, FakeLiveCalls, sign_in
from fake_ari import PASSWORD as ARI_PASSWORD
from fake_ari import USERNAME as ARI_USERNAME
from fake_ari import FakeAri

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("webdb") / "callcontrol.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def fake_ari() -> AsyncIterator[FakeAri]:
    ari = FakeAri()
    await ari.start()
    try:
        yield ari
    finally:
        await ari.close()


@pytest.fixture
def settings(tmp_path: Path, template_db: Path, fake_ari: FakeAri) -> Settings:
    data = tmp_path / "var"
    data.mkdir()
    shutil.copyfile(template_db, data / "callcontrol.db")
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "ivr_flows", flows)
    return load_settings(
        environ={},
        overrides={
            "data_dir": str(data),
            "flows_dir": str(flows),
            "ari_url": fake_ari.url,
            "ari_username": ARI_USERNAME,
            "ari_password": ARI_PASSWORD,
            "pbx_root": str(tmp_path / "no-pbx"),
            "timezone": "Europe/London",
        },
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as svc:
        await seed_demo(svc)
        await svc.admins.add(ADMIN, PASSWORD)
        yield svc


@pytest.fixture
def live_calls() -> FakeLiveCalls:
    return FakeLiveCalls()


@pytest.fixture
async def client(services: Services, live_calls: FakeLiveCalls) -> AsyncIterator[TestClient]:
    app = console_app(
        services,
        live_calls=live_calls,
        refresh_interval=0.05,
        throttle=LoginThrottle(max_failures=3, window=60),
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def csrf(client: TestClient) -> str:
    """A signed-in client's CSRF token."""
    return await sign_in(client)
