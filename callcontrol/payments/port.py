"""The payment provider port: what billing asks of Stripe (or of the offline provider).

Design
------
**Results, not exceptions, for business outcomes.** Charging a card ends in one of::

    ChargeResult
     ├── Succeeded(payment_id)                  the money moved
     ├── Declined(code, message, retryable, hard)
     │      retryable: the same card may pay later (insufficient_funds, card_declined)
     │      hard:      never charge this card again automatically (expired, lost, stolen,
     │                 do_not_honor, ...): auto-recharge turns itself off and tells the admin
     ├── NeedsCustomer(payment_id, reason, client_secret)
     │      the bank wants the card holder (3-D Secure): only a person in a browser can go on.
     │      For an off-session charge this is as final as a hard decline: never retried.
     └── Unknown(reason)
            a timeout or a network error after the request may have reached the provider:
            the money may or may not have moved. Never count it as paid nor as failed; send
            the SAME request with the SAME idempotency key again (or wait for the webhook).

``retrieve_payment`` answers the same tree plus ``Pending`` (processing, or a checkout the
customer has not paid yet). Errors (``payments.errors``) are for what is not a business
outcome: bad configuration, an unreachable provider outside a charge, a bad signature, a
request the provider refuses.

**Our own idempotency keys.** Every request that creates or changes something at the
provider carries an idempotency key chosen by the caller (for a charge: one per purchase or
auto-recharge attempt, stored with it before the request is sent). After ``Unknown`` the
caller repeats the request with the same key and the provider answers the first outcome
instead of charging twice; the Stripe SDK's own retries reuse the key too. Keys the SDK
would generate by itself live only in the process that made them, so a restart in the
middle of a charge could pay twice; ours survive in the database.

**How a webhook is trusted.** ``parse_webhook`` takes the raw body bytes as received (not a
re-serialised JSON) and the headers, checks the HMAC-SHA256 signature over
``<timestamp>.<body>`` with the endpoint's signing secret and refuses a timestamp older than
the tolerance (replays), else raises ``WebhookRejected``. Even a verified event is only a
hint: billing re-reads the payment with ``retrieve_payment`` and credits the wallet from
that answer, by the payment's id as the ledger's idempotency key.

Amounts are integers in the currency's smallest unit (cents); currencies are ISO 4217 codes
in lower case. A card is the provider's reference plus brand, last four digits and expiry:
card numbers never reach this code, its logs or its database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from callcontrol.errors import InvalidInput

__all__ = [
    "CardSetup",
    "ChargeResult",
    "Checkout",
    "CheckoutRequest",
    "Declined",
    "NeedsCustomer",
    "OffSessionCharge",
    "PaymentMethod",
    "PaymentMethodKind",
    "PaymentProvider",
    "PaymentRecord",
    "PaymentStatus",
    "Pending",
    "Succeeded",
    "Unknown",
    "WebhookEvent",
]

PaymentMethodKind = Literal["card", "bank_transfer"]

_CURRENCY = re.compile(r"[a-z]{3}")
_MAX_KEY = 255  # Stripe's limit for an idempotency key


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    """A saved way to pay: never more than the provider's reference and what a person reads."""

    provider_ref: str
    kind: PaymentMethodKind
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True, slots=True)
class CardSetup:
    """What the browser needs to save a card: a client secret, or a local page for offline."""

    setup_id: str
    client_secret: str = field(repr=False)
    redirect_url: str | None = field(default=None, repr=False)  # may carry a token


@dataclass(frozen=True, slots=True)
class Checkout:
    """A one-off payment waiting for the customer in a browser."""

    payment_id: str
    client_secret: str = field(repr=False)
    redirect_url: str | None = field(default=None, repr=False)  # may carry a token


@dataclass(frozen=True, slots=True)
class Succeeded:
    payment_id: str


@dataclass(frozen=True, slots=True)
class Declined:
    code: str
    message: str
    retryable: bool
    hard: bool
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class NeedsCustomer:
    payment_id: str
    reason: str
    client_secret: str = field(repr=False)
    redirect_url: str | None = field(default=None, repr=False)  # may carry a token


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str


@dataclass(frozen=True, slots=True)
class Pending:
    payment_id: str
    status: str


ChargeResult = Succeeded | Declined | NeedsCustomer | Unknown
PaymentStatus = Succeeded | Declined | NeedsCustomer | Pending


def _check_payment(amount_minor: int, currency: str, idempotency_key: str) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise InvalidInput(
            f"a payment amount is a positive integer of the currency's smallest unit, "
            f"got {amount_minor!r}"
        )
    if not _CURRENCY.fullmatch(currency):
        raise InvalidInput(f"a currency is a lower-case ISO 4217 code (eur), got {currency!r}")
    if not idempotency_key or len(idempotency_key) > _MAX_KEY:
        raise InvalidInput(f"an idempotency key has 1 to {_MAX_KEY} characters")


@dataclass(frozen=True, slots=True)
class OffSessionCharge:
    """Charge a saved card with nobody present (auto-recharge)."""

    customer_id: str
    payment_method_ref: str
    amount_minor: int
    currency: str
    description: str
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_payment(self.amount_minor, self.currency, self.idempotency_key)


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """Start a one-off purchase that the customer completes in a browser."""

    customer_id: str
    amount_minor: int
    currency: str
    description: str
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    kinds: frozenset[PaymentMethodKind] = frozenset({"card"})

    def __post_init__(self) -> None:
        _check_payment(self.amount_minor, self.currency, self.idempotency_key)
        if not self.kinds:
            raise InvalidInput("a checkout offers at least one kind of payment method")


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A payment as the provider knows it now: what reconciliation trusts."""

    payment_id: str
    customer_id: str | None
    amount_minor: int
    currency: str
    metadata: Mapping[str, str]
    status: PaymentStatus


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified notification: a reason to re-read ``object_id``, not a fact to book."""

    event_id: str
    type: str
    object_type: str
    object_id: str
    created: int
    metadata: Mapping[str, str]


class PaymentProvider(Protocol):
    """One payment provider account. Every method that changes something is idempotent."""

    @property
    def name(self) -> str:
        """``stripe`` or ``offline``: stored beside references so they are read back right."""
        ...

    async def ensure_customer(self, org_id: str, name: str) -> str:
        """The provider's customer id for our organisation ``org_id``, created if missing."""
        ...

    async def start_card_setup(self, customer_id: str, idempotency_key: str) -> CardSetup:
        """Begin saving a card for later off-session charges."""
        ...

    async def list_payment_methods(self, customer_id: str) -> list[PaymentMethod]: ...

    async def detach_payment_method(self, provider_ref: str) -> None:
        """Remove a saved method; it can never be charged again."""
        ...

    async def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult: ...

    async def start_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def retrieve_payment(self, payment_id: str) -> PaymentRecord: ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify and read a webhook, or raise ``WebhookRejected``."""
        ...

    async def close(self) -> None: ...
