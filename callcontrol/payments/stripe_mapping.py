"""Stripe's objects and errors read into the port's types (pure: no I/O).

- A PaymentIntent's status becomes a ``PaymentStatus``: ``requires_action`` (3-D Secure)
  is ``NeedsCustomer``; ``requires_payment_method`` after a failed attempt is the decline
  of ``last_payment_error``, before any attempt a checkout waiting for its customer.
- A ``CardError`` (HTTP 402) becomes ``Declined`` by its ``decline_code`` (else its
  ``code``), or ``NeedsCustomer`` for ``authentication_required``: off-session, Stripe
  answers a card that needs 3-D Secure with that error and the PaymentIntent inside it.
- Other errors become the project's ``PaymentError`` subclasses, with Stripe's message
  (which holds no secret) but never the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import stripe

from callcontrol.payments.declines import AUTHENTICATION_REQUIRED, declined
from callcontrol.payments.errors import (
    IdempotencyConflict,
    PaymentConfigError,
    PaymentRejected,
    PaymentUnavailable,
)
from callcontrol.payments.port import (
    Declined,
    NeedsCustomer,
    PaymentMethod,
    PaymentStatus,
    Pending,
    Succeeded,
)

__all__ = [
    "card_error_result",
    "intent_status",
    "payment_method",
    "plain_metadata",
    "raise_payment_error",
]

_DECLINED = "The card was declined."


def plain_metadata(metadata: object) -> dict[str, str]:
    """Stripe's metadata (a StripeObject, which is no dict, or None) as a dict of strings."""
    if isinstance(metadata, stripe.StripeObject):
        metadata = metadata.to_dict()
    if not isinstance(metadata, Mapping):
        return {}
    return {str(key): str(value) for key, value in metadata.items()}


def intent_status(intent: stripe.PaymentIntent) -> PaymentStatus:
    secret = intent.client_secret or ""
    if intent.status == "succeeded":
        return Succeeded(intent.id)
    if intent.status == "requires_action":
        return NeedsCustomer(intent.id, "authentication_required", secret)
    if intent.status == "requires_payment_method":
        error = intent.last_payment_error
        if error is None:
            return NeedsCustomer(intent.id, "awaiting_payment", secret)
        code = error.decline_code or error.code or "card_declined"
        if code in AUTHENTICATION_REQUIRED:
            return NeedsCustomer(intent.id, "authentication_required", secret)
        return declined(code, error.message or _DECLINED, intent.id)
    if intent.status == "canceled":
        reason = getattr(intent, "cancellation_reason", None) or "canceled"
        return Declined("canceled", f"the payment was canceled ({reason})", False, False, intent.id)
    return Pending(intent.id, intent.status)


def card_error_result(exc: stripe.CardError) -> Declined | NeedsCustomer:
    error = exc.error
    intent = error.payment_intent if error is not None else None
    decline_code = error.decline_code if error is not None else None
    code = decline_code or exc.code or "card_declined"
    message = exc.user_message or _DECLINED
    if code in AUTHENTICATION_REQUIRED or exc.code in AUTHENTICATION_REQUIRED:
        if intent is not None and intent.client_secret:
            return NeedsCustomer(intent.id, "authentication_required", intent.client_secret)
        return Declined(
            "authentication_required", message, retryable=False, hard=True, payment_id=None
        )
    return declined(code, message, intent.id if intent is not None else None)


def payment_method(method: stripe.PaymentMethod) -> PaymentMethod | None:
    """A saved card, or None for a method that is not a card (never listed, never charged)."""
    card = method.card
    if method.type != "card" or card is None:
        return None
    return PaymentMethod(method.id, "card", card.brand, card.last4, card.exp_month, card.exp_year)


def raise_payment_error(exc: stripe.StripeError, doing: str) -> NoReturn:
    """Raise the project's error for a Stripe error met while ``doing`` something."""
    message = exc.user_message or type(exc).__name__
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        raise PaymentConfigError(
            f"Stripe refused the API key while {doing} (check the Stripe API key setting)"
        ) from exc
    if isinstance(exc, stripe.IdempotencyError):
        raise IdempotencyConflict(f"Stripe refused {doing}: {message}") from exc
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        raise PaymentUnavailable(f"Stripe could not be reached while {doing}: {message}") from exc
    raise PaymentRejected(f"Stripe refused {doing}: {message}") from exc
