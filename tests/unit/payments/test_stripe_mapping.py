"""Reading Stripe's answers: the SDK's own objects and errors, built from response bodies
shaped like Stripe's (not mocks), into the port's results and the project's errors.

This is where Stripe's 402 ``authentication_required`` for an off-session charge is shown
(localstripe answers a PaymentIntent in ``requires_action`` instead; see the integration
tests).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from callcontrol.payments.errors import (
    IdempotencyConflict,
    PaymentConfigError,
    PaymentRejected,
    PaymentUnavailable,
)
from callcontrol.payments.port import (
    Declined,
    NeedsCustomer,
    Pending,
    Succeeded,
)
from callcontrol.payments.stripe_mapping import (
    card_error_result,
    intent_status,
    payment_method,
    raise_payment_error,
)
from callcontrol.payments.stripe_provider import StripeSettings


def card_error(code: str, decline_code: str | None = None, intent: Any = None) -> stripe.CardError:
    error = {"type": "card_error", "code": code, "decline_code": decline_code, "message": "No."}
    if intent is not None:
        error["payment_intent"] = intent
    body = {"error": error}
    return stripe.CardError("No.", None, code, json.dumps(body), 402, body)


def intent(status: str, **fields: Any) -> stripe.PaymentIntent:
    values = {"id": "pi_1", "object": "payment_intent", "status": status}
    values |= {"client_secret": "pi_1_secret_s", "last_payment_error": None} | fields
    return stripe.PaymentIntent.construct_from(values, "sk_test_x")


def test_an_off_session_charge_needing_authentication_needs_the_customer() -> None:
    pending = {"id": "pi_9", "object": "payment_intent", "client_secret": "pi_9_secret_z"}
    exc = card_error("authentication_required", "authentication_required", pending)

    assert card_error_result(exc) == NeedsCustomer(
        "pi_9", "authentication_required", "pi_9_secret_z"
    )


def test_authentication_required_without_a_payment_intent_is_a_hard_decline() -> None:
    result = card_error_result(card_error("authentication_required"))

    assert isinstance(result, Declined)
    assert (result.code, result.retryable, result.hard) == ("authentication_required", False, True)


@pytest.mark.parametrize(
    ("code", "decline_code", "retryable", "hard"),
    [
        ("card_declined", "insufficient_funds", True, False),
        ("card_declined", "generic_decline", True, False),
        ("card_declined", None, True, False),
        ("card_declined", "lost_card", False, True),
        ("card_declined", "stolen_card", False, True),
        ("card_declined", "do_not_honor", False, True),
        ("card_declined", "do_not_try_again", False, True),
        ("expired_card", None, False, True),
        ("card_declined", "something_new", False, False),
    ],
)
def test_decline_codes_are_soft_or_hard(
    code: str, decline_code: str | None, retryable: bool, hard: bool
) -> None:
    pending = {"id": "pi_3", "object": "payment_intent"}
    result = card_error_result(card_error(code, decline_code, pending))

    assert isinstance(result, Declined)
    assert (result.code, result.retryable, result.hard) == (
        decline_code or code,
        retryable,
        hard,
    )
    assert result.payment_id == "pi_3"


def test_payment_intent_statuses_read_as_results() -> None:
    error = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Funds."}

    assert intent_status(intent("succeeded")) == Succeeded("pi_1")
    assert intent_status(intent("processing")) == Pending("pi_1", "processing")
    assert intent_status(intent("requires_action")) == NeedsCustomer(
        "pi_1", "authentication_required", "pi_1_secret_s"
    )
    assert intent_status(intent("requires_payment_method")) == NeedsCustomer(
        "pi_1", "awaiting_payment", "pi_1_secret_s"
    )
    assert intent_status(intent("requires_payment_method", last_payment_error=error)) == Declined(
        "insufficient_funds", "Funds.", retryable=True, hard=False, payment_id="pi_1"
    )
    canceled = intent_status(intent("canceled", cancellation_reason="abandoned"))
    assert isinstance(canceled, Declined) and "abandoned" in canceled.message


def test_only_cards_are_read_as_saved_methods() -> None:
    card = {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2031}
    as_card = stripe.PaymentMethod.construct_from(
        {"id": "pm_1", "object": "payment_method", "type": "card", "card": card}, "sk_test_x"
    )
    other = stripe.PaymentMethod.construct_from(
        {"id": "pm_2", "object": "payment_method", "type": "sepa_debit", "card": None}, "sk_test_x"
    )

    method = payment_method(as_card)
    assert method is not None
    assert (method.kind, method.brand, method.last4, method.exp_year) == (
        "card",
        "visa",
        "4242",
        2031,
    )
    assert payment_method(other) is None


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (
            stripe.AuthenticationError("Invalid API Key provided: sk_test_****abcd"),
            PaymentConfigError,
        ),
        (stripe.PermissionError("restricted key"), PaymentConfigError),
        (
            stripe.IdempotencyError("Keys for idempotent requests can only be used..."),
            IdempotencyConflict,
        ),
        (stripe.APIConnectionError("timed out"), PaymentUnavailable),
        (stripe.RateLimitError("slow down"), PaymentUnavailable),
        (stripe.APIError("oops"), PaymentUnavailable),
        (stripe.InvalidRequestError("No such customer: 'cus_x'", "customer"), PaymentRejected),
    ],
)
def test_stripe_errors_become_project_errors(
    exc: stripe.StripeError, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        raise_payment_error(exc, "doing it")

    assert "sk_test" not in str(raised.value)


def test_settings_refuse_a_publishable_key_and_hide_secrets() -> None:
    with pytest.raises(PaymentConfigError, match="secret"):
        StripeSettings("pk_test_123", "whsec_1")
    with pytest.raises(PaymentConfigError, match="webhook"):
        StripeSettings("sk_test_123", " ")

    shown = repr(StripeSettings("sk_test_123", "whsec_1"))
    assert "sk_test_123" not in shown and "whsec_1" not in shown
