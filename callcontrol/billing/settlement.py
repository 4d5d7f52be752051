"""Settling payment attempts: from the provider's answer to the ledger, exactly once.

Three roads lead here for one attempt, in any order and any number of times: the
synchronous answer to the charge, the provider's webhooks (each one a hint: the payment
is re-read from the provider, never booked from the event's body) and the reconciler
(``reconcile``, run by ``serve`` at start and then periodically), which sends an attempt
left without an answer (a timeout, a crash) again with the SAME idempotency key, or
re-reads its payment.

Exactly once: a paid attempt is credited with the ledger key ``purchase:<attempt id>``
(``Wallet.credit`` returns the first entry for a key it has seen), THEN marked
``succeeded`` by a conditional UPDATE. A crash in between leaves an attempt that the
reconciler finds paid and credits again, which books nothing twice. Only the settler
whose UPDATE moved the attempt acts on the change: releases the auto-recharge claim,
applies the decline policy, notifies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.billing.notifications import Notifier
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.funding import (
    ATTEMPT_STATES,
    Attempt,
    AttemptState,
    decline_action,
    retry_at,
)
from callcontrol.domain.money import LedgerKind, format_credits
from callcontrol.errors import NotFound, StoreError
from callcontrol.payments.errors import PaymentError, PaymentUnavailable
from callcontrol.payments.port import (
    CheckoutRequest,
    Declined,
    NeedsCustomer,
    OffSessionCharge,
    PaymentProvider,
    PaymentRecord,
    PaymentStatus,
    Pending,
    Succeeded,
    Unknown,
)
from callcontrol.store.autorecharge import AutoRechargeRepository
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow
from callcontrol.store.payments import AttemptRepository, WebhookEventRepository

__all__ = ["ATTEMPT_METADATA_KEY", "Settlement"]

log = logging.getLogger(__name__)

ATTEMPT_METADATA_KEY = "callcontrol_attempt"
_NOT_PAID: tuple[AttemptState, ...] = tuple(s for s in ATTEMPT_STATES if s != "succeeded")
_OPEN: tuple[AttemptState, ...] = ("created", "unknown", "pending")


class Settlement:
    """Sends attempts to the provider and books their outcome."""

    def __init__(
        self,
        db: Database,
        wallet: Wallet,
        provider: Callable[[], PaymentProvider],
        notifier: Notifier,
        *,
        retry_delays: tuple[int, ...],
        reconcile_after: float,
    ) -> None:
        self._db = db
        self._wallet = wallet
        self._provider = provider
        self._notifier = notifier
        self._delays = retry_delays
        self.reconcile_after = reconcile_after
        # takes in the cards saved at the provider (FundingService sets it)
        self.on_card_saved: Callable[[], Awaitable[object]] | None = None

    # ---- asking the provider ---------------------------------------------------------------

    async def send(self, attempt: Attempt, *, again: bool = False) -> Attempt:
        """Send the attempt's request (``again``: the reconciler repeats it, same key) and
        settle the answer; the attempt as it is then."""
        provider = self._provider()
        metadata = {ATTEMPT_METADATA_KEY: attempt.id, "kind": attempt.kind}
        description = f"{format_credits(attempt.credits_micro)} credits ({attempt.kind})"
        try:
            if attempt.flow == "charge":
                result = await provider.charge_off_session(
                    OffSessionCharge(
                        attempt.customer_id,
                        attempt.method_ref or "",
                        attempt.amount_minor,
                        attempt.currency,
                        description,
                        attempt.id,
                        metadata,
                    )
                )
                if isinstance(result, Unknown):
                    return await self._unknown(attempt, result.reason)
                return await self.settle(attempt, result)
            checkout = await provider.start_checkout(
                CheckoutRequest(
                    attempt.customer_id,
                    attempt.amount_minor,
                    attempt.currency,
                    description,
                    attempt.id,
                    metadata,
                    frozenset({"bank_transfer"}),
                )
            )
            return await self.settle(attempt, Pending(checkout.payment_id, "awaiting_payment"))
        except PaymentUnavailable as exc:
            return await self._unknown(attempt, str(exc))
        except PaymentError as exc:
            if again:  # e.g. the first request is still running at the provider: wait
                log.warning("payment %s sent again: %s", attempt.id, exc)
                return attempt
            return await self.settle(attempt, Declined("rejected", str(exc), False, True))

    async def _unknown(self, attempt: Attempt, reason: str) -> Attempt:
        log.warning("payment %s: no answer (%s); the reconciler will ask again", attempt.id, reason)
        async with self._db.session() as session:
            repo = AttemptRepository(session)
            await repo.transition(attempt.id, "unknown", ("created", "unknown"), message=reason)
            return await self._reread(repo, attempt)

    # ---- booking an answer ----------------------------------------------------------------

    async def settle(self, attempt: Attempt, status: PaymentStatus) -> Attempt:
        """Book the provider's answer for the attempt; idempotent."""
        if isinstance(status, Succeeded):
            return await self._paid(attempt, status.payment_id)
        async with self._db.session() as session:
            repo = AttemptRepository(session)
            if isinstance(status, Pending):
                await repo.transition(
                    attempt.id, "pending", _OPEN, provider_payment_id=status.payment_id
                )
            elif isinstance(status, NeedsCustomer):
                moved = await repo.transition(
                    attempt.id,
                    "needs_customer",
                    _OPEN,
                    provider_payment_id=status.payment_id,
                    decline_code=status.reason[:64],
                    message="the bank asks for the card holder (authentication required)",
                )
                if moved and attempt.kind == "auto_recharge":
                    await self._switch_off(session, attempt, "authentication required by the bank")
            else:
                values = {"decline_code": status.code[:64], "message": status.message[:256]}
                if status.payment_id:
                    values["provider_payment_id"] = status.payment_id
                moved = await repo.transition(attempt.id, "failed", _OPEN, **values)
                log.warning("payment %s declined: %s %s", attempt.id, status.code, status.message)
                if moved and attempt.kind == "auto_recharge":
                    await self._recharge_declined(session, attempt, status)
            return await self._reread(repo, attempt)

    async def _paid(self, attempt: Attempt, payment_id: str) -> Attempt:
        entry = await self._wallet.credit(
            attempt.credits_micro,
            LedgerKind(attempt.kind),
            attempt.id,
            attempt.ledger_key,
            f"{attempt.kind.replace('_', '-')}: payment {payment_id}",
        )
        async with self._db.session() as session:
            repo = AttemptRepository(session)
            moved = await repo.transition(
                attempt.id,
                "succeeded",
                _NOT_PAID,
                provider_payment_id=payment_id,
                ledger_entry_id=entry.id,
                message="",
            )
            if moved:
                log.info(
                    "payment %s succeeded: +%s credits (%s)",
                    attempt.id,
                    format_credits(attempt.credits_micro),
                    attempt.kind,
                )
            if moved and attempt.kind == "auto_recharge":
                await AutoRechargeRepository(session).succeeded(attempt.id)
                await self._notifier.emit(
                    session,
                    "recharge_succeeded",
                    f"recharge_succeeded:{attempt.id}",
                    attempt=attempt.id,
                    credits=format_credits(attempt.credits_micro),
                    balance=format_credits(entry.balance_after),
                )
            return await self._reread(repo, attempt)

    async def _recharge_declined(
        self, session: AsyncSession, attempt: Attempt, declined: Declined
    ) -> None:
        auto = AutoRechargeRepository(session)
        reason = f"card declined: {declined.code} ({declined.message})"
        if declined.hard or not declined.retryable:
            await self._switch_off(session, attempt, reason)
            return
        failures = await auto.soft_declined(attempt.id)
        if failures == 0:
            return  # not the attempt in flight (switched off or re-configured meanwhile)
        if decline_action(retryable=True, hard=False, failures_in_a_row=failures) == "switch_off":
            await self._switch_off(
                session, attempt, f"{failures} declines in a row, last: {reason}"
            )
            return
        until = retry_at(utcnow(), self._delays, failures)
        await auto.back_off(until)
        await self._notifier.emit(
            session,
            "recharge_failed",
            f"recharge_failed:{attempt.id}",
            attempt=attempt.id,
            reason=reason,
            retry_at=until.isoformat(),
        )

    async def _switch_off(self, session: AsyncSession, attempt: Attempt, reason: str) -> None:
        await AutoRechargeRepository(session).switch_off(reason)
        log.warning("auto-recharge switched off: %s", reason)
        await self._notifier.emit(
            session, "auto_recharge_off", f"auto_recharge_off:{attempt.id}", reason=reason
        )

    @staticmethod
    async def _reread(repo: AttemptRepository, attempt: Attempt) -> Attempt:
        return await repo.get(attempt.id) or attempt

    # ---- webhooks and the reconciler ------------------------------------------------------

    async def receive_webhook(
        self, provider_name: str, body: bytes, headers: dict[str, str]
    ) -> str:
        """Verify, store once and act on a webhook: ``stored``, or ``duplicate`` (already
        handled). WebhookRejected for a bad signature; NotFound for another provider."""
        provider = self._provider()
        if provider_name != provider.name:
            raise NotFound(f"no payment provider {provider_name!r} here")
        event = provider.parse_webhook(body, headers)
        async with self._db.session() as session:
            events = WebhookEventRepository(session)
            if not await events.store(provider.name, event) and await events.processed(
                event.event_id
            ):
                return "duplicate"
        try:
            await self._act_on(event.event_id, event.object_type, event.object_id)
        except (PaymentError, StoreError) as exc:
            log.warning("webhook %s stored; acting on it later: %s", event.event_id, exc)
        return "stored"

    async def _act_on(self, event_id: str, object_type: str, object_id: str) -> None:
        if object_type == "payment_intent":
            await self._refresh(await self._provider().retrieve_payment(object_id))
        elif object_type == "setup_intent" and self.on_card_saved is not None:
            await self.on_card_saved()  # the cards are re-read from the provider
        async with self._db.session() as session:
            await WebhookEventRepository(session).mark_processed(event_id)

    async def _refresh(self, record: PaymentRecord) -> None:
        """Settle the attempt a payment (as the provider knows it now) belongs to."""
        async with self._db.session() as session:
            repo = AttemptRepository(session)
            attempt_id = record.metadata.get(ATTEMPT_METADATA_KEY)
            attempt = await repo.get(attempt_id) if attempt_id else None
            attempt = attempt or await repo.by_payment_id(record.payment_id)
        if attempt is None:
            log.info("payment %s is not one of ours: ignored", record.payment_id)
            return
        if (record.amount_minor, record.currency) != (attempt.amount_minor, attempt.currency):
            log.error(
                "payment %s for attempt %s is %d %s, not %d %s: not booked",
                record.payment_id,
                attempt.id,
                record.amount_minor,
                record.currency,
                attempt.amount_minor,
                attempt.currency,
            )
            return
        if attempt.state != "succeeded":
            await self.settle(attempt, record.status)

    async def reconcile(self) -> int:
        """Resolve what has waited longer than ``reconcile_after``: events stored but not
        acted on, attempts without an answer (sent again, same key) or not final (re-read).
        How many attempts were looked at."""
        before = utcnow() - timedelta(seconds=self.reconcile_after)
        async with self._db.session() as session:
            events = await WebhookEventRepository(session).unprocessed(before)
            attempts = await AttemptRepository(session).unfinished(before)
        for event_id, object_type, object_id in events:
            await self._act_on(event_id, object_type, object_id)
        for attempt in attempts:
            if attempt.state in ("created", "unknown"):
                log.info("reconciling payment %s (%s): sending it again", attempt.id, attempt.state)
                await self.send(attempt, again=True)
            elif attempt.provider_payment_id:
                record = await self._provider().retrieve_payment(attempt.provider_payment_id)
                await self._refresh(record)
        return len(attempts)
