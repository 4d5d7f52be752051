"""Shared pieces of the funding tests: services on a test database, providers that fail
on purpose at the exact moment a story needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callcontrol.config import Settings
from callcontrol.domain.funding import StoredMethod
from callcontrol.domain.money import MICRO, LedgerEntry, LedgerKind
from callcontrol.payments.offline_state import SignedWebhook
from callcontrol.payments.port import ChargeResult, OffSessionCharge
from callcontrol.services import Services, open_services
from callcontrol.store.models import PaymentAttemptRow
from callcontrol.store.offline_payments import DurableOfflineProvider


def funding_settings(url: str, tmp_path: Path, **values: Any) -> Settings:
    return Settings(
        database_url=url,
        data_dir=tmp_path,
        flows_dir=tmp_path / "flows",
        payment_reconcile_after=0.001,
        **values,
    )


@asynccontextmanager
async def services_on(url: str, tmp_path: Path, **values: Any) -> AsyncIterator[Services]:
    """A process's services (a new engine each time: a "restart")."""
    async with open_services(funding_settings(url, tmp_path, **values)) as services:
        yield services


def offline(services: Services) -> DurableOfflineProvider:
    provider = services.payments
    assert isinstance(provider, DurableOfflineProvider)
    return provider


async def card(services: Services, name: str = "visa") -> StoredMethod:
    return await services.funding.add_test_card(name)


async def purchases(services: Services) -> list[LedgerEntry]:
    """The ledger's money-in entries from payments."""
    entries = await services.charging.wallet.ledger(1000)
    return [e for e in entries if e.kind in (LedgerKind.PURCHASE, LedgerKind.AUTO_RECHARGE)]


async def attempt_states(services: Services) -> list[str]:
    async with services.db.session() as session:
        rows = await session.scalars(
            select(PaymentAttemptRow).order_by(PaymentAttemptRow.created_at)
        )
        return [row.state for row in rows]


async def deliver(services: Services, webhooks: list[SignedWebhook]) -> list[str]:
    """Hand the offline provider's webhooks to the webhook handler, as HTTP would."""
    return [
        await services.settlement.receive_webhook("offline", w.body, dict(w.headers))
        for w in webhooks
    ]


async def drain(services: Services) -> list[SignedWebhook]:
    return await offline(services).take_webhooks()


class Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it on the way out)."""


def around_charge(
    services: Services, after: Callable[[ChargeResult], Awaitable[ChargeResult]]
) -> None:
    """Run ``after`` on each off-session charge's answer before the caller sees it."""
    provider = offline(services)
    charge = provider.charge_off_session

    async def wrapped(request: OffSessionCharge) -> ChargeResult:
        return await after(await charge(request))

    provider.charge_off_session = wrapped  # type: ignore[method-assign]


async def fund(services: Services, credits: int) -> None:
    await services.charging.wallet.credit(
        credits * MICRO, LedgerKind.ADJUSTMENT, None, f"test:fund:{credits}", "test funds"
    )
