"""Funding the wallet: payment methods, buying credits, the auto-recharge settings.

``FundingService`` is built once in the composition root, on the payment provider of the
settings (``payment_provider``: offline or stripe) and the ``Settlement`` that books what
the provider answers (``billing.settlement``). A purchase is a payment attempt stored
BEFORE the provider is asked; its id is the provider's idempotency key and its credit's
ledger key is ``purchase:<id>``. A card is charged at once (off-session: the admin saved it
before); a bank transfer / invoice method starts a checkout that stays ``pending`` until
the money arrives (the provider's webhook, or the reconciler, books it then).

The auto-recharge itself (when to buy) is ``billing.autorecharge``; here are its settings:
only a card may pay for it, and the amount must be a valid purchase.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from callcontrol.billing.settlement import Settlement
from callcontrol.domain.funding import Attempt, AutoRecharge, Pricing, StoredMethod
from callcontrol.domain.money import format_credits
from callcontrol.errors import Conflict, InvalidInput, NotFound
from callcontrol.payments.port import CardSetup, PaymentMethod, PaymentProvider
from callcontrol.store.autorecharge import AutoRechargeRepository
from callcontrol.store.db import Database
from callcontrol.store.offline_payments import DurableOfflineProvider
from callcontrol.store.payments import AttemptRepository, MethodRepository

__all__ = ["FundingService", "FundingStatus"]

log = logging.getLogger(__name__)

ORG_ID = "callcontrol"  # one organisation per installation
ORG_NAME = "callcontrol organisation"


@dataclass(frozen=True, slots=True)
class FundingStatus:
    """What ``credits balance`` shows about funding."""

    auto_recharge: AutoRecharge
    method: StoredMethod | None
    recent: list[Attempt]


class FundingService:
    def __init__(
        self,
        db: Database,
        provider: Callable[[], PaymentProvider],
        settlement: Settlement,
        pricing: Pricing,
    ) -> None:
        self._db = db
        self._provider = provider
        self.settlement = settlement
        self.pricing = pricing
        self._customer: str | None = None
        settlement.on_card_saved = self.take_in_cards  # a setup_intent webhook
        self._taking_in = asyncio.Lock()  # the webhook and the browser may come together

    async def customer_id(self) -> str:
        """The organisation's customer id at the provider, created once and stored."""
        if self._customer is not None:
            return self._customer
        provider = self._provider()
        async with self._db.session() as session:
            stored = await MethodRepository(session).customer(provider.name)
        if stored is None:
            stored = await provider.ensure_customer(ORG_ID, ORG_NAME)
            async with self._db.session() as session:
                repo = MethodRepository(session)
                if await repo.customer(provider.name) is None:
                    await repo.set_customer(provider.name, stored)
        self._customer = stored
        return stored

    # ---- payment methods ------------------------------------------------------------------

    async def methods(self) -> list[StoredMethod]:
        """The saved methods, after taking in the cards saved at the provider (its page)."""
        await self.take_in_cards()
        async with self._db.session() as session:
            return await MethodRepository(session).active()

    async def take_in_cards(self) -> list[StoredMethod]:
        """Record the cards saved at the provider that are not stored yet (re-read from the
        provider, never from a browser or a webhook's body): the new ones."""
        provider = self._provider()
        async with self._taking_in:
            at_provider = await provider.list_payment_methods(await self.customer_id())
            async with self._db.session() as session:
                repo = MethodRepository(session)
                known = {m.provider_ref for m in await repo.active() if m.provider == provider.name}
                return [
                    await self._save(repo, provider.name, card, "")
                    for card in at_provider
                    if card.provider_ref not in known
                ]

    async def start_card_setup(self) -> CardSetup:
        """Begin saving a card in the browser with the provider's own form (Stripe.js)."""
        provider = self._provider()
        if isinstance(provider, DurableOfflineProvider):
            raise Conflict(
                "with payment_provider = offline a card is a test card "
                "(`callcontrol payments methods add-test-card visa`), not a card form"
            )
        return await provider.start_card_setup(await self.customer_id(), f"setup:{uuid.uuid4()}")

    async def add_test_card(self, card: str) -> StoredMethod:
        """Save an offline test card (by name or Stripe test number), as a browser would."""
        provider = self._provider()
        if not isinstance(provider, DurableOfflineProvider):
            raise InvalidInput(
                "test cards exist only with payment_provider = offline; with Stripe a card "
                "is saved on Stripe's page"
            )
        setup = await provider.start_card_setup(await self.customer_id(), f"setup:{uuid.uuid4()}")
        method = await provider.complete_card_setup(setup.client_secret, card)
        async with self._db.session() as session:
            return await self._save(MethodRepository(session), provider.name, method, "")

    async def add_bank_transfer(self, label: str) -> StoredMethod:
        """Record that the organisation pays by bank transfer / invoice (no card involved)."""
        if len(label) > 128 or not label.isprintable():
            raise InvalidInput("a label is at most 128 printable characters")
        async with self._db.session() as session:
            return await MethodRepository(session).add(
                provider=self._provider().name,
                provider_ref=None,
                kind="bank_transfer",
                brand="bank_transfer",
                last4="",
                exp_month=None,
                exp_year=None,
                label=label.strip(),
            )

    async def remove_method(self, method_id: int) -> StoredMethod:
        async with self._db.session() as session:
            method = await MethodRepository(session).get(method_id)
            auto = await AutoRechargeRepository(session).get()
        if auto.enabled and auto.method_id == method_id:
            raise Conflict(
                f"auto-recharge pays with method #{method_id}: turn it off or give it "
                "another card first"
            )
        if method.kind == "card" and method.provider_ref:
            await self._provider().detach_payment_method(method.provider_ref)
        async with self._db.session() as session:
            await MethodRepository(session).remove(method_id)
        return method

    async def set_default(self, method_id: int) -> StoredMethod:
        async with self._db.session() as session:
            return await MethodRepository(session).set_default(method_id)

    @staticmethod
    async def _save(
        repo: MethodRepository, provider: str, method: PaymentMethod, label: str
    ) -> StoredMethod:
        return await repo.add(
            provider=provider,
            provider_ref=method.provider_ref,
            kind=method.kind,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            label=label,
        )

    async def _method(self, method_id: int | None) -> StoredMethod:
        async with self._db.session() as session:
            repo = MethodRepository(session)
            if method_id is not None:
                return await repo.get(method_id)
            default = next((m for m in await repo.active() if m.is_default), None)
        if default is None:
            raise InvalidInput(
                "no payment method: add one (`callcontrol payments methods add-test-card visa`)"
            )
        return default

    # ---- buying credits -------------------------------------------------------------------

    async def buy(self, credits_micro: int, method_id: int | None = None) -> Attempt:
        """Buy credits with a saved method (default: the default one); the attempt after
        the provider's answer (``succeeded``: credited; ``pending``: awaiting a transfer)."""
        provider = self._provider()  # a provider not configured says so first
        amount_minor = self.pricing.price_of(credits_micro)
        method = await self._method(method_id)
        customer = await self.customer_id()
        async with self._db.session() as session:
            attempt = await AttemptRepository(session).add(
                attempt_id=uuid.uuid4().hex,
                kind="purchase",
                flow="charge" if method.kind == "card" else "checkout",
                credits_micro=credits_micro,
                amount_minor=amount_minor,
                currency=self.pricing.currency,
                provider=provider.name,
                customer_id=customer,
                method=method,
            )
        log.info(
            "buying %s credits for %d %s with method #%d (payment %s)",
            format_credits(credits_micro),
            amount_minor,
            self.pricing.currency,
            method.id,
            attempt.id,
        )
        return await self.settlement.send(attempt)

    async def offline_transfer_arrives(self, attempt_id: str) -> Attempt:
        """Offline provider only: the bank transfer for a pending purchase arrives (what the
        customer's bank does); the purchase is booked from the payment as re-read."""
        provider = self._provider()
        if not isinstance(provider, DurableOfflineProvider):
            raise InvalidInput("only the offline provider can simulate a bank transfer")
        async with self._db.session() as session:
            attempt = await AttemptRepository(session).get(attempt_id)
        if attempt is None or attempt.provider_payment_id is None or attempt.flow != "checkout":
            raise NotFound(f"no bank-transfer purchase {attempt_id!r} awaiting payment")
        await provider.pay_by_bank_transfer(attempt.provider_payment_id)
        record = await provider.retrieve_payment(attempt.provider_payment_id)
        return await self.settlement.settle(attempt, record.status)

    # ---- auto-recharge settings -----------------------------------------------------------

    async def auto_recharge_on(
        self,
        *,
        threshold_micro: int,
        amount_micro: int,
        method_id: int | None,
        monthly_cap_micro: int | None,
    ) -> FundingStatus:
        """Turn auto-recharge on; refused unless the method is a card."""
        self.pricing.price_of(amount_micro)  # a recharge must be a valid purchase
        method = await self._method(method_id)
        if method.kind != "card":
            raise InvalidInput(
                f"auto-recharge is paid by a card only; method #{method.id} is {method.describe()}"
            )
        if monthly_cap_micro is not None and monthly_cap_micro < amount_micro:
            raise InvalidInput("the monthly cap is smaller than one recharge")
        async with self._db.session() as session:
            await AutoRechargeRepository(session).switch_on(
                threshold=threshold_micro,
                amount=amount_micro,
                method_id=method.id,
                monthly_cap=monthly_cap_micro,
            )
        log.info(
            "auto-recharge on: below %s -> +%s, %s",
            format_credits(threshold_micro),
            format_credits(amount_micro),
            method.describe(),
        )
        return await self.status()

    async def auto_recharge_off(self) -> FundingStatus:
        async with self._db.session() as session:
            await AutoRechargeRepository(session).switch_off("switched off by the admin")
        log.info("auto-recharge off (by the admin)")
        return await self.status()

    async def attempts(self, limit: int = 50) -> list[Attempt]:
        """The newest payment attempts first (purchases and recharges, in any state)."""
        async with self._db.session() as session:
            return await AttemptRepository(session).recent(limit)

    async def status(self) -> FundingStatus:
        async with self._db.session() as session:
            auto = await AutoRechargeRepository(session).get()
            methods = MethodRepository(session)
            method = None
            if auto.method_id is not None:
                method = next((m for m in await methods.active() if m.id == auto.method_id), None)
            recent = await AttemptRepository(session).recent(5)
        return FundingStatus(auto, method, recent)
