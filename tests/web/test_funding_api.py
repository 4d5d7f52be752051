"""The funding API (fundingapi.py) on the offline provider: buy, methods, auto-recharge,
attempts; every change audited, cookie sessions need CSRF, bad input is a 4xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from callcontrol.domain.money import MICRO
from callcontrol.services import Services

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
    assert response.content_type == "application/json", text
    return response.status, json.loads(text)


async def actions(services: Services) -> list[str]:
    return [e.action for e in await services.admins.audit_log(50)]


async def test_buy_with_a_test_card_credits_the_wallet_and_is_audited(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    status, card = await call(client, "POST", "/payments/methods/test-card", auth, {"card": "visa"})
    assert status == 201
    assert card["brand"] == "visa" and card["last4"] == "4242" and card["is_default"]
    status, body = await call(client, "POST", "/credits/buy", auth, {"credits": "10"})
    assert status == 201
    assert body["outcome"]["kind"] == "succeeded"
    attempt = body["attempt"]
    assert attempt["state"] == "succeeded" and attempt["credits_micro"] == 10 * MICRO
    assert attempt["provider_reference"] and attempt["method_id"] == card["id"]
    state = await services.charging.wallet.balance()
    assert state.balance == 30 * MICRO  # the demo's 20 + 10
    _, listed = await call(client, "GET", "/payments/attempts?limit=5", auth)
    assert [a["id"] for a in listed["items"]] == [attempt["id"]]
    _, ledger = await call(client, "GET", "/ledger?limit=1", auth)
    assert ledger["items"][0]["reference"] == attempt["id"]
    assert attempt["provider_reference"] in ledger["items"][0]["description"]
    assert await actions(services) == ["credits.buy", "payment_method.add"]


@pytest.mark.parametrize(
    ("card", "kind", "code"),
    [
        ("declined", "declined", "card_declined"),
        ("authentication_required", "needs_customer", None),
        ("timeout_after_charge", "unknown", None),
    ],
)
async def test_each_outcome_is_told(
    client: TestClient,
    auth: dict[str, str],
    services: Services,
    card: str,
    kind: str,
    code: str | None,
) -> None:
    _, method = await call(client, "POST", "/payments/methods/test-card", auth, {"card": card})
    status, body = await call(
        client, "POST", "/credits/buy", auth, {"credits": 5, "method": method["id"]}
    )
    assert status == 201 and body["outcome"]["kind"] == kind, body
    if code is not None:
        assert body["attempt"]["decline_code"] == code
        assert code in body["outcome"]["message"]
    assert (await services.charging.wallet.balance()).balance == 20 * MICRO


async def test_methods_default_and_remove(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    _, visa = await call(client, "POST", "/payments/methods/test-card", auth, {"card": "visa"})
    _, master = await call(
        client, "POST", "/payments/methods/test-card", auth, {"card": "mastercard"}
    )
    status, made = await call(client, "PUT", f"/payments/methods/{master['id']}/default", auth)
    assert status == 200 and made["is_default"]
    _, listed = await call(client, "GET", "/payments/methods", auth)
    defaults = {m["id"]: m["is_default"] for m in listed["items"]}
    assert defaults == {visa["id"]: False, master["id"]: True}
    status, removed = await call(client, "DELETE", f"/payments/methods/{visa['id']}", auth)
    assert status == 200 and removed["removed"]["id"] == visa["id"]
    _, listed = await call(client, "GET", "/payments/methods", auth)
    assert [m["id"] for m in listed["items"]] == [master["id"]]
    assert (await actions(services))[:2] == ["payment_method.remove", "payment_method.default"]


async def test_auto_recharge_on_off_and_the_card_it_uses_cannot_be_removed(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    status, body = await call(
        client, "PUT", "/auto-recharge", auth, {"enabled": True, "amount": "10"}
    )
    assert status == 400 and body["error"]["id"] == "invalid_input"
    assert "no payment method" in body["error"]["message"]
    _, card = await call(client, "POST", "/payments/methods/test-card", auth, {"card": "visa"})
    status, on = await call(
        client,
        "PUT",
        "/auto-recharge",
        auth,
        {"enabled": True, "amount": "10", "monthly_cap": "50"},
    )
    assert status == 200
    assert on["enabled"] and on["threshold_micro"] == 2 * MICRO and on["amount_micro"] == 10 * MICRO
    assert on["method"]["id"] == card["id"] and on["monthly_cap_micro"] == 50 * MICRO
    status, refused = await call(client, "DELETE", f"/payments/methods/{card['id']}", auth)
    assert status == 409 and refused["error"]["id"] == "conflict"
    assert "auto-recharge" in refused["error"]["message"]
    status, off = await call(client, "PUT", "/auto-recharge", auth, {"enabled": False})
    assert status == 200 and not off["enabled"]
    _, got = await call(client, "GET", "/auto-recharge", auth)
    assert got == off
    assert (await actions(services))[:2] == ["auto_recharge.off", "auto_recharge.on"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/credits/buy", {}, 400),
        ("POST", "/credits/buy", {"credits": "ten"}, 400),
        ("POST", "/credits/buy", {"credits": "1e3"}, 400),
        ("POST", "/credits/buy", {"credits": "0.0000001"}, 400),
        ("POST", "/credits/buy", {"credits": "10", "method": "x"}, 400),
        ("POST", "/credits/buy", {"credits": "10", "method": 99}, 404),
        ("POST", "/credits/buy", {"credits": "10", "method": True}, 400),
        ("POST", "/credits/buy", [1], 400),
        ("POST", "/payments/methods/test-card", {"card": "4242424242424242"}, 400),
        ("POST", "/payments/methods/test-card", {"card": 7}, 400),
        ("PUT", "/payments/methods/99/default", None, 404),
        ("PUT", "/payments/methods/abc/default", None, 400),
        ("DELETE", "/payments/methods/99", None, 404),
        ("GET", "/payments/attempts?limit=0", None, 400),
        ("PUT", "/auto-recharge", {"enabled": "yes"}, 400),
        ("PUT", "/auto-recharge", {"enabled": True}, 400),
        ("PUT", "/auto-recharge", {"enabled": True, "amount": "-3"}, 400),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    client: TestClient,
    auth: dict[str, str],
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    got, answer = await call(client, method, path, auth, body)
    assert got == status, answer
    assert answer["error"]["id"] in ("invalid_input", "not_found") and answer["error"]["message"]


async def test_a_test_card_number_is_not_echoed(client: TestClient, auth: dict[str, str]) -> None:
    _, answer = await call(
        client, "POST", "/payments/methods/test-card", auth, {"card": "4111111111111111"}
    )
    assert "4111111111111111" not in json.dumps(answer)


async def test_cookie_sessions_need_the_csrf_token(
    client: TestClient, csrf: str, services: Services
) -> None:
    for method, path, body in [
        ("POST", "/payments/methods/test-card", {"card": "visa"}),
        ("POST", "/credits/buy", {"credits": "10"}),
        ("PUT", "/auto-recharge", {"enabled": False}),
        ("DELETE", "/payments/methods/1", None),
        ("PUT", "/payments/methods/1/default", None),
        ("POST", "/payments/card-setup", None),
        ("POST", "/payments/card-setup/complete", None),
    ]:
        response = await client.request(method, API + path, json=body)
        assert response.status == 403, path
        assert (await response.json())["error"]["id"] == "csrf_failed"
    assert await services.funding.methods() == []
    response = await client.post(
        f"{API}/payments/methods/test-card", json={"card": "visa"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 201


async def test_a_bank_transfer_purchase_is_pending(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    method = await services.funding.add_bank_transfer("invoice to accounts")
    status, body = await call(
        client, "POST", "/credits/buy", auth, {"credits": "10", "method": method.id}
    )
    assert status == 201 and body["outcome"]["kind"] == "pending"
    assert body["attempt"]["state"] == "pending"
    _, listed = await call(client, "GET", "/payments/methods", auth)
    assert listed["items"][0]["kind"] == "bank_transfer" and listed["items"][0]["last4"] is None
    status, refused = await call(
        client, "PUT", "/auto-recharge", auth, {"enabled": True, "amount": "10"}
    )
    assert status == 400 and "card only" in refused["error"]["message"]


async def test_the_card_setup_endpoints(
    client: TestClient, auth: dict[str, str], services: Services
) -> None:
    anonymous = await client.post(f"{API}/payments/card-setup")
    offline, refused = await call(client, "POST", "/payments/card-setup", auth)
    fields, bad = await call(client, "POST", "/payments/card-setup", auth, {"card": "4242"})
    done, added = await call(client, "POST", "/payments/card-setup/complete", auth, {})

    assert anonymous.status == 401
    assert offline == 409 and refused["error"]["id"] == "conflict"
    assert "offline" in refused["error"]["message"]
    assert fields == 400 and bad["error"]["id"] == "invalid_input" and "4242" not in str(bad)
    assert (done, added) == (200, {"added": []})
    assert "payment_method.add" not in await actions(services)
