"""The offline provider: every test card, idempotency, the charge whose answer is lost,
and its Stripe-style signed webhooks.

These also cover what localstripe cannot show for the Stripe adapter: localstripe ignores
idempotency keys (so "same key, same answer" and "same key, other amount" are shown here)
and has no card whose charge is applied while the answer is lost.
"""

from __future__ import annotations

import json

import pytest
import stripe

from callcontrol.errors import InvalidInput
from callcontrol.payments.errors import (
    IdempotencyConflict,
    PaymentConfigError,
    PaymentRejected,
    WebhookRejected,
)
from callcontrol.payments.offline import OfflineProvider
from callcontrol.payments.offline_state import OfflineState, SignedWebhook
from callcontrol.payments.port import (
    CheckoutRequest,
    Declined,
    NeedsCustomer,
    OffSessionCharge,
    PaymentMethod,
    PaymentMethodKind,
    PaymentProvider,
    Pending,
    Succeeded,
    Unknown,
)

SECRET = "whsec_offline_test"
NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state() -> OfflineState:
    return OfflineState()


@pytest.fixture
def provider(state: OfflineState, clock: Clock) -> OfflineProvider:
    return OfflineProvider(SECRET, state=state, clock=clock)


async def save_card(provider: OfflineProvider, card: str) -> tuple[str, PaymentMethod]:
    customer = await provider.ensure_customer("org-1", "Acme")
    setup = await provider.start_card_setup(customer, "setup-key")
    method = provider.complete_card_setup(setup.client_secret, card)
    provider.take_webhooks()  # setup_intent.succeeded: not what these tests look at
    return customer, method


def charge(
    customer: str, method: PaymentMethod, key: str = "k1", amount: int = 2000
) -> OffSessionCharge:
    return OffSessionCharge(
        customer, method.provider_ref, amount, "eur", "auto-recharge", key, {"purchase": "p1"}
    )


def event_types(provider: OfflineProvider) -> list[str]:
    return [provider.parse_webhook(w.body, w.headers).type for w in provider.take_webhooks()]


def test_the_offline_provider_is_a_payment_provider(provider: OfflineProvider) -> None:
    as_port: PaymentProvider = provider
    assert as_port.name == "offline"


@pytest.mark.parametrize("card", ["visa", "mastercard", "4242 4242 4242 4242", "5555555555554444"])
async def test_a_good_card_is_charged_once_and_the_payment_reads_back(
    provider: OfflineProvider, card: str
) -> None:
    customer, method = await save_card(provider, card)

    result = await provider.charge_off_session(charge(customer, method))

    assert isinstance(result, Succeeded)
    record = await provider.retrieve_payment(result.payment_id)
    assert (record.amount_minor, record.currency, record.customer_id) == (2000, "eur", customer)
    assert record.metadata == {"purchase": "p1"}
    assert record.status == result
    assert event_types(provider) == ["payment_intent.succeeded"]


@pytest.mark.parametrize(
    ("card", "code", "retryable", "hard"),
    [
        ("declined", "card_declined", True, False),
        ("insufficient_funds", "insufficient_funds", True, False),
        ("4000000000009995", "insufficient_funds", True, False),
        ("expired", "expired_card", False, True),
    ],
)
async def test_a_declining_card_answers_declined_with_its_code(
    provider: OfflineProvider, card: str, code: str, retryable: bool, hard: bool
) -> None:
    customer, method = await save_card(provider, card)

    result = await provider.charge_off_session(charge(customer, method))

    assert isinstance(result, Declined)
    assert (result.code, result.retryable, result.hard) == (code, retryable, hard)
    assert result.payment_id is not None
    assert (await provider.retrieve_payment(result.payment_id)).status == result
    assert event_types(provider) == ["payment_intent.payment_failed"]


async def test_a_card_needing_authentication_needs_the_customer_off_session(
    provider: OfflineProvider,
) -> None:
    customer, method = await save_card(provider, "authentication_required")

    result = await provider.charge_off_session(charge(customer, method))

    assert isinstance(result, NeedsCustomer)
    assert result.reason == "authentication_required"
    assert result.client_secret and result.redirect_url
    assert result.client_secret not in repr(result)
    # The customer can complete it on-session (in the browser): then it is paid.
    assert provider.complete_checkout(result.client_secret, "authentication_required") == (
        Succeeded(result.payment_id)
    )


