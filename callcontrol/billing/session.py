"""One call's charging session: authorize, start, tick, credits added, settle, recover.

The debit loop of a call lives here and only here (the way CGRateS keeps it in its
session): the telephony side (``callcontrol.calls``) turns channel events into calls
of this session and obeys what it asks through ``CallLimits``: "the PBX ends this
call in N seconds" and "warn the user that the credits end". It never computes
money, and this module never speaks ARI.

    CallCharging (one, built by the composition root)
      .authorize(call_id, quote, limits)  -> CallChargingSession | Refused
      .resume(record, limits)             -> CallChargingSession | None  (after a restart)
      .settle_lost(record, ended_at)      the crash rule: a call that ended unseen

    CallChargingSession (one per rated call)
      .start()          the caller's leg was answered: charge the fee, hold the slice
      .run()            tick until cancelled (the call's TaskGroup owns it)
      .credits_added()  re-plan at once: the limit grows
      .hung_up()        the talk time is fixed now, however late the settlement
      .ended_at_limit() did the PBX end the call at its paid second?
      .settle()         the final charge by increments, hold released, cost recorded

The rules (DESIGN.md, "Charging"; the arithmetic is ``domain.charging``):

* **Authorize reserves the first block.** Before anything rings, the connection fee
  and the first billing block are *held* for the call in one atomic wallet write. A
  call that cannot be paid is refused there; a call that is answered has its first
  block paid, however many calls race for the last credits.
* **The PBX enforces the paid time.** Each tick charges what was used, holds the
  next slice and sets the call's limit (``TIMEOUT(absolute)`` on every channel) to
  the second the charges and hold pay for. Ticks run ``TICK_LEAD`` seconds before
  that second, so extending the limit never races the PBX. When the credits end
  inside a slice, the limit is the exact second they run out.
* **Low credit is shared.** When the wallet cannot pay a whole slice and other calls
  hold credits too, a call holds at most half of what is available (but at least its
  next block), so concurrent calls on a nearly empty wallet share it instead of the
  first one taking it all; they re-plan before their shorter limits and split what
  is left again. A call alone on the wallet takes what there is, in one step.
* **Settlement is idempotent.** Every debit has its own key
  (``call:<id>:at:<second>``, ``call:<id>:final``) and what was charged is read
  back from the ledger, so a retry, or another process resuming the call, never
  charges twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from callcontrol.billing.service import UNREAD, ChargingService, Quote, Unread
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.charging import (
    DEFAULT_INTERVAL,
    ChargeState,
    ChargeStep,
    final_charge,
    next_step,
    paid_seconds,
)
from callcontrol.domain.money import WalletState, format_credits
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction, Rate, call_cost
from callcontrol.errors import StoreError
from callcontrol.store.db import UnitExecutor
from callcontrol.store.wallet import Posted, Work

__all__ = [
    "CallCharging",
    "CallChargingSession",
    "CallLimits",
    "ChargeRecords",
    "ChargingMetrics",
    "ChargingPolicy",
    "Refused",
    "settle_call",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

TICK_LEAD = 5.0  # seconds before the paid time ends that the next tick runs
LIMIT_SLACK = 1.5  # an end this close to the paid second is the PBX enforcing it
STORE_RETRY = 2.0  # seconds between attempts while the database is unavailable
MIN_TICK = 0.5  # seconds: the shortest pause between two ticks


class CallLimits(Protocol):
    """What a session asks of its call; the telephony adapter obeys."""

    async def set_paid_time(self, seconds: float, channel_id: str | None = None) -> None:
        """The PBX must end the call ``seconds`` from now (every live channel, or one)."""
        ...

    async def warn_low_credit(self, seconds: int) -> None:
        """Tell the user (never the outside party) that the call ends in ``seconds``."""
        ...


class ChargeRecords(Protocol):
    """The charging fields of call records (``calls.records.CallStore`` has them), as
    parts of the wallet's transactions (``store.wallet.callpath``)."""

    def charge_state_work(
        self, call_id: str, state: ChargeState, rate_id: int | None = None
    ) -> Work[object]: ...

    def settled_work(
        self, call_id: str, rate_id: int, billable_seconds: int, cost: int
    ) -> Work[object]: ...


