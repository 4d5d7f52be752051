"""Numbers in the console and its API: search and buy by country and type, assign,
release; every change audited, bad input a clear 4xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from callcontrol.domain.money import MICRO
from callcontrol.services import Services

API = "/api/v1"
LONDON = "+442079460105"  # in the example catalogue (demo data), setup 1 + 2.5 a month
Q = quote(LONDON)


@pytest.fixture
async def auth(services: Services) -> dict[str, str]:
    token = await services.admins.issue_token("admin")
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: TestClient, method: str, path: str, auth: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = await client.request(method, API + path, headers=auth, json=body)
    return response.status, json.loads(await response.text())


async def test_catalogue_coverage_and_search(client: TestClient, auth: dict[str, str]) -> None:
    status, coverage = await call(client, "GET", "/catalogue", auth)
    assert status == 200
    by_kind = {(c["country"], c["type"]): c for c in coverage["items"]}
    assert by_kind["GB", "toll_free"]["lowest_monthly_micro"] == 10 * MICRO
    assert {"GB", "US", "DE", "FR", "AU"} == {country for country, _ in by_kind}
    status, found = await call(
        client, "GET", "/catalogue/search?country=GB&type=local&prefix=20&contains=0105", auth
    )
    assert status == 200
    assert found["items"] == [
        {
            "number": LONDON,
            "country": "GB",
            "type": "local",
            "setup_micro": MICRO,
            "monthly_micro": 2_500_000,
        }
    ]


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("country=ZZ&type=local", 400, "unknown country"),
        ("country=GB&type=premium", 400, "unknown number type"),
        ("country=IT&type=local", 404, "no numbers in IT"),
        ("type=local", 400, "country is required"),
    ],
)
async def test_search_refusals_are_clear(
    client: TestClient, auth: dict[str, str], query: str, status: int, error: str
) -> None:
    got, body = await call(client, "GET", f"/catalogue/search?{query}", auth)
    assert got == status and error in body["error"]["message"]


async def test_buy_assign_release_through_the_api(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    status, bought = await call(client, "POST", "/numbers", auth, {"number": LONDON})
    assert status == 201, bought
    assert bought["needs_routing"] and bought["charged_micro"] == 3_500_000
    assert (await services.charging.wallet.balance()).balance == 20 * MICRO - 3_500_000
    status, again = await call(client, "POST", "/numbers", auth, {"number": LONDON})
    assert (status, again["error"]["id"]) == (409, "conflict")
    status, body = await call(client, "PUT", f"/numbers/{Q}/assignments/bob", auth, {})
    assert status == 200 and body["assigned"] == [{"user": "bob", "default": True}]
    assert await services.directory.presented_number("bob") == LONDON
    status, body = await call(client, "DELETE", f"/numbers/{Q}/assignments/bob", auth)
    assert status == 200 and body["assigned"] == []
    status, body = await call(
        client, "PUT", f"/numbers/{quote('+442079469999')}/assignments/bob", auth, {}
    )
    assert status == 404 and "not one of the organisation's numbers" in body["error"]["message"]
    await services.directory.route_to_flow(LONDON, "main")
    status, body = await call(client, "DELETE", f"/numbers/{Q}", auth)
    assert status == 409 and "'main'" in body["error"]["message"]
    status, body = await call(client, "DELETE", f"/numbers/{Q}?force=true", auth)
    assert status == 200 and body["route_removed"] == "flow main"
    actions = [e.action for e in await services.admins.audit_log(10, None)]
    assert actions[:4] == ["number.release", "number.unassign", "number.assign", "number.buy"]
    assert await services.charging.wallet.audit() == []


async def test_buying_without_credits_is_a_409_and_charges_nothing(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    expensive = "+448081570100"  # toll-free: 5 + 10
    await call(client, "POST", "/numbers", auth, {"number": expensive})  # 15 of 20 credits
    status, body = await call(client, "POST", "/numbers", auth, {"number": "+448081570101"})
    assert (status, body["error"]["id"]) == (409, "insufficient_credits")
    assert "Nothing was reserved or charged" in body["error"]["message"]
    assert (await services.charging.wallet.balance()).balance == 5 * MICRO


async def test_the_numbers_page_searches_buys_assigns_and_releases(
    client: TestClient, csrf: str, services: Services
) -> None:
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    page = await (await client.get("/numbers")).text()
    assert 'hx-get="/numbers/search"' in page and "<option>GB</option>" in page
    offers = await client.get(
        "/numbers/search?country=GB&type=local&contains=0105", headers=headers
    )
    assert LONDON in await offers.text()
    bought = await client.post("/numbers/buy", data={"number": LONDON}, headers=headers)
    text = await bought.text()
    assert bought.status == 200 and f"Bought <b>{LONDON}</b>" in text
    assert "needs routing" in text
    assigned = await client.post(f"/numbers/{Q}/assign", data={"user": "alice"}, headers=headers)
    assert "default" in await assigned.text()
    users = await (await client.get("/users")).text()
    assert f"presents +442079460000 (default), {LONDON}" in users
    released = await client.post(f"/numbers/{Q}/release", data={}, headers=headers)
    assert f"Released <b>{LONDON}</b>" in await released.text()
    assert LONDON not in [n.e164 for n in await services.directory.list_numbers()]
