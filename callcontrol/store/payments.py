"""Repositories of funding: payment methods, the provider's customer, payment attempts and
the provider's webhook events. Each works inside the caller's session (one transaction).

State changes of an attempt are conditional UPDATEs (``transition``): of two processes
settling the same attempt (the synchronous answer and the webhook), exactly one sees its
UPDATE applied, and only that one acts on the change (notifications, auto-recharge).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.funding import (
    ACTIVE_STATES,
    Attempt,
    AttemptKind,
    AttemptState,
    Flow,
    MethodKind,
    StoredMethod,
)
from callcontrol.errors import NotFound
from callcontrol.payments.port import WebhookEvent
from callcontrol.store.models import (
    PaymentAttemptRow,
    PaymentCustomerRow,
    PaymentMethodRow,
    PaymentWebhookEventRow,
    utcnow,
)

__all__ = ["AttemptRepository", "MethodRepository", "WebhookEventRepository"]


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def _method(row: PaymentMethodRow) -> StoredMethod:
    return StoredMethod(
        id=row.id,
        provider=row.provider,
        provider_ref=row.provider_ref,
        kind=cast(MethodKind, row.kind),
        brand=row.brand,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        label=row.label,
        is_default=row.is_default,
    )


def _attempt(row: PaymentAttemptRow) -> Attempt:
    return Attempt(
        id=row.id,
        kind=cast(AttemptKind, row.kind),
        state=cast(AttemptState, row.state),
        flow=cast(Flow, row.flow),
        credits_micro=row.credits_micro,
        amount_minor=row.amount_minor,
        currency=row.currency,
        provider=row.provider,
        customer_id=row.customer_id,
        method_id=row.method_id,
        method_ref=row.method_ref,
        provider_payment_id=row.provider_payment_id,
        decline_code=row.decline_code,
        message=row.message,
        ledger_entry_id=row.ledger_entry_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class MethodRepository:
    """Saved payment methods (removed ones are kept, marked) and the provider's customer."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def customer(self, provider: str) -> str | None:
        row = await self._session.get(PaymentCustomerRow, provider)
        return None if row is None else row.customer_id

    async def set_customer(self, provider: str, customer_id: str) -> None:
        self._session.add(PaymentCustomerRow(provider=provider, customer_id=customer_id))
        await self._session.flush()

    async def active(self) -> list[StoredMethod]:
        rows = await self._session.scalars(
            select(PaymentMethodRow)
            .where(PaymentMethodRow.removed_at.is_(None))
            .order_by(PaymentMethodRow.id)
        )
        return [_method(row) for row in rows]

    async def get(self, method_id: int) -> StoredMethod:
        row = await self._session.get(PaymentMethodRow, method_id, populate_existing=True)
        if row is None or row.removed_at is not None:
            raise NotFound(f"no payment method #{method_id} (see `payments methods list`)")
        return _method(row)

    async def add(
        self,
        *,
        provider: str,
        provider_ref: str | None,
        kind: MethodKind,
        brand: str,
        last4: str,
        exp_month: int | None,
        exp_year: int | None,
        label: str,
    ) -> StoredMethod:
        """Save a method; the first one saved becomes the default."""
        first = not await self.active()
        row = PaymentMethodRow(
            provider=provider,
            provider_ref=provider_ref,
            kind=kind,
            brand=brand,
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
            label=label,
            is_default=first,
        )
        self._session.add(row)
        await self._session.flush()
        return _method(row)

    async def remove(self, method_id: int) -> None:
        await self.get(method_id)
        await self._session.execute(
            update(PaymentMethodRow)
            .where(PaymentMethodRow.id == method_id)
            .values(removed_at=utcnow(), is_default=False)
        )

    async def set_default(self, method_id: int) -> StoredMethod:
        await self.get(method_id)
        await self._session.execute(
            update(PaymentMethodRow).values(is_default=PaymentMethodRow.id == method_id)
        )
        return await self.get(method_id)


