"""/readyz and /metrics on the console's server: public, honest about each check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from console_harness import FakeLiveCalls
from prometheus_client.parser import text_string_to_metric_families

from callcontrol.metrics import Metrics
from callcontrol.services import Services
from callcontrol.web.console.app import console_app
from callcontrol.web.health import Health


@pytest.fixture
def ari_up() -> dict[str, bool]:
    return {"connected": True}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def probe(
    services: Services, ari_up: dict[str, bool], metrics: Metrics
) -> AsyncIterator[TestClient]:
    """The console as ``serve`` builds it: ARI's state and the metrics behind the probes."""
    health = Health(services.db.ping, lambda: ari_up["connected"], metrics)
    app = console_app(services, live_calls=FakeLiveCalls(), health=health)
    async with TestClient(TestServer(app)) as client:
        yield client


async def ready(client: TestClient) -> tuple[int, dict[str, object]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_ready_when_ari_is_connected_and_the_database_answers(probe: TestClient) -> None:
    assert await ready(probe) == (200, {"ready": True, "checks": {"ari": "ok", "database": "ok"}})


async def test_not_ready_while_ari_is_disconnected(
    probe: TestClient, ari_up: dict[str, bool]
) -> None:
    ari_up["connected"] = False
    status, body = await ready(probe)
    assert status == 503
    assert body == {"ready": False, "checks": {"ari": "not connected", "database": "ok"}}


async def test_not_ready_while_the_database_is_gone_and_ready_again_when_it_is_back(
    probe: TestClient, services: Services
) -> None:
    """The SQLite file is replaced by something that is no database: 503 naming the
    database; put back, 200 again (the probe does not cache an answer)."""
    path = Path(services.settings.data_dir) / "callcontrol.db"
    aside = path.with_suffix(".aside")
    await services.db.dispose()  # no pooled connection keeps the old file open
    path.rename(aside)
    path.mkdir()
    try:
        status, body = await ready(probe)
        assert status == 503
        assert body == {"ready": False, "checks": {"ari": "ok", "database": "unavailable"}}
    finally:
        await services.db.dispose()
        path.rmdir()
        aside.rename(path)
    assert (await ready(probe))[0] == 200


async def test_metrics_are_served_without_signing_in(probe: TestClient, metrics: Metrics) -> None:
    metrics.call_setup("inbound")
    metrics.watch_calls(lambda: {"inbound": 1})
    metrics.ari_request("POST", "/channels/1716.5/answer", 0.004)
    response = await probe.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    setups = families["callcontrol_call_setups"].samples
    totals = {s.labels["direction"]: s.value for s in setups if s.name.endswith("_total")}
    assert totals == {"inbound": 1, "outbound": 0}
    in_progress = families["callcontrol_calls_in_progress"].samples
    assert {s.labels["direction"]: s.value for s in in_progress} == {
        "inbound": 1,
        "outbound": 0,
        "internal": 0,
    }
    ari = families["callcontrol_ari_request_duration_seconds"].samples
    assert {s.labels.get("route") for s in ari} == {"/channels/{id}/answer"}
    assert "process_cpu_seconds" in families  # the process collector, on this registry


async def test_the_wallet_is_read_from_the_database_when_scraped(
    probe: TestClient, metrics: Metrics, services: Services
) -> None:
    async def wallet() -> tuple[int, int]:
        state = await services.charging.wallet.balance()
        return state.balance, state.held

    metrics.watch_wallet(wallet)
    balance = (await services.charging.wallet.balance()).balance
    assert balance > 0  # the demo wallet
    text = await (await probe.get("/metrics")).text()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values["callcontrol_wallet_balance_microcredits"] == balance
    assert values["callcontrol_wallet_held_microcredits"] == 0


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
async def test_a_console_without_serve_checks_the_database_only(
    client: TestClient, path: str
) -> None:
    response = await client.get(path)
    if path == "/readyz":
        assert response.status == 200
        assert await response.json() == {"ready": True, "checks": {"database": "ok"}}
    else:
        assert response.status == 404  # no metrics in a console built without serve
