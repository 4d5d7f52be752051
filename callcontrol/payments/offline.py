"""The offline payment provider: ``./dev run`` and the tests, no network, no real money.

It behaves like Stripe where billing can tell the difference: idempotency keys (the same
key answers the first outcome; the same key with other parameters is refused), decline
codes, 3-D Secure on off-session charges, a charge applied whose answer is lost
(``timeout_after_charge``), Stripe-style signed webhooks. Cards are test cards only
(``offline_cards``). What a browser would do at Stripe is done by ``complete_card_setup``,
``complete_checkout`` and ``receive_bank_transfer``. Webhooks it would send wait in
``take_webhooks()``; its memory is one ``OfflineState`` (see there for persistence).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping

from callcontrol.payments.declines import declined
from callcontrol.payments.errors import (
    IdempotencyConflict,
    PaymentConfigError,
    PaymentRejected,
    WebhookRejected,
)
from callcontrol.payments.offline_cards import TestCard, find_test_card
from callcontrol.payments.offline_state import (
    OfflineCustomer,
    OfflinePayment,
    OfflineSetup,
    OfflineState,
    OfflineStoredMethod,
    Replay,
    SignedWebhook,
)
from callcontrol.payments.port import (
    CardSetup,
    ChargeResult,
    Checkout,
    CheckoutRequest,
    Declined,
    NeedsCustomer,
    OffSessionCharge,
    PaymentMethod,
    PaymentMethodKind,
    PaymentRecord,
    PaymentStatus,
    Pending,
    Succeeded,
    Unknown,
    WebhookEvent,
)
from callcontrol.payments.webhook_signature import SIGNATURE_HEADER, header_value, sign, verify

__all__ = ["OfflineProvider"]

log = logging.getLogger(__name__)

_DECLINES = {
    "decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("insufficient_funds", "Your card has insufficient funds."),
    "expired": ("expired_card", "Your card has expired."),
}


class OfflineProvider:
    """A ``PaymentProvider`` in memory, with test cards and self-signed webhooks."""

    def __init__(
        self,
        webhook_secret: str,
        *,
        state: OfflineState | None = None,
        pages_url: str = "/payments/offline",
        webhook_tolerance: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not webhook_secret.strip():
            raise PaymentConfigError("the offline payment provider needs a webhook signing secret")
        self._secret = webhook_secret
        self._state = state if state is not None else OfflineState()
        self._pages_url = pages_url.rstrip("/")
        self._tolerance = webhook_tolerance
        self._clock = clock

    @property
    def name(self) -> str:
        return "offline"

    async def ensure_customer(self, org_id: str, name: str) -> str:
        for customer in self._state.customers.values():
            if customer.org_id == org_id:
                return customer.customer_id
        customer_id = self._state.new_id("cus")
        self._state.customers[customer_id] = OfflineCustomer(customer_id, org_id, name)
        return customer_id

    async def start_card_setup(self, customer_id: str, idempotency_key: str) -> CardSetup:
        fingerprint = ("setup", customer_id)
        replay = self._replay(idempotency_key, fingerprint)
        if isinstance(replay, CardSetup):
            return replay
        self._customer(customer_id)
        token = secrets.token_urlsafe(16)
        setup = CardSetup(self._state.new_id("seti"), token, f"{self._pages_url}/setup/{token}")
        self._state.setups[token] = OfflineSetup(setup, customer_id)
        self._state.replays[idempotency_key] = Replay(fingerprint, setup)
        return setup

    def complete_card_setup(self, client_secret: str, card: str) -> PaymentMethod:
        """What the browser does: save a test card (by name or test number) on the setup."""
        setup = self._state.setups.get(client_secret)
        if setup is None:
            raise PaymentRejected("no such card setup at the offline provider")
        if setup.method_ref is not None:
            return self._state.methods[setup.method_ref].method
        test_card = find_test_card(card)
        ref = self._state.new_id("pm")
        method = test_card.saved_as(ref)
        self._state.methods[ref] = OfflineStoredMethod(method, setup.customer_id, test_card.name)
        setup.method_ref = ref
        self._emit("setup_intent.succeeded", "setup_intent", setup.setup.setup_id, {})
        return method

    async def list_payment_methods(self, customer_id: str) -> list[PaymentMethod]:
        self._customer(customer_id)
        return [
            stored.method
            for stored in self._state.methods.values()
            if stored.customer_id == customer_id and stored.attached
        ]

    async def detach_payment_method(self, provider_ref: str) -> None:
        self._method(provider_ref).attached = False

    async def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        fingerprint = (
            "charge",
            charge.customer_id,
            charge.payment_method_ref,
            charge.amount_minor,
            charge.currency,
            charge.description,
            tuple(sorted(charge.metadata.items())),
        )
        replay = self._replay(charge.idempotency_key, fingerprint)
        if isinstance(replay, Succeeded | Declined | NeedsCustomer | Unknown):
            return replay
        stored = self._method(charge.payment_method_ref)
        if not stored.attached or stored.customer_id != charge.customer_id:
            raise PaymentRejected(
                f"payment method {charge.payment_method_ref} is not saved for customer "
                f"{charge.customer_id}"
            )
        if stored.method.kind != "card":
            raise PaymentRejected("only a card can be charged off-session")
        payment = self._new_payment(
            charge.customer_id,
            charge.amount_minor,
            charge.currency,
            charge.description,
            charge.metadata,
            frozenset({"card"}),
        )
        card = find_test_card(stored.test_card)
        result = self._pay(payment, card, off_session=True)
        self._state.replays[charge.idempotency_key] = Replay(fingerprint, result)
        log.info("offline off-session charge %s: %s", payment.payment_id, type(result).__name__)
        if card.behaviour == "timeout_after_charge":
            return Unknown("no answer in time (offline test card: the charge was applied)")
        return result

    async def start_checkout(self, request: CheckoutRequest) -> Checkout:
        fingerprint = (
            "checkout",
            request.customer_id,
            request.amount_minor,
            request.currency,
            request.description,
            tuple(sorted(request.metadata.items())),
            tuple(sorted(request.kinds)),
        )
        replay = self._replay(request.idempotency_key, fingerprint)
        if isinstance(replay, Checkout):
            return replay
        self._customer(request.customer_id)
        payment = self._new_payment(
            request.customer_id,
            request.amount_minor,
            request.currency,
            request.description,
            request.metadata,
            request.kinds,
        )
        checkout = Checkout(payment.payment_id, payment.client_secret, self._checkout_url(payment))
        self._state.replays[request.idempotency_key] = Replay(fingerprint, checkout)
        return checkout

    def complete_checkout(self, client_secret: str, card: str) -> PaymentStatus:
        """What the browser does: pay a checkout with a test card (or ``bank_transfer``)."""
        payment = next(
            (p for p in self._state.payments.values() if p.client_secret == client_secret), None
        )
        if payment is None:
            raise PaymentRejected("no such checkout at the offline provider")
        if isinstance(payment.status, Succeeded | Pending):
            return payment.status
        test_card = find_test_card(card)
        if test_card.kind not in payment.kinds:
            raise PaymentRejected(f"this checkout does not accept {test_card.kind}")
        if test_card.kind == "bank_transfer":
            payment.status = Pending(payment.payment_id, "awaiting_bank_transfer")
            return payment.status
        return self._pay(payment, test_card, off_session=False)

    def receive_bank_transfer(self, payment_id: str) -> PaymentStatus:
        """The bank transfer for a checkout arrives."""
        payment = self._payment(payment_id)
        if isinstance(payment.status, Pending):
            payment.status = Succeeded(payment_id)
            self._emit_payment("payment_intent.succeeded", payment)
        return payment.status

    async def retrieve_payment(self, payment_id: str) -> PaymentRecord:
        payment = self._payment(payment_id)
        return PaymentRecord(
            payment.payment_id,
            payment.customer_id,
            payment.amount_minor,
            payment.currency,
            dict(payment.metadata),
            payment.status,
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        header = header_value(headers, SIGNATURE_HEADER)
        verify(body, header, self._secret, self._tolerance, int(self._clock()))
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            return WebhookEvent(
                str(event["id"]),
                str(event["type"]),
                str(obj["object"]),
                str(obj["id"]),
                int(event["created"]),
                {str(k): str(v) for k, v in obj.get("metadata", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookRejected("the webhook's body is not an event") from exc

    def take_webhooks(self) -> list[SignedWebhook]:
        """The webhooks sent since the last call, oldest first, as raw body + headers."""
        sent = list(self._state.outbox)
        self._state.outbox.clear()
        return sent

    async def close(self) -> None:
        return None

    # -- internals ------------------------------------------------------------------------

    def _replay(
        self, key: str, fingerprint: tuple[object, ...]
    ) -> ChargeResult | Checkout | CardSetup | None:
        replay = self._state.replays.get(key)
        if replay is None:
            return None
        if replay.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was used before for a different request"
            )
        return replay.answer

    def _pay(
        self, payment: OfflinePayment, card: TestCard, *, off_session: bool
    ) -> Succeeded | Declined | NeedsCustomer:
        pid = payment.payment_id
        result: Succeeded | Declined | NeedsCustomer
        if card.behaviour in _DECLINES:
            result = declined(*_DECLINES[card.behaviour], payment_id=pid)
        elif card.behaviour == "authentication_required" and off_session:
            url = self._checkout_url(payment)
            result = NeedsCustomer(pid, "authentication_required", payment.client_secret, url)
        else:
            result = Succeeded(pid)
        payment.status = result
        succeeded = isinstance(result, Succeeded)
        event = "payment_intent.succeeded" if succeeded else "payment_intent.payment_failed"
        self._emit_payment(event, payment)
        return result

    def _new_payment(
        self,
        customer_id: str,
        amount_minor: int,
        currency: str,
        description: str,
        metadata: Mapping[str, str],
        kinds: frozenset[PaymentMethodKind],
    ) -> OfflinePayment:
        payment_id = self._state.new_id("pi")
        secret = f"{payment_id}_secret_{secrets.token_urlsafe(12)}"
        status = NeedsCustomer(payment_id, "awaiting_payment", secret)
        payment = OfflinePayment(
            payment_id,
            customer_id,
            amount_minor,
            currency,
            description,
            dict(metadata),
            secret,
            kinds,
            status,
        )
        self._state.payments[payment_id] = payment
        return payment

    def _checkout_url(self, payment: OfflinePayment) -> str:
        return f"{self._pages_url}/checkout/{payment.client_secret}"

    def _customer(self, customer_id: str) -> OfflineCustomer:
        customer = self._state.customers.get(customer_id)
        if customer is None:
            raise PaymentRejected(f"no customer {customer_id} at the offline provider")
        return customer

    def _method(self, ref: str) -> OfflineStoredMethod:
        stored = self._state.methods.get(ref)
        if stored is None:
            raise PaymentRejected(f"no payment method {ref} at the offline provider")
        return stored

    def _payment(self, payment_id: str) -> OfflinePayment:
        payment = self._state.payments.get(payment_id)
        if payment is None:
            raise PaymentRejected(f"no payment {payment_id} at the offline provider")
        return payment

    def _emit_payment(self, event_type: str, payment: OfflinePayment) -> None:
        self._emit(event_type, "payment_intent", payment.payment_id, payment.metadata)

    def _emit(
        self, event_type: str, object_type: str, object_id: str, metadata: Mapping[str, str]
    ) -> None:
        now = int(self._clock())
        event = {
            "id": self._state.new_id("evt"),
            "object": "event",
            "type": event_type,
            "created": now,
            "data": {"object": {"id": object_id, "object": object_type, "metadata": metadata}},
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        signature = sign(body, self._secret, now)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        self._state.outbox.append(SignedWebhook(body, headers))