async def test_a_charge_applied_whose_answer_is_lost_is_answered_by_the_same_key(
    provider: OfflineProvider, state: OfflineState
) -> None:
    customer, method = await save_card(provider, "timeout_after_charge")

    first = await provider.charge_off_session(charge(customer, method, key="recharge-7"))
    again = await provider.charge_off_session(charge(customer, method, key="recharge-7"))

    assert isinstance(first, Unknown)
    assert isinstance(again, Succeeded)
    assert [p.payment_id for p in state.payments.values()] == [again.payment_id]
    assert event_types(provider) == ["payment_intent.succeeded"]


async def test_the_same_key_answers_the_first_outcome_and_never_charges_twice(
    provider: OfflineProvider, state: OfflineState
) -> None:
    customer, good = await save_card(provider, "visa")

    first = await provider.charge_off_session(charge(customer, good, key="same"))
    second = await provider.charge_off_session(charge(customer, good, key="same"))

    assert first == second
    assert len(state.payments) == 1


async def test_a_decline_is_replayed_by_its_key_too(
    provider: OfflineProvider, state: OfflineState
) -> None:
    customer, card = await save_card(provider, "declined")

    first = await provider.charge_off_session(charge(customer, card, key="d"))
    second = await provider.charge_off_session(charge(customer, card, key="d"))

    assert isinstance(first, Declined)
    assert first == second
    assert len(state.payments) == 1


async def test_a_key_reused_for_another_amount_or_operation_is_refused(
    provider: OfflineProvider,
) -> None:
    customer, method = await save_card(provider, "visa")
    await provider.charge_off_session(charge(customer, method, key="k", amount=2000))

    with pytest.raises(IdempotencyConflict, match="'k'"):
        await provider.charge_off_session(charge(customer, method, key="k", amount=2001))
    with pytest.raises(IdempotencyConflict):
        await provider.start_checkout(CheckoutRequest(customer, 2000, "eur", "credits", "k"))


@pytest.mark.parametrize("typed", ["4929 1234 5678 9012", "5105-1051-0510-5100"])
async def test_a_number_that_is_not_a_test_card_is_refused_and_not_echoed(
    provider: OfflineProvider, typed: str
) -> None:
    customer = await provider.ensure_customer("org-1", "Acme")
    setup = await provider.start_card_setup(customer, "s")

    with pytest.raises(InvalidInput) as refused:
        provider.complete_card_setup(setup.client_secret, typed)

    digits = typed.replace(" ", "").replace("-", "")
    assert digits[-8:] not in str(refused.value)
    assert "never takes a real card number" in str(refused.value)


async def test_a_saved_card_keeps_brand_last_four_and_expiry_only(
    provider: OfflineProvider, state: OfflineState
) -> None:
    customer, method = await save_card(provider, "4242424242424242")

    assert (method.kind, method.brand, method.last4) == ("card", "visa", "4242")
    assert method.exp_month is not None and method.exp_year is not None
    assert await provider.list_payment_methods(customer) == [method]
    assert "4242424242424242" not in repr(state)


async def test_setup_is_idempotent_by_key_and_completing_twice_saves_one_card(
    provider: OfflineProvider,
) -> None:
    customer = await provider.ensure_customer("org-1", "Acme")
    assert await provider.ensure_customer("org-1", "Acme") == customer

    setup = await provider.start_card_setup(customer, "s1")
    assert await provider.start_card_setup(customer, "s1") == setup
    assert setup.redirect_url is not None and setup.redirect_url.endswith(setup.client_secret)

    first = provider.complete_card_setup(setup.client_secret, "visa")
    assert provider.complete_card_setup(setup.client_secret, "mastercard") == first
    assert await provider.list_payment_methods(customer) == [first]
    assert event_types(provider) == ["setup_intent.succeeded"]


async def test_a_detached_card_is_not_listed_and_cannot_be_charged(
    provider: OfflineProvider,
) -> None:
    customer, method = await save_card(provider, "visa")

    await provider.detach_payment_method(method.provider_ref)

    assert await provider.list_payment_methods(customer) == []
    with pytest.raises(PaymentRejected, match="not saved"):
        await provider.charge_off_session(charge(customer, method))


async def test_a_bank_transfer_is_never_charged_off_session(provider: OfflineProvider) -> None:
    customer, method = await save_card(provider, "bank_transfer")

    assert method.kind == "bank_transfer"
    with pytest.raises(PaymentRejected, match="only a card"):
        await provider.charge_off_session(charge(customer, method))


