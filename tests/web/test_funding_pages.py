"""The funding pages (fundingpages.py) as htmx sees them: the header's panels, the
Payments page, the ledger's link to a purchase's attempt."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from callcontrol.domain.money import MICRO
from callcontrol.services import Services
from callcontrol.web.console.render import fragment

HX = {"HX-Request": "true"}


async def post(client: TestClient, csrf: str, path: str, data: dict[str, str]) -> tuple[int, str]:
    response = await client.post(path, data=data, headers={**HX, "X-CSRF-Token": csrf})
    return response.status, await response.text()


async def test_every_page_has_the_funding_panels(client: TestClient, csrf: str) -> None:
    for path in ("/numbers", "/ledger", "/payments"):
        text = await (await client.get(path)).text()
        assert 'hx-get="/funding/buy"' in text and 'hx-get="/funding/auto-recharge"' in text
    buy = await (await client.get("/funding/buy", headers=HX)).text()
    assert 'value="test:visa"' in buy and 'name="amount"' in buy
    assert "card number" not in buy.lower() and 'name="number"' not in buy


async def test_buy_with_a_new_test_card_then_a_declined_one(
    client: TestClient, csrf: str, services: Services
) -> None:
    status, text = await post(client, csrf, "/funding/buy", {"amount": "10", "method": "test:visa"})
    assert status == 200 and 'data-outcome="succeeded"' in text
    assert "Bought 10.00 credits" in text and 'hx-swap-oob="true"' in text
    assert (await services.charging.wallet.balance()).balance == 30 * MICRO
    status, text = await post(
        client, csrf, "/funding/buy", {"amount": "5", "method": "test:declined"}
    )
    assert status == 200 and 'data-outcome="declined"' in text and "card_declined" in text
    status, text = await post(client, csrf, "/funding/buy", {"amount": "lots", "method": ""})
    assert status == 400 and 'class="error"' in text
    audit = [e.action for e in await services.admins.audit_log(10)]
    assert audit.count("credits.buy") == 2 and audit.count("payment_method.add") == 2


async def test_auto_recharge_is_refused_without_a_card_then_turned_on(
    client: TestClient, csrf: str, services: Services
) -> None:
    form = await (await client.get("/funding/auto-recharge", headers=HX)).text()
    assert 'name="threshold"' in form and 'value="2"' in form
    status, text = await post(
        client, csrf, "/funding/auto-recharge", {"enabled": "on", "amount": "10"}
    )
    assert status == 400 and "no payment method" in text
    await post(client, csrf, "/payments/methods", {"card": "visa"})
    status, text = await post(
        client, csrf, "/funding/auto-recharge", {"enabled": "on", "amount": "10", "threshold": "2"}
    )
    assert status == 200 and 'data-enabled="on"' in text
    assert (await services.funding.status()).auto_recharge.enabled


async def test_payments_page_methods_and_attempts(
    client: TestClient, csrf: str, services: Services
) -> None:
    status, text = await post(client, csrf, "/payments/methods", {"card": "visa"})
    assert status == 200 and "Saved card visa ****4242" in text and 'id="methods"' in text
    card = (await services.funding.methods())[0]
    await services.funding.auto_recharge_on(
        threshold_micro=2 * MICRO,
        amount_micro=10 * MICRO,
        method_id=card.id,
        monthly_cap_micro=None,
    )
    status, text = await post(client, csrf, f"/payments/methods/{card.id}/remove", {})
    assert status == 409 and "turn it off or give it another card" in text
    attempt = await services.funding.buy(10 * MICRO)
    page = await (await client.get("/payments")).text()
    assert 'visa <span class="mono">****4242</span> exp 12/2034' in page
    assert f'id="attempt-{attempt.id}"' in page and 'data-state="succeeded"' in page
    assert attempt.provider_payment_id is not None and attempt.provider_payment_id in page
    ledger = await (await client.get("/ledger")).text()
    assert f'href="/payments#attempt-{attempt.id}"' in ledger
    assert attempt.provider_payment_id in ledger


async def test_the_funding_forms_need_the_csrf_token(
    client: TestClient, csrf: str, services: Services
) -> None:
    for path, data in [
        ("/funding/buy", {"amount": "10", "method": "test:visa"}),
        ("/funding/auto-recharge", {"enabled": "on", "amount": "10"}),
        ("/payments/methods", {"card": "visa"}),
        ("/payments/methods/1/default", {}),
        ("/payments/methods/1/remove", {}),
        ("/payments/card-setup", {}),
        ("/payments/card-setup/done", {}),
    ]:
        response = await client.post(path, data=data, headers=HX)
        assert response.status == 403, path
    assert await services.funding.methods() == []
    assert (await services.charging.wallet.balance()).balance == 20 * MICRO


async def test_the_stripe_card_form_loads_stripe_js_only_for_stripe(client: TestClient) -> None:
    def form(provider: str) -> str:
        context: dict[str, object] = {"provider": provider, "publishable_key": "pk_test_abc123"}
        context["test_cards"] = ["visa"]
        return fragment(client.server.app, "_card_form.html", context)

    stripe, offline = form("stripe"), form("offline")

    assert '<script src="https://js.stripe.com/v3/"></script>' in stripe
    assert 'data-publishable-key="pk_test_abc123"' in stripe and 'id="card-element"' in stripe
    assert 'name="number"' not in stripe and 'name="card"' not in stripe
    assert "js.stripe.com" not in offline and "pk_test_abc123" not in offline
    assert 'data-testid="add-test-card"' in offline


async def test_the_card_form_routes_refuse_the_offline_provider(
    client: TestClient, csrf: str, services: Services
) -> None:
    started = await client.post("/payments/card-setup", headers={"X-CSRF-Token": csrf})
    status, done = await post(client, csrf, "/payments/card-setup/done", {})

    assert started.status == 409 and "offline" in await started.text()
    assert status == 200 and "No new card" in done
    assert await services.funding.methods() == []
