"""The JSON API of funding under /api/v1: buying credits, payment methods, auto-recharge,
payment attempts (what the header panels and the Payments page do, fundingpages.py).

Amounts sent are credits as text, exactly as the CLI takes them (``"10"``, ``"2.5"``);
amounts answered are micro-credits and minor currency units (integers). A purchase
answers 201 with the attempt and its outcome whatever the bank said: a decline is an
outcome (``outcome.kind``: succeeded, pending, needs_customer, declined, unknown), not
an error. Refusals are the error tree's (errors.py): 400 invalid_input, 404 not_found,
409 conflict (a method auto-recharge pays with; a card form with the offline provider),
503 (the provider is not configured). Saving a card with Stripe: ``card-setup`` answers
what Stripe.js needs (the SetupIntent's client secret, the publishable key); once the
browser confirmed it, ``card-setup/complete`` records the cards Stripe now lists.
Documented in fundingdoc.py, part of the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callcontrol.billing.funding import FundingStatus
from callcontrol.domain.funding import Attempt, StoredMethod
from callcontrol.errors import InvalidInput
from callcontrol.web.console.context import CONSOLE, admin_of
from callcontrol.web.console.forms import json_body, optional_int, text_field
from callcontrol.web.console.fundingops import (
    DEFAULT_THRESHOLD,
    AutoRechargeChange,
    CardForm,
    FundingOps,
    outcome_of,
    parse_method_id,
    required_method_id,
)

__all__ = ["routes"]

routes = web.RouteTableDef()
API = "/api/v1"


def method_json(m: StoredMethod) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind,
        "brand": m.brand,
        "last4": m.last4 or None,
        "exp_month": m.exp_month,
        "exp_year": m.exp_year,
        "label": m.label,
        "is_default": m.is_default,
        "description": m.describe(),
    }


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "state": a.state,
        "credits_micro": a.credits_micro,
        "amount_minor": a.amount_minor,
        "currency": a.currency,
        "method_id": a.method_id,
        "provider": a.provider,
        "provider_reference": a.provider_payment_id,
        "decline_code": a.decline_code,
        "message": a.message,
        "ledger_entry_id": a.ledger_entry_id,
        "created_at": a.created_at.isoformat(),
        "updated_at": a.updated_at.isoformat(),
    }


def auto_recharge_json(status: FundingStatus) -> dict[str, Any]:
    auto = status.auto_recharge
    return {
        "enabled": auto.enabled,
        "threshold_micro": auto.threshold_micro,
        "amount_micro": auto.amount_micro,
        "method": None if status.method is None else method_json(status.method),
        "monthly_cap_micro": auto.monthly_cap_micro,
        "in_flight": auto.in_flight,
        "failures": auto.failures,
        "retry_at": None if auto.retry_at is None else auto.retry_at.isoformat(),
        "off_reason": auto.off_reason,
    }


def _ops(request: web.Request) -> FundingOps:
    return FundingOps(request.app[CONSOLE].services)


def _amount(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    """An amount of credits: text (``"10.5"``); a whole JSON number is taken too."""
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text_field(body, name, required=required, limit=32)


@routes.post(f"{API}/credits/buy")
async def buy(request: web.Request) -> web.Response:
    body = await json_body(request)
    attempt = await _ops(request).buy(
        admin_of(request), _amount(body, "credits"), parse_method_id(body.get("method"))
    )
    outcome = outcome_of(attempt)
    return web.json_response(
        {
            "attempt": attempt_json(attempt),
            "outcome": {"kind": outcome.kind, "message": outcome.message},
        },
        status=201,
    )


@routes.get(f"{API}/payments/methods")
async def list_methods(request: web.Request) -> web.Response:
    methods = await request.app[CONSOLE].services.funding.methods()
    return web.json_response({"items": [method_json(m) for m in methods], "next": None})


@routes.post(f"{API}/payments/methods/test-card")
async def add_test_card(request: web.Request) -> web.Response:
    body = await json_body(request)
    method = await _ops(request).add_test_card(
        admin_of(request), text_field(body, "card", limit=32)
    )
    return web.json_response(method_json(method), status=201)


async def no_body(request: web.Request) -> None:
    """A request that takes nothing: no body, or an empty JSON object."""
    if request.can_read_body and (body := await json_body(request)):
        raise InvalidInput(f"this request takes no fields, got {', '.join(sorted(body))[:80]}")


def card_form_json(form: CardForm) -> dict[str, Any]:
    return {
        "setup_id": form.setup_id,
        "client_secret": form.client_secret,
        "publishable_key": form.publishable_key,
    }


@routes.post(f"{API}/payments/card-setup")
async def start_card_setup(request: web.Request) -> web.Response:
    await no_body(request)
    return web.json_response(card_form_json(await _ops(request).start_card_setup()), status=201)


@routes.post(f"{API}/payments/card-setup/complete")
async def card_setup_complete(request: web.Request) -> web.Response:
    await no_body(request)
    added = await _ops(request).cards_saved(admin_of(request))
    return web.json_response({"added": [method_json(m) for m in added]})


@routes.put(API + "/payments/methods/{id}/default")
async def make_default(request: web.Request) -> web.Response:
    method_id = required_method_id(request.match_info["id"])
    method = await _ops(request).set_default(admin_of(request), method_id)
    return web.json_response(method_json(method))


@routes.delete(API + "/payments/methods/{id}")
async def remove_method(request: web.Request) -> web.Response:
    method_id = required_method_id(request.match_info["id"])
    method = await _ops(request).remove_method(admin_of(request), method_id)
    return web.json_response({"removed": method_json(method)})


@routes.get(f"{API}/payments/attempts")
async def attempts(request: web.Request) -> web.Response:
    limit = optional_int(request.query, "limit", default=50, low=1, high=500)
    found = await request.app[CONSOLE].services.funding.attempts(limit or 50)
    return web.json_response({"items": [attempt_json(a) for a in found], "next": None})


@routes.get(f"{API}/auto-recharge")
async def get_auto_recharge(request: web.Request) -> web.Response:
    status = await request.app[CONSOLE].services.funding.status()
    return web.json_response(auto_recharge_json(status))


@routes.put(f"{API}/auto-recharge")
async def put_auto_recharge(request: web.Request) -> web.Response:
    body = await json_body(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false")
    change = AutoRechargeChange(
        enabled=enabled,
        threshold=_amount(body, "threshold", required=False) or DEFAULT_THRESHOLD,
        amount=_amount(body, "amount", required=enabled),
        method_id=parse_method_id(body.get("method")),
        monthly_cap=_amount(body, "monthly_cap", required=False),
    )
    status = await _ops(request).auto_recharge(admin_of(request), change)
    return web.json_response(auto_recharge_json(status))