async def test_a_checkout_paid_by_card_succeeds_once(provider: OfflineProvider) -> None:
    customer = await provider.ensure_customer("org-1", "Acme")
    request = CheckoutRequest(customer, 5000, "eur", "50 credits", "buy-1", {"purchase": "b1"})

    checkout = await provider.start_checkout(request)
    assert await provider.start_checkout(request) == checkout
    waiting = (await provider.retrieve_payment(checkout.payment_id)).status
    assert isinstance(waiting, NeedsCustomer) and waiting.reason == "awaiting_payment"

    declined = provider.complete_checkout(checkout.client_secret, "declined")
    paid = provider.complete_checkout(checkout.client_secret, "visa")

    assert isinstance(declined, Declined)
    assert paid == Succeeded(checkout.payment_id)
    assert provider.complete_checkout(checkout.client_secret, "visa") == paid
    assert event_types(provider) == ["payment_intent.payment_failed", "payment_intent.succeeded"]


async def test_a_checkout_paid_by_bank_transfer_is_pending_until_the_money_arrives(
    provider: OfflineProvider,
) -> None:
    customer = await provider.ensure_customer("org-1", "Acme")
    card_only = await provider.start_checkout(CheckoutRequest(customer, 5000, "eur", "c", "b1"))
    kinds: frozenset[PaymentMethodKind] = frozenset({"card", "bank_transfer"})
    request = CheckoutRequest(customer, 5000, "eur", "c", "b2", {}, kinds)
    both = await provider.start_checkout(request)

    with pytest.raises(PaymentRejected, match="does not accept bank_transfer"):
        provider.complete_checkout(card_only.client_secret, "bank_transfer")
    pending = provider.complete_checkout(both.client_secret, "bank_transfer")
    assert event_types(provider) == []
    arrived = provider.receive_bank_transfer(both.payment_id)

    assert isinstance(pending, Pending)
    assert arrived == Succeeded(both.payment_id)
    assert event_types(provider) == ["payment_intent.succeeded"]


@pytest.mark.parametrize(
    ("amount", "currency"), [(0, "eur"), (-5, "eur"), (True, "eur"), (12.5, "eur"), (100, "EUR")]
)
def test_amounts_are_positive_integers_of_minor_units(amount: object, currency: str) -> None:
    with pytest.raises(InvalidInput):
        OffSessionCharge("cus", "pm", amount, currency, "d", "k")  # type: ignore[arg-type]


def test_the_provider_needs_a_webhook_secret() -> None:
    with pytest.raises(PaymentConfigError, match="signing secret"):
        OfflineProvider("  ")


async def sent_webhook(provider: OfflineProvider) -> SignedWebhook:
    customer, method = await save_card(provider, "visa")
    await provider.charge_off_session(charge(customer, method))
    (webhook,) = provider.take_webhooks()
    return webhook


async def test_a_signed_webhook_is_verified_and_read(provider: OfflineProvider) -> None:
    webhook = await sent_webhook(provider)
    lower_case = {name.lower(): value for name, value in webhook.headers.items()}

    event = provider.parse_webhook(webhook.body, lower_case)

    assert (event.type, event.object_type) == ("payment_intent.succeeded", "payment_intent")
    assert event.metadata == {"purchase": "p1"}
    assert event.created == NOW


async def test_stripe_s_own_verifier_accepts_the_offline_signature(
    provider: OfflineProvider,
) -> None:
    webhook = await sent_webhook(provider)
    header = webhook.headers["Stripe-Signature"]

    stripe.WebhookSignature.verify_header(webhook.body, header, SECRET, tolerance=None)


async def test_a_tampered_body_is_rejected(provider: OfflineProvider) -> None:
    webhook = await sent_webhook(provider)
    event = json.loads(webhook.body)
    event["type"] = "payment_intent.payment_failed"

    with pytest.raises(WebhookRejected, match="does not match"):
        provider.parse_webhook(json.dumps(event).encode(), webhook.headers)


async def test_a_webhook_signed_with_another_secret_is_rejected(
    provider: OfflineProvider, clock: Clock
) -> None:
    other = OfflineProvider("whsec_someone_else", clock=clock)
    webhook = await sent_webhook(other)

    with pytest.raises(WebhookRejected, match="does not match"):
        provider.parse_webhook(webhook.body, webhook.headers)


async def test_an_old_webhook_is_rejected_as_a_replay(
    provider: OfflineProvider, clock: Clock
) -> None:
    webhook = await sent_webhook(provider)
    clock.now += 301

    with pytest.raises(WebhookRejected, match="beyond the 300 s tolerance"):
        provider.parse_webhook(webhook.body, webhook.headers)


@pytest.mark.parametrize("header", [None, "", "t=abc,v1=00", "v1=00"])
async def test_a_missing_or_malformed_signature_is_rejected(
    provider: OfflineProvider, header: str | None
) -> None:
    webhook = await sent_webhook(provider)
    headers = {} if header is None else {"Stripe-Signature": header}

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(webhook.body, headers)