class ChargingMetrics(Protocol):
    """Counts charging operations (``callcontrol.metrics.Metrics``): one increment each.

    operation: ``authorize``, ``slice``, ``settle``; outcome: ``ok``, ``no_credit``
    (authorize refused), ``database`` (a StoreError), ``error`` (anything else).
    """

    def charging(self, operation: str, outcome: str) -> None: ...


class _Uncounted:
    def charging(self, operation: str, outcome: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ChargingPolicy:
    interval: int = DEFAULT_INTERVAL  # seconds of talk held in advance (a slice)
    warning: int = 0  # seconds before a cut-off that the user is warned; 0: never


@dataclass(frozen=True, slots=True)
class Refused:
    """Authorization said no: the call is released uncharged."""

    reason: str


class CallCharging:
    """Opens a charging session per rated call; recovers calls after a restart."""

    def __init__(
        self,
        service: ChargingService,
        records: ChargeRecords,
        policy: ChargingPolicy | None = None,
        *,
        clock: Callable[[], float] | None = None,
        metrics: ChargingMetrics | None = None,
    ) -> None:
        self.service = service
        self.wallet: Wallet = service.wallet
        self.records = records
        self.policy = policy or ChargingPolicy()
        self.clock = clock  # seconds, monotonic; None: the event loop's clock
        self.metrics: ChargingMetrics = metrics or _Uncounted()

    async def quote(
        self,
        e164: str,
        direction: Direction,
        *,
        number_type: NumberType | None = None,
        rate_set_id: int | Unread | None = UNREAD,
    ) -> Quote:
        """The rate for a call (``ChargingService.quote``); NoRate: refuse the call."""
        return await self.service.quote(
            e164, direction, number_type=number_type, rate_set_id=rate_set_id
        )

    async def authorize(
        self,
        call_id: str,
        quote: Quote,
        limits: CallLimits,
        *,
        rate_recorded: bool = False,
        record: Work[object] | None = None,
    ) -> CallChargingSession | Refused:
        """``_authorize``, counted."""
        try:
            verdict = await self._authorize(
                call_id, quote, limits, rate_recorded=rate_recorded, record=record
            )
        except Exception as exc:
            self.metrics.charging("authorize", _failure(exc))
            raise
        self.metrics.charging("authorize", "no_credit" if isinstance(verdict, Refused) else "ok")
        return verdict

    async def _authorize(
        self,
        call_id: str,
        quote: Quote,
        limits: CallLimits,
        *,
        rate_recorded: bool,
        record: Work[object] | None,
    ) -> CallChargingSession | Refused:
        """Reserve the connection fee and the first block, or refuse (nothing held).

        ``rate_recorded``: the call's record was written already naming the rate,
        in state ``authorized`` (``CallStore.start``), so that is not written again.
        ``record``: the record's start naming the rate in state ``authorized``
        (``CallStore.start_work``), written in the hold's transaction.
        """
        rate = quote.rate
        rate_id = _rate_id(rate)
        required = call_cost(rate, rate.first_increment)
        # The record names the rate before (or as) any credit is held: a crash in
        # between leaves a record that recovery settles (and releases) by that rate.
        if record is None and not rate_recorded:
            record = self.records.charge_state_work(call_id, ChargeState.AUTHORIZED, rate_id)
        reserved = await self.wallet.open_call(
            call_id,
            required,
            record=record,
            refused=self.records.charge_state_work(call_id, ChargeState.REFUSED_NO_CREDIT, rate_id),
        )
        log.debug(
            "rate %s (%s %s %s): %s/min, fee %s, %d/%d; first block %s %s",
            rate_id,
            quote.direction,
            quote.country,
            quote.number_type,
            format_credits(rate.price_per_minute),
            format_credits(rate.connection_fee),
            rate.first_increment,
            rate.next_increment,
            format_credits(required),
            "reserved" if reserved else "not available",
        )
        if not reserved:
            return Refused(
                f"insufficient credits: {format_credits(required)} needed for the "
                f"connection fee and the first {rate.first_increment} s"
            )
        return CallChargingSession(call_id, rate, self, limits, held=required)

    async def resume(self, record: CallRecord, limits: CallLimits) -> CallChargingSession | None:
        """The session of a call found again after a restart, at the rate it started
        with (never re-quoted: the rate table may have changed since). None when the
        record was never rated or is already settled."""
        if record.rate_id is None or record.charge_state not in (
            ChargeState.AUTHORIZED,
            ChargeState.CHARGING,
        ):
            return None
        rate = await self.service.rate(record.rate_id)
        if rate is None:
            raise StoreError(f"call {record.call_id}: its rate {record.rate_id} is missing")
        charged = await self.wallet.charged_for(record.call_id)
        held = await self.wallet.hold_of(record.call_id)
        return CallChargingSession(record.call_id, rate, self, limits, held=held, charged=charged)

    async def settle_lost(self, record: CallRecord, ended_at: datetime) -> None:
        """The crash rule: a call that ended while no app was connected.

        ``ended_at`` is when the PBX says the call ended (its CDR, an AMI Hangup
        event), or, without such a record, when the app found it gone. Asterisk
        enforced the paid time (TIMEOUT(absolute)), so the call lasted at most what its
        charges and hold paid for, and at most until ``ended_at``: it is charged for the
        smaller of the two, never beyond what was held for it.
        """
        if record.rate_id is None or record.charge_state not in (
            ChargeState.AUTHORIZED,
            ChargeState.CHARGING,
        ):
            return
        rate = await self.service.rate(record.rate_id)
        if rate is None:
            raise StoreError(f"call {record.call_id}: its rate {record.rate_id} is missing")
        duration = 0
        if record.answered_at is not None:
            charged = await self.wallet.charged_for(record.call_id)
            held = await self.wallet.hold_of(record.call_id)
            since = max(0, int((ended_at - record.answered_at).total_seconds()))
            duration = min(since, paid_seconds(rate, charged, held, limit=max(since, 1)))
        await settle_call(
            self, record.call_id, rate, duration, answered=record.answered_at is not None
        )


class CallChargingSession:
    """The debit loop of one call (see the module docstring)."""

    def __init__(
        self,
        call_id: str,
        rate: Rate,
        charging: CallCharging,
        limits: CallLimits,
        *,
        held: int = 0,
        charged: int = 0,
    ) -> None:
        self.call_id = call_id
        self.rate = rate
        self.charging = charging
        self.wallet = charging.wallet
        self.limits = limits
        self.interval = charging.policy.interval
        self.warning = charging.policy.warning
        self.charged = charged
        self.held = held
        self.paid_until = 0  # seconds since answer that the PBX lets the call run
        self.cut_off = False  # the credits end at paid_until (nothing more to hold)
        self.short = False  # the limit is short of a whole slice (cut off, or a share)
        self._clock = charging.clock or asyncio.get_running_loop().time
        self._t0: float | None = None  # clock time of the answer
        self._ended: float | None = None  # talk time at the hangup, once known
        self._warned = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # ---- while up ------------------------------------------------------------------------

    @property
    def answered(self) -> bool:
        return self._t0 is not None

    def elapsed(self) -> float:
        if self._t0 is None:
            return 0.0
        end = self._clock() if self._ended is None else self._t0 + self._ended
        return end - self._t0

    async def start(self, also: Work[object] | None = None) -> None:
        """The caller's leg was answered just now: charge the fee, hold the slice;
        ``also`` (the record's answer) in the same transaction."""
        self._t0 = self._clock()
        await self.tick(also)

    async def resume(self, elapsed: float) -> None:
        """Take over a call answered ``elapsed`` seconds ago (after a restart)."""
        self._t0 = self._clock() - elapsed
        log.info(
            "resuming charging at %d s: charged %s, holding %s",
            int(elapsed),
            format_credits(self.charged),
            format_credits(self.held),
        )
        await self.tick()

    def credits_added(self) -> None:
        """Credits arrived (any process): a call whose limit fell short of a whole slice
        re-plans now, so its limit grows. A call with its whole slice paid takes new
        credits at its next tick: re-planning every live call on every credit would
        re-hold each call's slice from that moment, soaking the new credits up (an
        auto-recharge would then see the wallet low again and buy again)."""
        if self.short:
            self._wake.set()

    async def enforce_on(self, channel_id: str) -> None:
        """A channel joined the call (the callee answered): it ends at the paid second too."""
        await self.limits.set_paid_time(self._remaining(), channel_id)

    def _remaining(self) -> float:
        return max(0.001, self.paid_until - self.elapsed())

    def _warn_at(self) -> float | None:
        """When (seconds since answer) to warn that the credits are about to end."""
        if not (self.cut_off and self.warning) or self._warned:
            return None
        at = self.paid_until - self.warning
        return at if at > 0 else None

    def _next_tick_in(self) -> float:
        """Seconds until the next tick: before the paid time ends, never racing it."""
        left = self.paid_until - self.elapsed()
        return max(MIN_TICK, left - min(TICK_LEAD, left / 2))

    async def run(self) -> None:
        """Tick until cancelled (the call's TaskGroup cancels it at the hangup)."""
        while True:
            warn_at = self._warn_at()
            if self.cut_off:
                # Nothing more can be held unless credits arrive; maybe warn first.
                delay = None if warn_at is None else max(0.0, warn_at - self.elapsed())
            else:
                delay = self._next_tick_in()
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                log.info("credits changed: re-planning the call's limit")
            except TimeoutError:
                if warn_at is not None:
                    self._warned = True
                    await self.limits.warn_low_credit(max(0, round(self._remaining())))
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

    async def tick(self, also: Work[object] | None = None) -> None:
        """``_tick``, counted."""
        try:
            await self._tick(also)
        except Exception as exc:
            self.charging.metrics.charging("slice", _failure(exc))
            raise
        self.charging.metrics.charging("slice", "ok")

    async def _tick(self, also: Work[object] | None) -> None:
        """Charge what was used, hold the next slice, set the PBX limit: one wallet
        transaction (with ``also``, a record's part), deciding from the wallet it reads."""
        async with self._lock:
            elapsed = int(self.elapsed())
            plan = _Tick(self.call_id, self.rate, elapsed, self.charged, self.held, self.interval)
            ticked = await self.wallet.tick(self.call_id, plan, also=also)
            if ticked.posted is not None:
                assert isinstance(ticked.posted, Posted)  # Wallet.tick raised otherwise
                self.charged += ticked.charged
                self.held = ticked.posted.hold_left
            self.held += ticked.added
            _, shared = plan.decide_hold(
                ticked.state, None if ticked.posted is None else self.held - ticked.added
            )
            slice_end = elapsed + self.interval
            paid = paid_seconds(self.rate, self.charged, self.held, limit=slice_end)
            self.paid_until = max(paid, elapsed)
            self.cut_off = paid < slice_end and not shared
            self.short = paid < slice_end
            await self.limits.set_paid_time(self._remaining())
            log.debug(
                "charged %s so far, holding %s: paid until %d s%s",
                format_credits(self.charged),
                format_credits(self.held),
                self.paid_until,
                " (credits end there: the PBX cuts the call)"
                if self.cut_off
                else (" (a share of the last credits)" if shared else ""),
            )

    # ---- after the hangup ------------------------------------------------------------------

    def hung_up(self, talk: float | None = None) -> None:
        """The call has ended: its talk time is fixed now (settlement may come later),
        or at ``talk`` seconds after the answer when the PBX recorded an earlier end
        (a side that hung up while no app was connected)."""
        if self._ended is None and self._t0 is not None:
            now = self._clock() - self._t0
            self._ended = now if talk is None else min(now, max(0.0, talk))

    def ended_at_limit(self) -> bool:
        """Whether an end now is the PBX enforcing the paid time (not a person)."""
        return self.paid_until > 0 and self.elapsed() >= self.paid_until - LIMIT_SLACK

    async def settle(self, also: Work[T] | None = None) -> T | None:
        """Final charge by increments, release the hold, record the cost. Idempotent.
        ``also`` (the record's end) in the same transaction: its result."""
        async with self._lock:
            # The PBX ends the call at paid_until; a late hangup event is not billable.
            duration = min(math.floor(self.elapsed()), self.paid_until) if self.answered else 0
            return await settle_call(
                self.charging, self.call_id, self.rate, duration, answered=self.answered, also=also
            )


def _rate_id(rate: Rate) -> int:
    if rate.id is None:
        raise ValueError("a stored rate has an id")
    return rate.id


@dataclass(frozen=True, slots=True)
class _Tick:
    """A tick's decisions (``store.wallet.TickPlan``): pure functions of the wallet
    its transaction read, so they may run inside it (in SQLite's thread)."""

    call_id: str
    rate: Rate
    elapsed: int
    charged: int
    held: int
    interval: int

    def _step(self, state: WalletState) -> ChargeStep:
        return next_step(
            self.rate,
            elapsed_s=self.elapsed,
            charged=self.charged,
            held=self.held,
            available=state.available,
            interval=self.interval,
        )

    def charge(self, state: WalletState) -> tuple[int, str]:
        # Keyed by the second it pays up to: a retry (or another process resuming
        # the call) computes the same charge and the same key.
        return self._step(state).charge_now, f"call:{self.call_id}:at:{self.elapsed}"

    def hold(self, state: WalletState, hold_left: int | None) -> int:
        return self.decide_hold(state, hold_left)[0]

    def decide_hold(self, state: WalletState, hold_left: int | None) -> tuple[int, bool]:
        """What to hold more, and whether it is a share of the last credits."""
        step = self._step(state)
        charged = self.charged + (step.charge_now if hold_left is not None else 0)
        held = self.held if hold_left is None else hold_left
        others_hold = state.held > self.held  # other live calls draw on the wallet
        hold_more = step.hold_more
        if step.cut_off and hold_more > 0 and others_hold:
            # The wallet cannot pay this slice: take a share, leave the rest.
            share = max(hold_more // 2, self._next_block(charged, held))
            if share < hold_more:
                return share, True
        return hold_more, False

    def _next_block(self, charged: int, held: int) -> int:
        """What the billing block after ``elapsed`` seconds costs beyond what is paid."""
        upto = self.elapsed + self.interval
        paid = paid_seconds(self.rate, charged, held, limit=upto)
        upto = max(paid, self.elapsed) + max(1, self.rate.next_increment)
        return max(0, call_cost(self.rate, upto) - charged - held)


def _then(first: Work[object], second: Work[T] | None) -> Work[T | None]:
    """``first``, then ``second``, in one transaction: the second's result."""

    async def work(session: UnitExecutor) -> T | None:
        await first(session)
        return None if second is None else await second(session)

    return work


def _failure(exc: Exception) -> str:
    """The outcome label of a charging operation that raised ``exc``."""
    return "database" if isinstance(exc, StoreError) else "error"


async def settle_call(
    charging: CallCharging,
    call_id: str,
    rate: Rate,
    duration: int,
    *,
    answered: bool,
    also: Work[T] | None = None,
) -> T | None:
    """``_settle_call``, counted."""
    try:
        recorded = await _settle_call(
            charging, call_id, rate, duration, answered=answered, also=also
        )
    except Exception as exc:
        charging.metrics.charging("settle", _failure(exc))
        raise
    charging.metrics.charging("settle", "ok")
    return recorded


async def _settle_call(
    charging: CallCharging,
    call_id: str,
    rate: Rate,
    duration: int,
    *,
    answered: bool,
    also: Work[T] | None,
) -> T | None:
    """Settle a call that talked ``duration`` seconds: the live path and recovery.

    One wallet transaction: what the ledger says was charged, the final charge (or
    refund), the release, the record's cost and ``also`` (the record's end: its
    result is returned)."""
    rate_id = _rate_id(rate)
    settled = await charging.wallet.settle(
        call_id,
        lambda charged: final_charge(rate, duration, charged, answered=answered),
        also=lambda settlement: _then(
            charging.records.settled_work(
                call_id, rate_id, settlement.billable_seconds, settlement.cost
            ),
            also,
        ),
    )
    settlement = settled.settlement
    log.info(
        "settled: %d s talk, %d s billable, cost %s (released %s held)",
        duration,
        settlement.billable_seconds,
        format_credits(settlement.cost),
        format_credits(settled.released),
    )
    return settled.recorded
