"""The offline payment provider with its memory in the database, shared by all processes.

Every operation loads ``OfflineState`` from its one row, runs the plain ``OfflineProvider``
on it and saves it, in one write transaction (the row locked on PostgreSQL, BEGIN
IMMEDIATE on SQLite): the CLI that saves a test card and buys credits and the ``serve``
process that receives the webhooks see the same customers, cards and payments, and an
idempotency key sent again after a restart gets the first answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from sqlalchemy import select

from callcontrol.payments.errors import PaymentRejected
from callcontrol.payments.offline import OfflineProvider
from callcontrol.payments.offline_codec import decode_state, encode_state
from callcontrol.payments.offline_state import OfflineState, SignedWebhook
from callcontrol.payments.port import (
    CardSetup,
    ChargeResult,
    Checkout,
    CheckoutRequest,
    OffSessionCharge,
    PaymentMethod,
    PaymentRecord,
    PaymentStatus,
    WebhookEvent,
)
from callcontrol.payments.webhook_signature import SIGNATURE_HEADER, sign
from callcontrol.store.db import Database
from callcontrol.store.models import OfflinePaymentStateRow, utcnow

__all__ = ["OFFLINE_STATE_ROW", "DurableOfflineProvider"]

#: The row migration 0005 creates (tests that empty the tables create it again).
OFFLINE_STATE_ROW = (
    "INSERT INTO offline_payment_state (id, state, updated_at) VALUES (1, '{}', CURRENT_TIMESTAMP)"
)


class DurableOfflineProvider:
    """A ``PaymentProvider``: ``OfflineProvider`` on the state stored in ``db``."""

    def __init__(
        self,
        db: Database,
        webhook_secret: str,
        *,
        webhook_tolerance: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._secret = webhook_secret
        self._tolerance = webhook_tolerance
        self._clock = clock
        self._verifier = self._offline(OfflineState())  # parse_webhook reads no state

    def _offline(self, state: OfflineState) -> OfflineProvider:
        return OfflineProvider(
            self._secret, state=state, webhook_tolerance=self._tolerance, clock=self._clock
        )

    @asynccontextmanager
    async def _stored(self) -> AsyncIterator[OfflineProvider]:
        async with self._stored_state() as (provider, _):
            yield provider

    @asynccontextmanager
    async def _stored_state(self) -> AsyncIterator[tuple[OfflineProvider, OfflineState]]:
        async with self._db.session(immediate=True) as session:
            row = await session.scalar(
                select(OfflinePaymentStateRow)
                .where(OfflinePaymentStateRow.id == 1)
                .with_for_update()
            )
            if row is None:
                row = OfflinePaymentStateRow(id=1, state="{}")
                session.add(row)
            state = decode_state(row.state)
            yield self._offline(state), state
            row.state = encode_state(state)
            row.updated_at = utcnow()

    @property
    def name(self) -> str:
        return "offline"

    async def ensure_customer(self, org_id: str, name: str) -> str:
        async with self._stored() as provider:
            return await provider.ensure_customer(org_id, name)

    async def start_card_setup(self, customer_id: str, idempotency_key: str) -> CardSetup:
        async with self._stored() as provider:
            return await provider.start_card_setup(customer_id, idempotency_key)

    async def complete_card_setup(self, client_secret: str, card: str) -> PaymentMethod:
        async with self._stored() as provider:
            return provider.complete_card_setup(client_secret, card)

    async def list_payment_methods(self, customer_id: str) -> list[PaymentMethod]:
        async with self._stored() as provider:
            return await provider.list_payment_methods(customer_id)

    async def detach_payment_method(self, provider_ref: str) -> None:
        async with self._stored() as provider:
            await provider.detach_payment_method(provider_ref)

    async def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        async with self._stored() as provider:
            return await provider.charge_off_session(charge)

    async def start_checkout(self, request: CheckoutRequest) -> Checkout:
        async with self._stored() as provider:
            return await provider.start_checkout(request)

    async def pay_by_bank_transfer(self, payment_id: str) -> PaymentStatus:
        """What the customer and the bank do: choose a bank transfer at the checkout, and
        the transfer arrives."""
        async with self._stored_state() as (provider, state):
            payment = state.payments.get(payment_id)
            if payment is None:
                raise PaymentRejected(f"no payment {payment_id} at the offline provider")
            provider.complete_checkout(payment.client_secret, "bank_transfer")
            return provider.receive_bank_transfer(payment_id)

    async def retrieve_payment(self, payment_id: str) -> PaymentRecord:
        async with self._stored() as provider:
            return await provider.retrieve_payment(payment_id)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        return self._verifier.parse_webhook(body, headers)

    async def take_webhooks(self) -> list[SignedWebhook]:
        """The webhooks waiting to be sent, signed now (as Stripe signs each delivery)."""
        async with self._stored() as provider:
            waiting = provider.take_webhooks()
        now = int(self._clock())
        return [
            SignedWebhook(
                webhook.body,
                {**webhook.headers, SIGNATURE_HEADER: sign(webhook.body, self._secret, now)},
            )
            for webhook in waiting
        ]

    async def close(self) -> None:
        return None