class AttemptRepository:
    """Payment attempts: created before the provider is asked, changed conditionally."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        attempt_id: str,
        kind: AttemptKind,
        flow: Flow,
        credits_micro: int,
        amount_minor: int,
        currency: str,
        provider: str,
        customer_id: str,
        method: StoredMethod,
    ) -> Attempt:
        now = utcnow()
        row = PaymentAttemptRow(
            id=attempt_id,
            kind=kind,
            state="created",
            flow=flow,
            credits_micro=credits_micro,
            amount_minor=amount_minor,
            currency=currency,
            provider=provider,
            customer_id=customer_id,
            method_id=method.id,
            method_ref=method.provider_ref,
            message="",
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        return _attempt(row)

    async def get(self, attempt_id: str) -> Attempt | None:
        row = await self._session.get(PaymentAttemptRow, attempt_id, populate_existing=True)
        return None if row is None else _attempt(row)

    async def by_payment_id(self, payment_id: str) -> Attempt | None:
        row = await self._session.scalar(
            select(PaymentAttemptRow).where(PaymentAttemptRow.provider_payment_id == payment_id)
        )
        return None if row is None else _attempt(row)

    async def transition(
        self, attempt_id: str, to: AttemptState, allowed_from: Sequence[AttemptState], **values: Any
    ) -> bool:
        """Move the attempt to ``to`` if it is in one of ``allowed_from``; whether it moved.
        ``values`` are other columns to set with it (payment id, decline, entry)."""
        result = await self._session.execute(
            update(PaymentAttemptRow)
            .where(PaymentAttemptRow.id == attempt_id, PaymentAttemptRow.state.in_(allowed_from))
            .values(state=to, updated_at=utcnow(), **values)
        )
        return _rowcount(result) == 1

    async def unfinished(self, older_than: datetime) -> list[Attempt]:
        """Attempts not final yet and unchanged since ``older_than``, oldest first."""
        rows = await self._session.scalars(
            select(PaymentAttemptRow)
            .where(
                PaymentAttemptRow.state.in_([*ACTIVE_STATES, "needs_customer"]),
                PaymentAttemptRow.updated_at <= older_than,
            )
            .order_by(PaymentAttemptRow.created_at)
            .limit(100)
        )
        return [_attempt(row) for row in rows]

    async def recent(self, limit: int) -> list[Attempt]:
        rows = await self._session.scalars(
            select(PaymentAttemptRow).order_by(PaymentAttemptRow.created_at.desc()).limit(limit)
        )
        return [_attempt(row) for row in rows]

    async def recharged_since(self, since: datetime) -> int:
        """Micro-credits of auto-recharges since ``since`` that are paid or may still be."""
        total = await self._session.scalar(
            select(func.coalesce(func.sum(PaymentAttemptRow.credits_micro), 0)).where(
                PaymentAttemptRow.kind == "auto_recharge",
                PaymentAttemptRow.created_at >= since,
                PaymentAttemptRow.state.in_([*ACTIVE_STATES, "succeeded"]),
            )
        )
        return int(total or 0)


class WebhookEventRepository:
    """The provider's events, each stored once by its id before it is acted on."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def store(self, provider: str, event: WebhookEvent) -> bool:
        """Store the event; False if it was stored before (a redelivery)."""
        if await self._session.get(PaymentWebhookEventRow, event.event_id) is not None:
            return False
        try:
            async with self._session.begin_nested():
                self._session.add(
                    PaymentWebhookEventRow(
                        event_id=event.event_id,
                        provider=provider,
                        type=event.type[:64],
                        object_type=event.object_type[:64],
                        object_id=event.object_id[:128],
                    )
                )
        except IntegrityError:
            return False  # stored by a concurrent delivery of the same event
        return True

    async def processed(self, event_id: str) -> bool:
        row = await self._session.get(PaymentWebhookEventRow, event_id, populate_existing=True)
        return row is not None and row.processed_at is not None

    async def mark_processed(self, event_id: str) -> None:
        await self._session.execute(
            update(PaymentWebhookEventRow)
            .where(PaymentWebhookEventRow.event_id == event_id)
            .values(processed_at=utcnow())
        )

    async def unprocessed(self, older_than: datetime) -> list[tuple[str, str, str]]:
        """(event id, object type, object id) of events stored but not acted on."""
        rows = await self._session.execute(
            select(
                PaymentWebhookEventRow.event_id,
                PaymentWebhookEventRow.object_type,
                PaymentWebhookEventRow.object_id,
            )
            .where(
                PaymentWebhookEventRow.processed_at.is_(None),
                PaymentWebhookEventRow.received_at <= older_than,
            )
            .limit(100)
        )
        return [(row[0], row[1], row[2]) for row in rows]
