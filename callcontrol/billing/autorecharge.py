"""Auto-recharge: buy the preset amount when the available credits fall below the threshold.

The trigger costs the call path nothing: ``Wallet`` calls ``wake`` (it sets an
``asyncio.Event``, nothing else) after each write that may have lowered ``available`` (a
live call's charge, a hold, a negative adjustment), and the app's one-second wallet watch
calls it too, so writes by other processes (the CLI, another app) count as well. The
``run`` task, off the call path, then reads the wallet once and, when a recharge is due,
claims it in the database (``store.autorecharge``: one conditional UPDATE that only one
process can win, also across app processes on one PostgreSQL), stores the attempt in the
same transaction, and only then asks the provider. A slow provider delays nothing but
this task.

Within that transaction the monthly cap is checked against this month's recharges (paid
or still possibly paid): a recharge that would exceed it is not made, and no other is
tried before the next month (or until the admin changes the settings). Declines are
booked by ``Settlement`` (hard: switched off; soft: back-off, then off after 3).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.billing.funding import FundingService
from callcontrol.billing.notifications import Notifier
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.funding import Attempt, AutoRecharge, month_start, next_month_start
from callcontrol.domain.money import WalletState, format_credits
from callcontrol.errors import CallControlError, NotFound, StoreError
from callcontrol.store.autorecharge import AutoRechargeRepository, auto_recharge
from callcontrol.store.db import Database, UnitExecutor
from callcontrol.store.models import utcnow
from callcontrol.store.payments import AttemptRepository, MethodRepository
from callcontrol.store.wallet.common import NO_WALLET, WalletReads

__all__ = ["AutoRecharger"]

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.25  # seconds between two looks at the wallet, however often it is woken


async def _wallet_and_config(session: UnitExecutor) -> tuple[WalletState, AutoRecharge]:
    """The wallet and the auto-recharge settings: one look (each wallet write may wake
    the recharger, so this runs up to 1 / ``MIN_INTERVAL`` times a second)."""
    state = await WalletReads(session).state()
    if state is None:
        raise StoreError(NO_WALLET)
    return state, await auto_recharge(session)


class AutoRecharger:
    def __init__(
        self, db: Database, wallet: Wallet, funding: FundingService, notifier: Notifier
    ) -> None:
        self._db = db
        self._wallet = wallet
        self._funding = funding
        self._notifier = notifier
        self._due = asyncio.Event()

    def wake(self) -> None:
        """The wallet may have gone below the threshold: look soon. Never blocks."""
        self._due.set()

    async def run(self) -> None:
        """Look at the wallet whenever woken (at most every ``MIN_INTERVAL``), until cancelled."""
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                await self.check()
            except CallControlError as exc:
                log.warning("auto-recharge: %s", exc)
            await asyncio.sleep(MIN_INTERVAL)

    async def check(self) -> Attempt | None:
        """Recharge if due now; the attempt made (None if none was due or allowed)."""
        state, config = await self._db.unit(_wallet_and_config)
        low = state.available < config.threshold_micro
        if low != config.low_notified:
            await self._low_balance(low, state.available, config.threshold_micro)
        now = utcnow()
        due = low and config.enabled and config.in_flight is None
        if not due or (config.retry_at is not None and config.retry_at > now):
            return None
        customer = await self._funding.customer_id()
        attempt = await self._claim(now, customer)
        if attempt is None:
            return None
        log.info(
            "auto-recharge: available %s below %s: buying %s credits (payment %s)",
            format_credits(state.available),
            format_credits(config.threshold_micro),
            format_credits(attempt.credits_micro),
            attempt.id,
        )
        return await self._funding.settlement.send(attempt)

    async def _low_balance(self, low: bool, available: int, threshold: int) -> None:
        async with self._db.session() as session:
            changed = await AutoRechargeRepository(session).low_balance_seen(low)
            if changed and low:
                await self._notifier.emit(
                    session,
                    "low_balance",
                    f"low_balance:{uuid.uuid4().hex}",
                    available=format_credits(available),
                    threshold=format_credits(threshold),
                )

    async def _claim(self, now: datetime, customer: str) -> Attempt | None:
        attempt_id = uuid.uuid4().hex
        async with self._db.session(immediate=True) as session:
            auto = AutoRechargeRepository(session)
            if not await auto.claim(attempt_id, now):
                return None  # another task or process has one in flight, or not due now
            config = await auto.get()
            try:
                if config.method_id is None:
                    raise NotFound("auto-recharge has no card")
                method = await MethodRepository(session).get(config.method_id)
            except NotFound:
                await self._off(session, auto, attempt_id, "the card for auto-recharge was removed")
                return None
            attempts = AttemptRepository(session)
            cap = config.monthly_cap_micro
            if cap is not None:
                month = month_start(now)
                used = await attempts.recharged_since(month)
                if used + config.amount_micro > cap:
                    await self._capped(session, auto, attempt_id, used, cap, month)
                    return None
            try:
                price = self._funding.pricing.price_of(config.amount_micro)
            except CallControlError as exc:  # the price settings changed since it was set
                await self._off(session, auto, attempt_id, str(exc))
                return None
            return await attempts.add(
                attempt_id=attempt_id,
                kind="auto_recharge",
                flow="charge",
                credits_micro=config.amount_micro,
                amount_minor=price,
                currency=self._funding.pricing.currency,
                provider=method.provider,
                customer_id=customer,
                method=method,
            )

    async def _off(
        self, session: AsyncSession, auto: AutoRechargeRepository, attempt_id: str, reason: str
    ) -> None:
        await auto.switch_off(reason, attempt_id)
        log.warning("auto-recharge switched off: %s", reason)
        await self._notifier.emit(
            session, "auto_recharge_off", f"auto_recharge_off:{attempt_id}", reason=reason
        )

    async def _capped(
        self,
        session: AsyncSession,
        auto: AutoRechargeRepository,
        attempt_id: str,
        used: int,
        cap: int,
        month: datetime,
    ) -> None:
        await auto.release(attempt_id)
        await auto.back_off(next_month_start(month))  # none before then, unless re-configured
        log.warning(
            "auto-recharge: the monthly cap %s is reached (%s recharged this month)",
            format_credits(cap),
            format_credits(used),
        )
        await self._notifier.emit(
            session,
            "auto_recharge_capped",
            f"auto_recharge_capped:{month:%Y-%m}:{cap}",
            cap=format_credits(cap),
            recharged_this_month=format_credits(used),
        )
