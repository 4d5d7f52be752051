"""The funding part of the OpenAPI document (fundingapi.py's routes): operations and schemas
in openapi.py's shapes, added to its tables there."""

from __future__ import annotations

from typing import Any

__all__ = ["FUNDING_OPERATIONS", "FUNDING_SCHEMAS"]

_S = {"type": "string"}
_I = {"type": "integer"}
_B = {"type": "boolean"}
_NULL_S = {"type": ["string", "null"]}
_NULL_I = {"type": ["integer", "null"]}
_CREDITS = {
    "type": "string",
    "description": "credits as text, exactly: 10, 2.5 (6 decimals at most)",
}
_ID = {"name": "id", "in": "path", "required": True, "schema": _I}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


FUNDING_SCHEMAS: dict[str, Any] = {
    "PaymentMethod": _obj(
        id=_I,
        kind={"enum": ["card", "bank_transfer"]},
        brand=_S,
        last4=_NULL_S,
        exp_month=_NULL_I,
        exp_year=_NULL_I,
        label=_S,
        is_default=_B,
        description=_S,
    ),
    "TestCard": {
        "type": "object",
        "required": ["card"],
        "properties": {
            "card": {
                "type": "string",
                "description": "offline provider only: visa, mastercard, declined, "
                "insufficient_funds, expired, authentication_required, timeout_after_charge",
            }
        },
    },
    "CardSetup": _obj(
        setup_id=_S,
        client_secret={
            "type": "string",
            "description": "for stripe.confirmCardSetup in the browser; not to be logged",
        },
        publishable_key={"type": "string", "description": "pk_...: for Stripe(...)"},
    ),
    "CardsAdded": _obj(added={"type": "array", "items": _ref("PaymentMethod")}),
    "PaymentAttempt": _obj(
        id={
            "type": "string",
            "description": "the attempt id: the provider's idempotency key "
            "and the ledger entry's reference",
        },
        kind={"enum": ["purchase", "auto_recharge"]},
        state={"enum": ["created", "unknown", "pending", "needs_customer", "succeeded", "failed"]},
        credits_micro=_I,
        amount_minor=_I,
        currency=_S,
        method_id=_NULL_I,
        provider=_S,
        provider_reference=_NULL_S,
        decline_code=_NULL_S,
        message=_S,
        ledger_entry_id=_NULL_I,
        created_at=_S,
        updated_at=_S,
    ),
    "Purchase": {
        "type": "object",
        "required": ["credits"],
        "properties": {
            "credits": _CREDITS,
            "method": {
                "type": "integer",
                "description": "a saved method's id; default: the default",
            },
        },
    },
    "PurchaseOutcome": _obj(
        attempt=_ref("PaymentAttempt"),
        outcome=_obj(
            kind={"enum": ["succeeded", "pending", "needs_customer", "declined", "unknown"]},
            message=_S,
        ),
    ),
    "AutoRecharge": _obj(
        enabled=_B,
        threshold_micro=_I,
        amount_micro=_I,
        method={"oneOf": [_ref("PaymentMethod"), {"type": "null"}]},
        monthly_cap_micro=_NULL_I,
        in_flight=_NULL_S,
        failures=_I,
        retry_at=_NULL_S,
        off_reason=_NULL_S,
    ),
    "AutoRechargeChange": {
        "type": "object",
        "required": ["enabled"],
        "properties": {
            "enabled": _B,
            "threshold": {**_CREDITS, "description": "below this available, recharge (default 2)"},
            "amount": {**_CREDITS, "description": "credits each recharge buys (required when on)"},
            "method": {"type": "integer", "description": "a saved card's id; default: the default"},
            "monthly_cap": _CREDITS,
        },
    },
}

# (method, path, summary, parameters, request schema, response schema or media type)
FUNDING_OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], str | None, str]] = [
    (
        "post",
        "/credits/buy",
        "Buy credits with a saved method (201 whatever the outcome: see outcome.kind)",
        [],
        "Purchase",
        "PurchaseOutcome",
    ),
    ("get", "/payments/methods", "Saved payment methods", [], None, "page:PaymentMethod"),
    (
        "post",
        "/payments/methods/test-card",
        "Save an offline test card by name (201)",
        [],
        "TestCard",
        "PaymentMethod",
    ),
    (
        "post",
        "/payments/card-setup",
        "Start saving a card with Stripe.js: a SetupIntent (201; 409 with the offline provider)",
        [],
        None,
        "CardSetup",
    ),
    (
        "post",
        "/payments/card-setup/complete",
        "Record the cards the provider lists that are not saved yet (after confirmCardSetup)",
        [],
        None,
        "CardsAdded",
    ),
    (
        "put",
        "/payments/methods/{id}/default",
        "Make a method the default",
        [_ID],
        None,
        "PaymentMethod",
    ),
    (
        "delete",
        "/payments/methods/{id}",
        "Remove a method (409 while auto-recharge pays with it)",
        [_ID],
        None,
        "object",
    ),
    (
        "get",
        "/payments/attempts",
        "Payment attempts, newest first",
        [{"name": "limit", "in": "query", "schema": _I}],
        None,
        "page:PaymentAttempt",
    ),
    ("get", "/auto-recharge", "Auto-recharge settings and state", [], None, "AutoRecharge"),
    (
        "put",
        "/auto-recharge",
        "Turn auto-recharge on (a card only) or off",
        [],
        "AutoRechargeChange",
        "AutoRecharge",
    ),
]
