"""The JSON API, endpoint by endpoint, with a bearer token, on a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from console_harness import FakeLiveCalls
from fake_ari import FakeAri

from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.live_calls import LiveCall
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.services import Services
from callcontrol.web.console.openapi import OPERATIONS

API = "/api/v1"


@pytest.fixture
async def auth(services: Services) -> dict[str, str]:
    token = await services.admins.issue_token("admin")
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: TestClient, method: str, path: str, auth: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = await client.request(method, API + path, headers=auth, json=body)
    text = await response.text()
    if response.content_type == "application/json":
        return response.status, json.loads(text)
    return response.status, text


def concrete(path: str) -> str:
    return (
        path.replace("{number}", "%2B442079460000").replace("{name}", "main").replace("{id}", "1")
    )


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, *_ in OPERATIONS])
async def test_every_endpoint_needs_a_sign_in(client: TestClient, method: str, path: str) -> None:
    response = await client.request(method.upper(), API + concrete(path), json={})
    assert response.status == 401
    body = await response.json()
    assert body["error"]["id"] == "unauthenticated"


async def test_the_openapi_document_lists_every_api_route(
    client: TestClient, auth: dict[str, str]
) -> None:
    status, doc = await call(client, "GET", "/openapi.json", auth)
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(API)
        and route.method != "HEAD"
    }
    assert served == documented


async def test_wallet(client: TestClient, auth: dict[str, str]) -> None:
    status, body = await call(client, "GET", "/wallet", auth)
    assert status == 200
    assert body == {"balance_micro": 20 * MICRO, "held_micro": 0, "available_micro": 20 * MICRO}


async def test_numbers_are_listed_paginated_and_routed(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    status, first = await call(client, "GET", "/numbers?limit=2", auth)
    assert status == 200 and len(first["items"]) == 2 and first["next"] == "+442079460001"
    _, rest = await call(client, "GET", f"/numbers?limit=2&after={quote(first['next'])}", auth)
    assert [n["number"] for n in rest["items"]] == ["+442079460002"] and rest["next"] is None
    needs = {n["number"]: n["needs_routing"] for n in first["items"]}
    assert needs == {"+442079460000": False, "+442079460001": True}

    status, number = await call(
        client, "PUT", "/numbers/%2B442079460001/route", auth, {"kind": "user", "name": "bob"}
    )
    assert status == 200 and number["route"] == {"kind": "user", "name": "bob"}
    routed = await services.directory.get_number("+442079460001")
    assert routed.route is not None and routed.route.user_name == "bob"
    status, number = await call(
        client, "PUT", "/numbers/%2B442079460001/route", auth, {"kind": "flow", "name": "main"}
    )
    assert status == 200 and number["route"] == {"kind": "flow", "name": "main"}
    status, number = await call(client, "DELETE", "/numbers/%2B442079460001/route", auth)
    assert status == 200 and number["needs_routing"] is True
    status, number = await call(client, "GET", "/numbers/%2B442079460000", auth)
    assert status == 200 and number["route"] == {"kind": "user", "name": "alice"}

    _, audit = await call(client, "GET", "/audit", auth)
    actions = [(e["action"], e["target"], e["admin"]) for e in audit["items"]]
    assert actions[:3] == [("number.route", "+442079460001", "admin")] * 3
    assert audit["items"][2]["details"] == "rings user bob"


@pytest.mark.parametrize(
    ("path", "body", "status", "error_id"),
    [
        ("/numbers/%2B442079469999/route", {"kind": "user", "name": "bob"}, 404, "not_found"),
        ("/numbers/%2B442079460001/route", {"kind": "user", "name": "nobody"}, 404, "not_found"),
        (
            "/numbers/%2B442079460001/route",
            {"kind": "flow", "name": "nosuch"},
            400,
            "invalid_input",
        ),
        ("/numbers/%2B442079460001/route", {"kind": "fax"}, 400, "invalid_input"),
        ("/numbers/%2B442079460001/route", {"kind": "user"}, 400, "invalid_input"),
        ("/numbers/%2B442079460001/route", {"kind": 5}, 400, "invalid_input"),
        ("/numbers/%2B442079460001/route", [1, 2], 400, "invalid_input"),
        ("/numbers/not-a-number/route", {"kind": "none"}, 400, "invalid_input"),
    ],
)
async def test_bad_routing_input_is_a_clear_4xx(
    client: TestClient, auth: dict[str, str], path: str, body: Any, status: int, error_id: str
) -> None:
    got, answer = await call(client, "PUT", path, auth, body)
    assert got == status and answer["error"]["id"] == error_id and answer["error"]["message"]


async def test_a_body_that_is_not_json_is_a_400(client: TestClient, auth: dict[str, str]) -> None:
    response = await client.put(
        API + "/numbers/%2B442079460001/route",
        data=b"{not json",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["id"] == "invalid_input"


async def test_unknown_api_paths_answer_json(client: TestClient, auth: dict[str, str]) -> None:
    status, body = await call(client, "GET", "/nothing-here", auth)
    assert status == 404 and body["error"]["id"] == "not_found"
    status, body = await call(client, "PATCH", "/wallet", auth)
    assert status == 405 and body["error"]["id"] == "method_not_allowed"


async def test_users_with_registration_add_reset_remove(
    client: TestClient, auth: dict[str, str], fake_ari: FakeAri, services: Services
) -> None:
    fake_ari.dynamic[("res_pjsip", "endpoint", "1001")] = {}
    fake_ari.registered.add("1001")
    status, users = await call(client, "GET", "/users", auth)
    assert status == 200
    assert {u["name"]: u["registration"] for u in users["items"]} == {
        "alice": "online",
        "bob": "offline",
    }
    status, page = await call(client, "GET", "/users?limit=1", auth)
    assert [u["name"] for u in page["items"]] == ["alice"] and page["next"] == "alice"

    status, added = await call(
        client, "POST", "/users", auth, {"name": "carol", "extension": "1003"}
    )
    assert status == 201 and len(added["password"]) >= 12
    assert added["endpoint"] == {"applied": True, "error": None}
    assert ("res_pjsip", "endpoint", "1003") in fake_ari.dynamic
    status, carol = await call(client, "GET", "/users/carol", auth)
    assert status == 200 and carol["extension"] == "1003"

    status, reset = await call(client, "POST", "/users/carol/password", auth)
    assert status == 200 and reset["password"] != added["password"]
    status, reset = await call(
        client, "POST", "/users/carol/password", auth, {"password": "a-much-better-pw-1"}
    )
    assert status == 200 and "password" not in reset

    status, body = await call(client, "DELETE", "/users/alice", auth)
    assert status == 409 and "+442079460000" in body["error"]["message"]
    status, body = await call(client, "DELETE", "/users/alice?force=true", auth)
    assert status == 200 and body["removed"] == "alice"
    number = await services.directory.get_number("+442079460000")
    assert number.route is None
    status, body = await call(client, "DELETE", "/users/alice", auth)
    assert status == 404 and body["error"]["id"] == "not_found"


@pytest.mark.parametrize(
    ("body", "error_id"),
    [
        ({"name": "dave", "extension": "1004", "password": "123"}, "weak_password"),
        ({"name": "dave", "extension": "1001"}, "conflict"),
        ({"name": "alice", "extension": "1009"}, "conflict"),
        ({"name": "dave", "extension": "12ab"}, "invalid_input"),
        ({"name": "dave"}, "invalid_input"),
        ({"name": ["x"], "extension": "1004"}, "invalid_input"),
    ],
)
async def test_bad_users_are_refused(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], error_id: str
) -> None:
    status, answer = await call(client, "POST", "/users", auth, body)
    assert status in (400, 409) and answer["error"]["id"] == error_id


async def test_flows_list_read_save_graph_simulate(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    status, flows = await call(client, "GET", "/flows", auth)
    assert status == 200 and flows["items"] == [{"name": "main", "valid": True, "errors": []}]
    status, main = await call(client, "GET", "/flows/main", auth)
    assert status == 200 and main["valid"] and "menus:" in main["yaml"]

    broken = main["yaml"].replace("start: office_hours", "start: nowhere")
    status, body = await call(client, "PUT", "/flows/main", auth, {"yaml": broken})
    assert status == 400 and body["error"]["id"] == "flow_invalid"
    line = broken.splitlines().index("start: nowhere") + 1
    assert any(e["line"] == line for e in body["error"]["details"]["errors"])
    path = services.settings.flows_dir / "main.yaml"
    assert "start: office_hours" in path.read_text()  # nothing written

    small = (
        "start: hello\nmenus:\n  hello:\n    prompts: [hello-world]\n"
        "    options:\n      '1': {ring: bob}\n    on_failure: hangup\n"
    )
    status, body = await call(client, "PUT", "/flows/small", auth, {"yaml": small})
    assert status == 201, body
    assert body["created"] is True
    assert (services.settings.flows_dir / "small.yaml").read_text() == small
    status, body = await call(client, "PUT", "/flows/small", auth, {"yaml": small})
    assert status == 200 and body["created"] is False
    status, body = await call(client, "PUT", "/flows/..%2Fevil", auth, {"yaml": small})
    assert status in (400, 404)

    response = await client.get(API + "/flows/main/graph.svg", headers=auth)
    assert response.status == 200 and response.content_type == "image/svg+xml"
    assert "<svg" in await response.text()

    status, sim = await call(
        client, "POST", "/flows/main/simulate", auth, {"keys": "1", "at": "2026-11-27T10:00"}
    )
    assert status == 200 and any("ring bob" in step for step in sim["steps"])
    status, sim = await call(client, "POST", "/flows/main/simulate", auth, {"keys": "x"})
    assert status == 400 and sim["error"]["id"] == "invalid_input"
    status, sim = await call(client, "POST", "/flows/nosuch/simulate", auth, {"keys": "1"})
    assert status == 404


async def _records(services: Services, count: int) -> datetime:
    """``count`` answered inbound calls to alice, one a minute, charged 0.02 each."""
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    rates = await services.charging.load_rates()
    rate_id = rates[0].id
    assert rate_id is not None
    for i in range(count):
        at = start + timedelta(minutes=i)
        call_id = f"call-{i:03d}"
        await services.store.start(
            call_id=call_id,
            direction=CallDirection.INBOUND,
            caller="+4930123456",
            callee="+442079460000",
            channel_id=f"ch-{i}",
            started_at=at,
            number_e164="+442079460000",
            user_name="alice",
        )
        await services.store.mark_answered(call_id, at + timedelta(seconds=5))
        await services.store.finish(
            call_id, at + timedelta(seconds=65), Disposition.ANSWERED, 16, EndedBy.CALLER
        )
        await services.store.settle(call_id, rate_id, 60, 20_000)
    return start


async def test_call_history_filters_pages_and_csv(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    await _records(services, 7)
    status, first = await call(client, "GET", "/calls?limit=3", auth)
    assert status == 200 and [c["call_id"] for c in first["items"]] == [
        "call-006",
        "call-005",
        "call-004",
    ]
    assert first["items"][0]["cost_micro"] == 20_000 and first["items"][0]["billable_seconds"] == 60
    assert first["items"][0]["rate"]["description"]
    seen = [c["call_id"] for c in first["items"]]
    cursor = first["next"]
    while cursor:
        _, page = await call(client, "GET", f"/calls?limit=3&cursor={cursor}", auth)
        seen += [c["call_id"] for c in page["items"]]
        cursor = page["next"]
    assert seen == [f"call-{i:03d}" for i in range(6, -1, -1)]

    _, filtered = await call(client, "GET", "/calls?user=bob", auth)
    assert filtered["items"] == []
    _, filtered = await call(
        client,
        "GET",
        "/calls?direction=inbound&disposition=answered&number=%2B442079460000&since=2026-11-27&until=2026-11-27",
        auth,
    )
    assert len(filtered["items"]) == 7
    _, filtered = await call(client, "GET", "/calls?since=2026-11-28", auth)
    assert filtered["items"] == []

    for query in ("cursor=garbage!", "direction=sideways", "since=yesterday", "limit=0", "limit=x"):
        status, body = await call(client, "GET", f"/calls?{query}", auth)
        assert status == 400 and body["error"]["id"] == "invalid_input", query

    response = await client.get(API + "/calls.csv?user=alice", headers=auth)
    assert response.status == 200 and response.content_type == "text/csv"
    lines = (await response.text()).strip().splitlines()
    assert lines[0].startswith("call_id,started_at") and len(lines) == 8
    assert lines[1].startswith("call-006,") and lines[1].endswith(",60,0.020000")


async def test_live_calls_come_from_the_call_manager_snapshot(
    client: TestClient, auth: dict[str, str], services: Services, live_calls: FakeLiveCalls
) -> None:
    now = datetime.now(UTC)
    await services.store.start(
        call_id="live-1",
        direction=CallDirection.INBOUND,
        caller="+4930123456",
        callee="+442079460000",
        channel_id="ch-live",
        started_at=now,
        number_e164="+442079460000",
        user_name="alice",
    )
    live_calls.calls.append(
        LiveCall("live-1", "inbound", "+4930123456", "+442079460000", now, now, 42, 35_000, "UK")
    )
    status, body = await call(client, "GET", "/calls/live", auth)
    assert status == 200
    (item,) = body["items"]
    assert item["user"] == "alice" and item["number"] == "+442079460000"
    assert item["talk_seconds"] == 42 and item["cost_micro"] == 35_000


async def test_ledger_is_paginated_newest_first(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    for i in range(4):
        await services.charging.wallet.credit(MICRO, LedgerKind.PURCHASE, None, f"t{i}", "top-up")
    status, first = await call(client, "GET", "/ledger?limit=2", auth)
    assert status == 200 and len(first["items"]) == 2 and first["next"] is not None
    ids = [e["id"] for e in first["items"]]
    _, rest = await call(client, "GET", f"/ledger?limit=10&before={first['next']}", auth)
    ids += [e["id"] for e in rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5
    status, _body = await call(client, "GET", "/ledger?before=-1", auth)
    assert status == 400


async def test_events_stream_the_balance_as_json(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    response = await client.get(API + "/events", headers=auth)
    assert response.status == 200 and response.content_type == "text/event-stream"
    await services.charging.wallet.credit(MICRO, LedgerKind.PURCHASE, None, "sse-1", "top-up")
    balances: list[int] = []
    while 21 * MICRO not in balances:
        line = (await response.content.readline()).decode()
        if line.startswith("data: "):
            balances.append(json.loads(line[6:])["balance_micro"])
    response.close()
    assert balances[-1] == 21 * MICRO
