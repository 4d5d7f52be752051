"""open_services: the one composition root, built once and closed, with or without a PBX."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.ari import AriClient
from callcontrol.calls.provisioning import EndpointProvisioner
from callcontrol.config import Settings
from callcontrol.demo import DEMO_CREDITS, seed_demo
from callcontrol.directory.service import DirectoryService, EndpointUpdate
from callcontrol.domain.directory import User
from callcontrol.errors import AriUnavailable, ConfigError, InvalidInput
from callcontrol.services import open_services
from callcontrol.store.db import Database

PASSWORD = "correct horse battery"


def settings_for(url: str, tmp_path: Path, ari_password: str = "") -> Settings:
    # data_dir has no ari.secret: without ari_password no ARI password can be found
    return Settings(
        database_url=url,
        data_dir=tmp_path,
        ari_url="http://127.0.0.1:9",
        ari_password=ari_password,
        flows_dir=tmp_path / "flows",
    )


@pytest.fixture
def disposed(monkeypatch: pytest.MonkeyPatch) -> list[Database]:
    """The databases disposed during the test."""
    seen: list[Database] = []
    dispose = Database.dispose

    async def spy(self: Database) -> None:
        seen.append(self)
        await dispose(self)

    monkeypatch.setattr(Database, "dispose", spy)
    return seen


async def test_builds_once_and_closes_everything(
    database_url: str, tmp_path: Path, disposed: list[Database]
) -> None:
    async with open_services(settings_for(database_url, tmp_path, "s3cret-services")) as services:
        assert services.ari_configured
        ari = services.ari
        assert isinstance(ari, AriClient) and services.ari is ari
        assert isinstance(services.provisioner, EndpointProvisioner)
        assert services.provisioner.ari is ari
        for user_of_db in (services.store, services.charging, services.directory):
            assert user_of_db.db is services.db
        assert await services.store.recent() == []
        registry = services.flow_registry()
        assert registry.directory == (tmp_path / "flows").resolve()
        db = services.db
        await ari.start()
    assert disposed == [db]
    with pytest.raises(AriUnavailable, match="closed"):
        await ari.start()


async def test_works_without_an_ari_password(database_url: str, tmp_path: Path) -> None:
    async with open_services(settings_for(database_url, tmp_path)) as services:
        assert not services.ari_configured
        with pytest.raises(ConfigError, match="no ARI password"):
            services.ari  # noqa: B018
        with pytest.raises(ConfigError, match="no ARI password"):
            services.provisioner  # noqa: B018
        alice = await services.directory.add_user("alice", "1001", PASSWORD)
        assert await services.directory.apply_endpoint(alice) is None
        assert await services.store.users() == [alice]


async def test_a_failed_build_disposes_what_it_built(
    database_url: str, tmp_path: Path, disposed: list[Database]
) -> None:
    settings = settings_for(database_url, tmp_path).model_copy(update={"sip_realm": "a:b"})
    with pytest.raises(InvalidInput, match="SIP realm 'a:b'"):
        async with open_services(settings):
            pytest.fail("the services were built")
    assert len(disposed) == 1


class FakeEndpoints:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pushed: list[str] = []
        self.removed: list[str] = []

    async def push(self, user: User, number: str | None = None) -> None:
        if self.fail:
            raise AriUnavailable("cannot connect to ARI")
        self.pushed.append(user.extension)

    async def remove(self, extension: str) -> None:
        if self.fail:
            raise AriUnavailable("cannot connect to ARI")
        self.removed.append(extension)


async def test_apply_endpoint_pushes_or_says_why_not(database: Database) -> None:
    endpoints = FakeEndpoints()
    directory = DirectoryService(database, "callcontrol", endpoints=endpoints)
    alice = await directory.add_user("alice", "1001", PASSWORD)
    assert await directory.apply_endpoint(alice) == EndpointUpdate("1001", removed=False)
    assert await directory.apply_endpoint(alice, removed=True) == EndpointUpdate("1001", True)
    assert (endpoints.pushed, endpoints.removed) == (["1001"], ["1001"])

    down = DirectoryService(database, "callcontrol", endpoints=FakeEndpoints(fail=True))
    update = await down.apply_endpoint(alice)
    assert update is not None and not update.applied
    assert update.error == "cannot connect to ARI"


async def test_seed_demo_is_idempotent(database_url: str, tmp_path: Path) -> None:
    repo_flows = Path(__file__).resolve().parents[2] / "ivr_flows"  # the demo runs flow main
    settings = settings_for(database_url, tmp_path).model_copy(update={"flows_dir": repo_flows})
    async with open_services(settings) as services:
        await seed_demo(services)
        await seed_demo(services)
        users = await services.directory.list_users()
        assert [(u.name, u.extension) for u in users] == [("alice", "1001"), ("bob", "1002")]
        routes = {n.e164: n.route for n in await services.directory.list_numbers()}
        assert routes["+442079460001"] is None
        assert routes["+442079460000"] is not None
        assert routes["+442079460000"].user_name == "alice"
        assert routes["+442079460002"] is not None
        assert routes["+442079460002"].flow_name == "main"
        assert (await services.charging.wallet.balance()).balance == DEMO_CREDITS
        assert await services.charging.current_rate_set() is not None
