"""The Stripe adapter of the payment port, on Stripe's official SDK, asynchronous.

One ``stripe.StripeClient`` on the SDK's aiohttp HTTP client, the ``*_async`` methods,
and our own idempotency key on every POST (the SDK's network retries reuse it). Cards are
saved with SetupIntents for off-session use and charged with PaymentIntents
(``off_session=true, confirm=true``); a one-off purchase is a PaymentIntent the browser
confirms with the client secret (card, or a bank transfer through the customer's cash
balance). Our organisation is found again by the customer's metadata
``callcontrol_org_id``. The API key and the webhook secret come from the settings and are
never logged nor shown in a ``repr``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import stripe
from stripe.params import (
    PaymentIntentCreateParams,
    PaymentIntentCreateParamsPaymentMethodOptionsCustomerBalance,
    SetupIntentCreateParams,
)

from callcontrol.payments.errors import PaymentConfigError, WebhookRejected
from callcontrol.payments.port import (
    CardSetup,
    ChargeResult,
    Checkout,
    CheckoutRequest,
    OffSessionCharge,
    PaymentMethod,
    PaymentRecord,
    Pending,
    Unknown,
    WebhookEvent,
)
from callcontrol.payments.stripe_mapping import (
    card_error_result,
    intent_status,
    payment_method,
    plain_metadata,
    raise_payment_error,
)
from callcontrol.payments.webhook_signature import SIGNATURE_HEADER, header_value

__all__ = ["ORG_METADATA_KEY", "StripeProvider", "StripeSettings"]

log = logging.getLogger(__name__)

ORG_METADATA_KEY = "callcontrol_org_id"
_MAY_HAVE_APPLIED = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)


@dataclass(frozen=True, slots=True)
class StripeSettings:
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    api_base: str | None = None  # None: api.stripe.com; tests point it at localstripe
    timeout_seconds: float = 30.0
    max_network_retries: int = 2
    webhook_tolerance_seconds: int = 300
    bank_transfer_type: str = "eu_bank_transfer"
    bank_transfer_country: str = "FR"  # eu_bank_transfer only: DE, FR, IE or NL

    def __post_init__(self) -> None:
        if not self.api_key.startswith(("sk_", "rk_")):
            raise PaymentConfigError(
                "the Stripe API key must be a secret (sk_...) or restricted (rk_...) key"
            )
        if not self.webhook_secret.strip():
            raise PaymentConfigError("the Stripe webhook signing secret (whsec_...) is not set")


class StripeProvider:
    """A ``PaymentProvider`` on one Stripe account."""

    def __init__(self, settings: StripeSettings, *, http_client: stripe.HTTPClient | None = None):
        self._settings = settings
        self._http = http_client or stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds)
        )
        self._client = stripe.StripeClient(
            settings.api_key,
            http_client=self._http,
            base_addresses={"api": settings.api_base} if settings.api_base else None,
            max_network_retries=settings.max_network_retries,
        )
        self._v1 = self._client.v1

    @property
    def name(self) -> str:
        return "stripe"

    async def ensure_customer(self, org_id: str, name: str) -> str:
        try:
            customers = await self._v1.customers.list_async({"limit": 100})
            async for customer in customers.auto_paging_iter():
                if plain_metadata(customer.metadata).get(ORG_METADATA_KEY) == org_id:
                    return customer.id
            created = await self._v1.customers.create_async(
                {"name": name, "metadata": {ORG_METADATA_KEY: org_id}},
                {"idempotency_key": f"callcontrol-customer-{org_id}"},
            )
        except stripe.StripeError as exc:
            raise_payment_error(exc, "finding or creating the customer")
        log.info("created Stripe customer %s for organisation %s", created.id, org_id)
        return created.id

    async def start_card_setup(self, customer_id: str, idempotency_key: str) -> CardSetup:
        params: SetupIntentCreateParams = {
            "customer": customer_id,
            "usage": "off_session",
            "allowed_payment_method_types": ["card"],
        }
        try:
            intent = await self._v1.setup_intents.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise_payment_error(exc, "starting to save a card")
        return CardSetup(intent.id, intent.client_secret or "")

    async def list_payment_methods(self, customer_id: str) -> list[PaymentMethod]:
        try:
            listed = await self._v1.payment_methods.list_async(
                {"customer": customer_id, "type": "card", "limit": 100}
            )
            methods = [payment_method(m) async for m in listed.auto_paging_iter()]
        except stripe.StripeError as exc:
            raise_payment_error(exc, "listing the saved cards")
        return [method for method in methods if method is not None]

    async def detach_payment_method(self, provider_ref: str) -> None:
        try:
            await self._v1.payment_methods.detach_async(
                provider_ref, options={"idempotency_key": f"callcontrol-detach-{provider_ref}"}
            )
        except stripe.StripeError as exc:
            raise_payment_error(exc, f"removing payment method {provider_ref}")

    async def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        params: PaymentIntentCreateParams = {
            "amount": charge.amount_minor,
            "currency": charge.currency,
            "customer": charge.customer_id,
            "payment_method": charge.payment_method_ref,
            "allowed_payment_method_types": ["card"],
            "off_session": True,
            "confirm": True,
            "description": charge.description,
            "metadata": dict(charge.metadata),
        }
        try:
            intent = await self._v1.payment_intents.create_async(
                params, {"idempotency_key": charge.idempotency_key}
            )
        except stripe.CardError as exc:
            result: ChargeResult = card_error_result(exc)
        except _MAY_HAVE_APPLIED as exc:
            result = Unknown(f"Stripe did not answer the charge: {type(exc).__name__}")
        except stripe.StripeError as exc:
            raise_payment_error(exc, "charging the card")
        else:
            status = intent_status(intent)
            result = (
                Unknown(f"payment {intent.id} is {status.status}")
                if isinstance(status, Pending)
                else status
            )
        log.info("Stripe off-session charge %s: %s", charge.idempotency_key, type(result).__name__)
        return result

    async def start_checkout(self, request: CheckoutRequest) -> Checkout:
        params: PaymentIntentCreateParams = {
            "amount": request.amount_minor,
            "currency": request.currency,
            "customer": request.customer_id,
            "description": request.description,
            "metadata": dict(request.metadata),
            "allowed_payment_method_types": sorted(
                "customer_balance" if kind == "bank_transfer" else kind for kind in request.kinds
            ),
        }
        if "bank_transfer" in request.kinds:
            params["payment_method_options"] = {"customer_balance": self._bank_transfer()}
        try:
            intent = await self._v1.payment_intents.create_async(
                params, {"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as exc:
            raise_payment_error(exc, "starting the checkout")
        return Checkout(intent.id, intent.client_secret or "")

    async def retrieve_payment(self, payment_id: str) -> PaymentRecord:
        try:
            intent = await self._v1.payment_intents.retrieve_async(payment_id)
        except stripe.StripeError as exc:
            raise_payment_error(exc, f"reading payment {payment_id}")
        customer = intent.customer
        return PaymentRecord(
            intent.id,
            customer if isinstance(customer, str) or customer is None else customer.id,
            intent.amount,
            intent.currency,
            plain_metadata(intent.metadata),
            intent_status(intent),
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        try:
            event = stripe.Webhook.construct_event(
                body,
                header_value(headers, SIGNATURE_HEADER),
                self._settings.webhook_secret,
                self._settings.webhook_tolerance_seconds,
                api_key=self._settings.api_key,
            )
            obj = event.data.object.to_dict()
            return WebhookEvent(
                event.id,
                event.type,
                str(obj["object"]),
                str(obj["id"]),
                event.created,
                plain_metadata(obj.get("metadata")),
            )
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"the webhook's signature is not valid: {exc}") from exc
        except (ValueError, KeyError, AttributeError) as exc:
            raise WebhookRejected("the webhook's body is not a Stripe event") from exc

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    def _bank_transfer(self) -> PaymentIntentCreateParamsPaymentMethodOptionsCustomerBalance:
        kind = self._settings.bank_transfer_type
        if kind == "eu_bank_transfer":
            country = self._settings.bank_transfer_country
            return {
                "funding_type": "bank_transfer",
                "bank_transfer": {"type": kind, "eu_bank_transfer": {"country": country}},
            }
        return {"funding_type": "bank_transfer", "bank_transfer": {"type": kind}}
