"""The console's funding: the header's "Buy credits" and "Auto-recharge" panels and the
Payments page (saved methods, recent payment attempts).

The header panels are ``<details>`` that load their form (htmx) when opened, so a page
costs no funding query until the admin asks. Answers go to a result box inside the
panel; a change also swaps the methods table out of band (``hx-swap-oob``), so a
refusal (409, 400: the error fragment) never hides the table. The balance in the header
follows by itself: the live-update hub sends it over SSE when the purchase is credited.

Adding a card: with the offline provider, a test card chosen by name (never a card
number field); with Stripe, Stripe.js's Card Element (``_card_form.html``, its script
static/card_setup.js): ``POST /payments/card-setup`` starts a SetupIntent, the browser
confirms it with Stripe, then ``POST /payments/card-setup/done`` records the cards Stripe
lists and swaps the methods table.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiMapping

from callcontrol.web.console.context import CONSOLE, admin_of
from callcontrol.web.console.fundingops import (
    DEFAULT_THRESHOLD,
    TEST_CARD_NAMES,
    AutoRechargeChange,
    FundingOps,
    outcome_of,
    parse_method_id,
    required_method_id,
)
from callcontrol.web.console.render import page, partial

__all__ = ["routes"]

routes = web.RouteTableDef()

ATTEMPTS_SHOWN = 50
TEST_PREFIX = "test:"  # a buy form's method value that adds that test card first


def _ops(request: web.Request) -> FundingOps:
    return FundingOps(request.app[CONSOLE].services)


def _field(form: MultiMapping[Any], name: str, limit: int = 64) -> str:
    return str(form.get(name, ""))[:limit]


async def _methods_context(request: web.Request) -> dict[str, Any]:
    console = request.app[CONSOLE]
    funding = console.services.funding
    methods = await funding.methods()
    status = await funding.status()
    return {
        "methods": methods,
        "cards": [m for m in methods if m.kind == "card"],
        "auto": status.auto_recharge,
        "auto_method": status.method,
        "test_cards": TEST_CARD_NAMES,
        "provider": console.services.settings.payment_provider,
        "publishable_key": console.services.settings.stripe_publishable_key,
        "pricing": funding.pricing,
    }


# ---- the header panels -----------------------------------------------------------------


@routes.get("/funding/buy")
async def buy_form(request: web.Request) -> web.StreamResponse:
    return partial(request, "_buy.html", await _methods_context(request))


@routes.post("/funding/buy")
async def buy(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    ops = _ops(request)
    admin = admin_of(request)
    chosen = _field(form, "method")
    if chosen.startswith(TEST_PREFIX):
        method_id: int | None = (await ops.add_test_card(admin, chosen[len(TEST_PREFIX) :])).id
    else:
        method_id = parse_method_id(chosen)
    attempt = await ops.buy(admin, _field(form, "amount", 32), method_id)
    return partial(
        request,
        "_buy_result.html",
        {"attempt": attempt, "outcome": outcome_of(attempt), **await _methods_context(request)},
    )


@routes.get("/funding/auto-recharge")
async def auto_recharge_form(request: web.Request) -> web.StreamResponse:
    context = await _methods_context(request)
    return partial(
        request, "_autorecharge.html", {**context, "default_threshold": DEFAULT_THRESHOLD}
    )


@routes.post("/funding/auto-recharge")
async def auto_recharge(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    change = AutoRechargeChange(
        enabled=_field(form, "enabled") == "on",
        threshold=_field(form, "threshold", 32) or DEFAULT_THRESHOLD,
        amount=_field(form, "amount", 32),
        method_id=parse_method_id(_field(form, "method")),
        monthly_cap=_field(form, "monthly_cap", 32),
    )
    status = await _ops(request).auto_recharge(admin_of(request), change)
    return partial(request, "_autorecharge_result.html", {"status": status})


# ---- the Payments page -----------------------------------------------------------------


@routes.get("/payments")
async def payments_page(request: web.Request) -> web.StreamResponse:
    context = await _methods_context(request)
    attempts = await request.app[CONSOLE].services.funding.attempts(ATTEMPTS_SHOWN)
    return await page(
        request, "payments.html", {"title": "Payments", "attempts": attempts, **context}
    )


async def _methods_changed(request: web.Request, notice: str) -> web.StreamResponse:
    context = await _methods_context(request)
    return partial(request, "_methods_result.html", {"notice": notice, **context})


@routes.post("/payments/methods")
async def add_test_card(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    method = await _ops(request).add_test_card(admin_of(request), _field(form, "card"))
    return await _methods_changed(request, f"Saved {method.describe()} as #{method.id}.")


@routes.post("/payments/card-setup")
async def start_card_setup(request: web.Request) -> web.StreamResponse:
    form = await _ops(request).start_card_setup()
    return web.json_response(
        {"client_secret": form.client_secret, "publishable_key": form.publishable_key}
    )


@routes.post("/payments/card-setup/done")
async def card_setup_done(request: web.Request) -> web.StreamResponse:
    added = await _ops(request).cards_saved(admin_of(request))
    saved = ", ".join(f"{m.describe()} as #{m.id}" for m in added)
    notice = f"Saved {saved}." if added else "No new card at the provider yet."
    return await _methods_changed(request, notice)


@routes.post("/payments/methods/{id}/default")
async def make_default(request: web.Request) -> web.StreamResponse:
    method_id = required_method_id(request.match_info["id"])
    method = await _ops(request).set_default(admin_of(request), method_id)
    return await _methods_changed(request, f"{method.describe()} is now the default.")


@routes.post("/payments/methods/{id}/remove")
async def remove_method(request: web.Request) -> web.StreamResponse:
    method_id = required_method_id(request.match_info["id"])
    method = await _ops(request).remove_method(admin_of(request), method_id)
    return await _methods_changed(request, f"Removed {method.describe()}.")
