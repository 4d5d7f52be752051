"""Charging one live call: hold a slice, let the PBX enforce it, debit, settle.

``CallCharger`` is the bridge between a call and the wallet (DESIGN.md, "Charging"):

* ``authorize`` before the call is answered: a rate must exist and the available
  credits must pay the connection fee and the first block (else the call is refused).
* ``start`` when the caller's leg is answered, then a tick every ``interval``
  seconds (5 s before the paid time ends, so the PBX limit is never raced): debit
  what was used, hold the next slice, and set ``TIMEOUT(absolute)`` on every channel
  of the call to the paid time. When the credits end inside a slice the timeout
  lands on that exact second: Asterisk itself ends the call, even if the app is gone.
* ``wake`` (credits were added, by any process) ticks at once, extending the limit.
* ``settle`` after the hangup: the final charge by the rate's increments, the hold
  released, the cost written on the call record. Idempotent: every debit has its own
  idempotency key (``call:<id>:at:<second>``, ``call:<id>:final``), and what was
  already charged is read back from the ledger, so a retry never charges twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from callcontrol.ari import AriClient
from callcontrol.billing.service import ChargingService, Quote
from callcontrol.calls.records import CallStore
from callcontrol.domain.charging import (
    DEFAULT_INTERVAL,
    Authorization,
    ChargeState,
    authorize,
    final_charge,
    next_step,
    paid_seconds,
)
from callcontrol.domain.money import LedgerKind, format_credits
from callcontrol.domain.rating import Rate
from callcontrol.errors import AriError, AriNotFound, StoreError

log = logging.getLogger(__name__)

TICK_LEAD = 5  # seconds before the paid time ends that the next tick runs
STORE_RETRY = 2.0  # seconds between attempts while the database is unavailable


class CallCharger:
    def __init__(
        self,
        call_id: str,
        quote: Quote,
        service: ChargingService,
        ari: AriClient,
        store: CallStore,
        channels: Callable[[], list[str]],
        *,
        interval: int = DEFAULT_INTERVAL,
        warning: int = 0,
        on_low_credit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.call_id = call_id
        self.quote = quote
        self.rate = quote.rate
        self.service = service
        self.wallet = service.wallet
        self.ari = ari
        self.store = store
        self.channels = channels
        self.interval = interval
        self.warning = warning  # seconds before a cut-off that the user is warned; 0: never
        self.on_low_credit = on_low_credit
        self._warned = False
        self._t0: float | None = None  # loop time of the answer
        self.charged = 0
        self.held = 0
        self.paid_until = 0  # seconds since answer that the PBX lets the call run
        self.cut_off = False  # the credits end at paid_until
        self._ended: float | None = None  # talk time at the hangup, once known
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # ---- before the answer -------------------------------------------------------------

    async def authorize(self) -> Authorization:
        state = await self.wallet.balance()
        verdict = authorize(self.rate, state.available)
        log.info(
            "rate %s (%s %s %s): %s/min, fee %s, %d/%d; available %s -> %s",
            self.rate.id,
            self.quote.direction,
            self.quote.country,
            self.quote.number_type,
            format_credits(self.rate.price_per_minute),
            format_credits(self.rate.connection_fee),
            self.rate.first_increment,
            self.rate.next_increment,
            format_credits(state.available),
            "authorized" if verdict.allowed else verdict.reason,
        )
        return verdict

    # ---- while up ------------------------------------------------------------------------

    def elapsed(self) -> float:
        if self._t0 is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._t0

    async def start(self) -> None:
        """The caller's leg was answered just now: hold the first slice, set the limit."""
        self._t0 = asyncio.get_running_loop().time()
        await self.store.set_charge_state(self.call_id, ChargeState.AUTHORIZED, self.rate.id)
        await self.tick()

    async def resume(self, elapsed: float) -> None:
        """Take over a call answered ``elapsed`` s ago (after a restart): what was
        charged and held is read back from the ledger, then the call is re-planned."""
        self._t0 = asyncio.get_running_loop().time() - elapsed
        self.charged = await self.wallet.charged_for(self.call_id)
        self.held = await self.wallet.hold_of(self.call_id)
        log.info(
            "resuming charging at %d s: charged %s, holding %s",
            int(elapsed),
            format_credits(self.charged),
            format_credits(self.held),
        )
        await self.tick()

    def wake(self) -> None:
        """Credits were added: re-plan now, so the call's limit grows."""
        self._wake.set()

    def _warn_at(self) -> float | None:
        """When (seconds since answer) to warn that the credits are about to end."""
        if not (self.cut_off and self.warning and self.on_low_credit) or self._warned:
            return None
        at = self.paid_until - self.warning
        return at if at > 0 else None

    async def run(self) -> None:
        """Tick until cancelled (the call's TaskGroup cancels it at the hangup)."""
        while True:
            warn_at = self._warn_at()
            if self.cut_off:
                # Nothing more can be bought unless credits arrive (wake); maybe warn first.
                delay = None if warn_at is None else max(0.0, warn_at - self.elapsed())
            else:
                delay = max(0.5, self.paid_until - TICK_LEAD - self.elapsed())
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                log.info("credits changed: re-planning the call's limit")
            except TimeoutError:
                if warn_at is not None and self.on_low_credit is not None:
                    self._warned = True
                    await self.on_low_credit(max(0, round(self.paid_until - self.elapsed())))
                    continue
            try:
                await self.tick()
            except StoreError as exc:
                # The PBX still ends the call at the paid second: nothing runs unpaid.
                log.error(
                    "cannot charge (%s): the PBX ends the call at %d s unless the "
                    "database returns first",
                    exc,
                    self.paid_until,
                )
                await asyncio.sleep(STORE_RETRY)
            if not self.cut_off:
                self._warned = False  # credits arrived: a later cut-off warns again

    async def tick(self) -> None:
        async with self._lock:
            elapsed = int(self.elapsed())
            available = (await self.wallet.balance()).available
            step = next_step(
                self.rate,
                elapsed_s=elapsed,
                charged=self.charged,
                held=self.held,
                available=available,
                interval=self.interval,
            )
            if step.charge_now:
                # Keyed by the second it pays up to: a retry (or another process
                # resuming the call) computes the same charge and the same key.
                result = await self.wallet.charge(
                    self.call_id, step.charge_now, f"call:{self.call_id}:at:{elapsed}"
                )
                self.charged += step.charge_now
                self.held = result.hold_left
            if step.hold_more:
                got = await self.wallet.hold_up_to(self.call_id, step.hold_more)
                self.held += got
            paid = paid_seconds(self.rate, self.charged, self.held, limit=elapsed + self.interval)
            self.paid_until = max(paid, elapsed)
            self.cut_off = paid < elapsed + self.interval
            await self._set_timeout()
            log.info(
                "charged %s so far, holding %s: paid until %d s%s",
                format_credits(self.charged),
                format_credits(self.held),
                self.paid_until,
                " (credits end there: the PBX cuts the call)" if self.cut_off else "",
            )

    async def _set_timeout(self) -> None:
        """TIMEOUT(absolute) on every channel: the PBX ends the call at the paid second."""
        remaining = max(0.001, self.paid_until - self.elapsed())
        for channel_id in self.channels():
            await self.apply_timeout(channel_id, remaining)

    async def apply_timeout(self, channel_id: str, remaining: float | None = None) -> None:
        if remaining is None:
            remaining = max(0.001, self.paid_until - self.elapsed())
        try:
            await self.ari.set_variable(channel_id, "TIMEOUT(absolute)", f"{remaining:.3f}")
        except AriNotFound:
            pass  # hung up meanwhile
        except AriError as exc:
            log.error("could not set the paid-time limit on %s: %s", channel_id, exc)

    # ---- after the hangup ------------------------------------------------------------------

    def freeze(self) -> None:
        """The call has ended: its talk time is fixed now (settlement may come later)."""
        if self._ended is None:
            self._ended = self.elapsed()

    async def settle(self, *, ended_elapsed: float | None = None) -> None:
        """Final charge by increments, release the hold, record the cost. Idempotent."""
        async with self._lock:
            answered = self._t0 is not None
            if ended_elapsed is None:
                ended_elapsed = self._ended if self._ended is not None else self.elapsed()
            elapsed = ended_elapsed
            # The PBX ends the call at paid_until; a late hangup event is not billable.
            duration = min(math.floor(elapsed), self.paid_until) if answered else 0
            await settle_call(
                self.service, self.store, self.call_id, self.rate, duration, answered=answered
            )


async def settle_call(
    service: ChargingService,
    store: CallStore,
    call_id: str,
    rate: Rate,
    duration: int,
    *,
    answered: bool,
) -> None:
    """Settle a call that talked ``duration`` seconds; shared with crash recovery."""
    if rate.id is None:
        raise ValueError("a stored rate has an id")
    rate_id = rate.id
    wallet = service.wallet
    await store.set_charge_state(call_id, ChargeState.CHARGING, rate_id)
    charged = await wallet.charged_for(call_id)
    settlement = final_charge(rate, duration, charged, answered=answered)
    if settlement.charge_now:
        await wallet.charge(call_id, settlement.charge_now, f"call:{call_id}:final")
    if settlement.excess:
        await wallet.credit(
            settlement.excess,
            LedgerKind.REFUND,
            call_id,
            f"call:{call_id}:refund",
            f"call {call_id}: charged beyond its final cost",
        )
    released = await wallet.release(call_id)
    await store.settle(call_id, rate_id, settlement.billable_seconds, settlement.cost)
    log.info(
        "settled: %d s talk, %d s billable, cost %s (released %s held)",
        duration,
        settlement.billable_seconds,
        format_credits(settlement.cost),
        format_credits(released),
    )
