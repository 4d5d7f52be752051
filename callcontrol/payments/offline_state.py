"""Everything the offline provider remembers, in one plain object.

It lives in memory for now: a restart forgets the offline customers, cards and payments.
This object is the seam for making it durable: the records are plain data, and the
offline provider reads and writes nothing else, so the composition root can load it from
the database at start and save it after each change without touching the provider's logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from callcontrol.payments.port import (
    CardSetup,
    ChargeResult,
    Checkout,
    PaymentMethod,
    PaymentMethodKind,
    PaymentStatus,
)

__all__ = [
    "OfflineCustomer",
    "OfflinePayment",
    "OfflineSetup",
    "OfflineState",
    "OfflineStoredMethod",
    "Replay",
    "SignedWebhook",
]


@dataclass(slots=True)
class OfflineCustomer:
    customer_id: str
    org_id: str
    name: str


@dataclass(slots=True)
class OfflineStoredMethod:
    method: PaymentMethod
    customer_id: str
    test_card: str  # its name: the behaviour is looked up, no number is kept
    attached: bool = True


@dataclass(slots=True)
class OfflineSetup:
    setup: CardSetup
    customer_id: str
    method_ref: str | None = None


@dataclass(slots=True)
class OfflinePayment:
    payment_id: str
    customer_id: str
    amount_minor: int
    currency: str
    description: str
    metadata: Mapping[str, str]
    client_secret: str
    kinds: frozenset[PaymentMethodKind]
    status: PaymentStatus


@dataclass(frozen=True, slots=True)
class Replay:
    """What a request with an idempotency key did: its parameters and its answer."""

    fingerprint: tuple[object, ...]
    answer: ChargeResult | Checkout | CardSetup


@dataclass(frozen=True, slots=True)
class SignedWebhook:
    """A webhook as it would be sent: the raw body and its headers."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(slots=True)
class OfflineState:
    customers: dict[str, OfflineCustomer] = field(default_factory=dict)
    methods: dict[str, OfflineStoredMethod] = field(default_factory=dict)
    setups: dict[str, OfflineSetup] = field(default_factory=dict)
    payments: dict[str, OfflinePayment] = field(default_factory=dict)
    replays: dict[str, Replay] = field(default_factory=dict)
    outbox: list[SignedWebhook] = field(default_factory=list)
    next_number: int = 1

    def new_id(self, prefix: str) -> str:
        number = self.next_number
        self.next_number += 1
        return f"{prefix}_off_{number}"
