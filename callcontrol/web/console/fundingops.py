"""Funding from the console or the API: the CLI's funding operations, audited.

Every change goes through ``FundingService`` (billing/funding.py), like ``callcontrol
credits buy`` and ``callcontrol payments methods ...``, and is appended to the audit
log with the admin's name; a purchase is audited whatever its outcome (a decline is
something the admin did too). Pages (fundingpages.py) and the JSON API (fundingapi.py)
both call these, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from callcontrol.billing.funding import FundingStatus
from callcontrol.domain.admins import Admin
from callcontrol.domain.funding import Attempt, StoredMethod
from callcontrol.domain.money import format_credits, parse_credits
from callcontrol.errors import Conflict, InvalidInput
from callcontrol.payments.offline_cards import TEST_CARDS
from callcontrol.services import Services
from callcontrol.web.console.render import credits as shown_credits

__all__ = [
    "DEFAULT_THRESHOLD",
    "TEST_CARD_NAMES",
    "AutoRechargeChange",
    "CardForm",
    "FundingOps",
    "Outcome",
    "money",
    "outcome_of",
    "parse_method_id",
    "required_method_id",
]

DEFAULT_THRESHOLD = "2"  # credits: auto-recharge's suggested threshold
TEST_CARD_NAMES = tuple(c.name for c in TEST_CARDS if c.kind == "card")

OutcomeKind = Literal["succeeded", "pending", "needs_customer", "declined", "unknown"]


def money(minor: int, currency: str) -> str:
    """``1050, "eur"`` -> ``10.50 EUR``."""
    return f"{minor // 100}.{minor % 100:02d} {currency.upper()}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a purchase, for the admin: a kind and one sentence."""

    kind: OutcomeKind
    message: str


def outcome_of(attempt: Attempt) -> Outcome:
    paid = money(attempt.amount_minor, attempt.currency)
    credits = shown_credits(attempt.credits_micro)
    if attempt.state == "succeeded":
        return Outcome("succeeded", f"Bought {credits} credits for {paid}.")
    if attempt.state == "pending":
        return Outcome(
            "pending",
            f"Pending: {credits} credits are credited when the bank transfer of {paid} arrives.",
        )
    if attempt.state == "needs_customer":
        return Outcome(
            "needs_customer",
            "The bank asks the card holder to confirm this payment (authentication "
            "required, 3-D Secure); nothing was credited.",
        )
    if attempt.state == "failed":
        return Outcome(
            "declined",
            f"{attempt.decline_code or 'declined'} ({attempt.message or 'no reason'}); "
            "nothing was credited.",
        )
    return Outcome(
        "unknown",
        "No final answer from the payment provider yet: the payment is pending and is "
        "reconciled later (credited once if it was paid).",
    )


def parse_method_id(raw: object) -> int | None:
    """A payment method's id from a form field, a path or JSON (None: the default)."""
    if raw is None or raw == "":
        return None
    return required_method_id(raw)


def required_method_id(raw: object) -> int:
    """A payment method's id that must be given."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise InvalidInput("method must be a payment method's id (a whole number)")
    text = str(raw).strip()
    if not text.isdigit() or len(text) > 12:
        raise InvalidInput(f"method must be a payment method's id, not {text[:20]!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class CardForm:
    """What the browser's card form needs: never logged (the client secret)."""

    setup_id: str
    client_secret: str = field(repr=False)
    publishable_key: str = ""


@dataclass(frozen=True, slots=True)
class AutoRechargeChange:
    """What the admin asked of auto-recharge (amounts as typed, in credits)."""

    enabled: bool
    threshold: str = DEFAULT_THRESHOLD
    amount: str = ""
    method_id: int | None = None
    monthly_cap: str = ""


class FundingOps:
    def __init__(self, services: Services) -> None:
        self.funding = services.funding
        self.admins = services.admins
        self.provider = services.settings.payment_provider
        self.publishable_key = services.settings.stripe_publishable_key

    async def buy(self, admin: Admin, amount: str, method_id: int | None) -> Attempt:
        credits = parse_credits(amount)
        attempt = await self.funding.buy(credits, method_id)
        await self.admins.record(
            admin,
            "credits.buy",
            attempt.id,
            f"{format_credits(credits)} credits, method #{attempt.method_id}: {attempt.state}"
            + (f" ({attempt.decline_code})" if attempt.decline_code else ""),
        )
        return attempt

    async def add_test_card(self, admin: Admin, card: str) -> StoredMethod:
        if card not in TEST_CARD_NAMES:
            raise InvalidInput(f"test card must be one of {', '.join(TEST_CARD_NAMES)}")
        method = await self.funding.add_test_card(card)
        await self.admins.record(admin, "payment_method.add", f"#{method.id}", method.describe())
        return method

    async def start_card_setup(self) -> CardForm:
        """What Stripe.js needs to save a card (409 with the offline provider)."""
        if self.provider == "stripe" and not self.publishable_key:
            raise Conflict("stripe_publishable_key is not set: the card form cannot load")
        setup = await self.funding.start_card_setup()
        return CardForm(setup.setup_id, setup.client_secret, self.publishable_key)

    async def cards_saved(self, admin: Admin) -> list[StoredMethod]:
        """The browser saved a card at the provider: record what the provider now lists."""
        added = await self.funding.take_in_cards()
        for method in added:
            await self.admins.record(
                admin, "payment_method.add", f"#{method.id}", method.describe()
            )
        return added

    async def remove_method(self, admin: Admin, method_id: int) -> StoredMethod:
        method = await self.funding.remove_method(method_id)
        await self.admins.record(admin, "payment_method.remove", f"#{method.id}", method.describe())
        return method

    async def set_default(self, admin: Admin, method_id: int) -> StoredMethod:
        method = await self.funding.set_default(method_id)
        await self.admins.record(
            admin, "payment_method.default", f"#{method.id}", method.describe()
        )
        return method

    async def auto_recharge(self, admin: Admin, change: AutoRechargeChange) -> FundingStatus:
        if not change.enabled:
            status = await self.funding.auto_recharge_off()
            await self.admins.record(admin, "auto_recharge.off", "wallet")
            return status
        threshold = parse_credits(change.threshold or DEFAULT_THRESHOLD)
        if not change.amount.strip():
            raise InvalidInput("amount is required: how many credits each recharge buys")
        amount = parse_credits(change.amount)
        cap = parse_credits(change.monthly_cap) if change.monthly_cap.strip() else None
        status = await self.funding.auto_recharge_on(
            threshold_micro=threshold,
            amount_micro=amount,
            method_id=change.method_id,
            monthly_cap_micro=cap,
        )
        await self.admins.record(
            admin,
            "auto_recharge.on",
            "wallet",
            f"below {format_credits(threshold)} -> +{format_credits(amount)}, "
            f"method #{status.auto_recharge.method_id}"
            + (f", at most {format_credits(cap)} a month" if cap is not None else ""),
        )
        return status
