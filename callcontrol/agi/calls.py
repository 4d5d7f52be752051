"""Calls that a dialplan drives over FastAGI: authorize, settle, and the stale-hold rule.

No AGI in here (``server.py`` speaks it): this is the ARI path's charging, the same
objects (``CallStore`` records, ``CallCharging`` and the wallet), for calls whose
only contact with the app is two short requests:

    authorize  before Dial(): route and rate the call as the ARI path does, write
               its record, hold credits, and answer with a status and the call's
               maximum talk time, which the PBX enforces (``Dial(...,L(ms))``)
    settle     at hangup: the talk time the PBX measured (ANSWEREDTIME), charged
               by the rate's increments, the hold released, the record closed

There are no debits during the call (no app is in it), so **authorize holds the
whole paid time at once**: the cost of ``max_duration`` seconds, or what the wallet
has. While other calls hold credits too, a call takes at most half of what is
available (but always its first block), so a nearly empty wallet is shared rather
than taken by the first call. Settle charges at most the held time (the PBX cut the
call there) and releases the rest.

Settlement is idempotent: a record already settled is reported, not charged again,
and every ledger write has the call's keys (``call:<id>:final``). A call that never
rang (refused, or the channel hung up during authorize) settles to nothing.

**The stale-hold rule** (the crash rule of AGI calls): a call whose settle never
came (the AGI server was down at its hangup, the dialplan lost its hangup
handler) keeps its hold until ``sweep`` finds its record open ``max_duration +
STALE_MARGIN`` seconds after it started, longer than the PBX let it run. Nothing
tells the talk time then, so the hold is released **uncharged**, the record closed
as ``failed`` by the PBX, and an error logged with the call id for reconciliation
against Asterisk's CDR. Charging the whole hold instead could bill an hour for a
call that never rang. ``sweep`` also releases a hold whose record is already
closed (its write landed after a timed-out authorize was abandoned).

AGI call ids start with ``agi`` (never hex, so never an ARI call's id): the ARI
app's re-adoption leaves these records alone (``is_agi_call``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from callcontrol.billing.errors import NoRate
from callcontrol.billing.service import Quote
from callcontrol.billing.session import CallCharging, Refused, settle_call
from callcontrol.calls.callee import normalise_dialled
from callcontrol.calls.records import CallStore, NewRecord
from callcontrol.domain.call_records import (
    AGI_CALL_PREFIX,
    CallDirection,
    CallRecord,
    Disposition,
    EndedBy,
    is_agi_call,
)
from callcontrol.domain.charging import ChargeState, paid_seconds
from callcontrol.domain.directory import NumberState, RouteKind
from callcontrol.domain.emergency import is_emergency
from callcontrol.domain.money import format_credits
from callcontrol.domain.numbers import parse_e164
from callcontrol.domain.rating import Direction, call_cost
from callcontrol.errors import InvalidInput, NotFound
from callcontrol.logs import call_id_var
from callcontrol.store.db import UnitExecutor
from callcontrol.store.wallet import Work

__all__ = [
    "STALE_MARGIN",
    "AgiCalls",
    "Authorization",
    "CallRequest",
    "Settled",
    "Status",
    "new_agi_call_id",
]

log = logging.getLogger(__name__)

STALE_MARGIN = 600  # seconds beyond max_duration (ringing, a slow hangup handler)
LIMIT_SLACK = 1  # a talk time this close to the paid time: the PBX cut the call
UNKNOWN_TALK = "UNKNOWN"  # settle's dial status when the talk time could not be read


def new_agi_call_id() -> str:
    return AGI_CALL_PREFIX + uuid.uuid4().hex


class Status(StrEnum):
    """``CALLCONTROL_STATUS``: what the dialplan branches on (anything but ok: refuse)."""

    OK = "ok"  # dial ${CALLCONTROL_DIAL} with L(${CALLCONTROL_MAX_MS})
    EMERGENCY = "emergency"  # dial it at once, free, with no limit
    NO_CREDIT = "no_credit"
    NO_RATE = "no_rate"
    UNKNOWN_NUMBER = "unknown_number"  # not one of our numbers
    NO_ROUTE = "no_route"  # ours, but no routing (or a flow: flows need `serve`), suspended
    NOT_ALLOWED = "not_allowed"  # a user who may not call out (no number of their own)
    INVALID = "invalid"  # a malformed request or dialled number
    FAILED = "failed"  # the app could not decide in time (database down): fail closed


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the dialplan asks to authorize."""

    call_id: str
    direction: CallDirection  # INBOUND or OUTBOUND (internal is found from the digits)
    dialled: str
    caller: str  # inbound: the caller's number; outbound: the user's extension
    channel_id: str  # Asterisk's unique id of the channel


@dataclass(frozen=True, slots=True)
class Authorization:
    status: Status
    max_seconds: int = 0  # the talk time the PBX allows (0 with EMERGENCY: no limit)
    dial: str = ""  # the dial string: PJSIP/<extension> or PJSIP/<number>@carrier
    caller_id: str = ""  # outbound: the number to present


@dataclass(frozen=True, slots=True)
class Settled:
    """The outcome of a settle (``already``: an earlier settle had done it)."""

    billable_seconds: int
    cost: int
    already: bool = False


class _NoLimits:
    """The session's CallLimits: the dialplan's L() enforces the time, nothing to do."""

    async def set_paid_time(self, seconds: float, channel_id: str | None = None) -> None:
        return None

    async def warn_low_credit(self, seconds: int) -> None:
        return None


# Dial()'s DIALSTATUS -> the record's disposition.
DIAL_DISPOSITIONS = {
    "ANSWER": Disposition.ANSWERED,
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.NO_ANSWER,
    "CHANUNAVAIL": Disposition.UNAVAILABLE,
    "CONGESTION": Disposition.UNAVAILABLE,
    "CANCEL": Disposition.ABANDONED,
}


class AgiCalls:
    def __init__(
        self, store: CallStore, charging: CallCharging, *, max_duration: int, country: str
    ) -> None:
        self.store = store
        self.charging = charging
        self.wallet = charging.wallet
        self.max_duration = max_duration
        self.country = country
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # the lock, its users

    @asynccontextmanager
    async def _one_at_a_time(self, call_id: str) -> AsyncIterator[None]:
        """Settles and abandons of one call never overlap in this process."""
        lock, users = self._locks.get(call_id, (asyncio.Lock(), 0))
        self._locks[call_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[call_id]
            if users == 1:
                del self._locks[call_id]
            else:
                self._locks[call_id] = (lock, users - 1)

    # ---- authorize ---------------------------------------------------------------------

    async def authorize(self, request: CallRequest) -> Authorization:
        if request.direction is CallDirection.INBOUND:
            return await self._inbound(request)
        return await self._outbound(request)

    async def _inbound(self, request: CallRequest) -> Authorization:
        number = normalise_dialled(request.dialled)
        found, rate_set_id = await self.store.inbound_route(number)  # one transaction
        owned, route = found if found is not None else (None, None)
        extension = route.user_extension if route is not None else None
        user_name = route.user_name if route is not None else None
        quote: Quote | None = None
        no_rate: NoRate | None = None
        if owned is not None and route is not None:
            try:
                quote = await self.charging.quote(
                    owned.e164,
                    Direction.INBOUND,
                    number_type=owned.number_type,
                    rate_set_id=rate_set_id,
                )
            except NoRate as exc:
                no_rate = exc
        log.info("incoming call from %s to %s (AGI)", request.caller or "anonymous", number)
        record = NewRecord(
            call_id=request.call_id,
            direction=CallDirection.INBOUND,
            caller=request.caller or "anonymous",
            callee=number,
            channel_id=request.channel_id,
            started_at=_now(),
            number_e164=owned.e164 if owned else None,
            user_name=user_name,
            charge_state=ChargeState.AUTHORIZED if quote is not None else None,
            rate_id=quote.rate.id if quote is not None else None,
        )
        refusal: tuple[Status, Disposition] | None = None
        if owned is None:
            refusal = Status.UNKNOWN_NUMBER, Disposition.REFUSED_UNKNOWN_NUMBER
        elif owned.state is NumberState.SUSPENDED:
            refusal = Status.NO_ROUTE, Disposition.REFUSED_SUSPENDED
        elif route is None or route.kind is not RouteKind.USER or not extension:
            if route is not None and route.kind is RouteKind.FLOW:
                log.warning("%s runs a flow: flows need `callcontrol serve`, not AGI", number)
            refusal = Status.NO_ROUTE, Disposition.REFUSED_NO_ROUTE
        if refusal is None and quote is not None:
            # The record is written in the hold's transaction (refused or not).
            work = self.store.start_work(**record)
            return await self._hold(request, quote, dial=f"PJSIP/{extension}", record=work)
        await self.store.start(**record)
        if refusal is not None:
            return await self._refuse(request, *refusal)
        assert no_rate is not None
        return await self._refuse_no_rate(request, no_rate)

    async def _outbound(self, request: CallRequest) -> Authorization:
        dialled, extension = request.dialled, request.caller
        user = await self.store.user_by_extension(extension) if extension else None
        target = None
        if dialled.isdigit() and len(dialled) <= 6:
            target = await self.store.user_by_extension(dialled)
        emergency = is_emergency(dialled, self.country)
        await self.store.start(
            call_id=request.call_id,
            direction=CallDirection.INTERNAL if target else CallDirection.OUTBOUND,
            caller=extension or "anonymous",
            callee=dialled,
            channel_id=request.channel_id,
            started_at=_now(),
            user_name=target.name if target else (user.name if user else None),
            charge_state=ChargeState.FREE if (target or emergency) else None,
        )
        if emergency:
            log.warning("emergency call to %s from %s: free, no limit", dialled, extension)
            presented = await self.store.number_of_user(user.name) if user else None
            return Authorization(Status.EMERGENCY, 0, f"PJSIP/{dialled}@carrier", presented or "")
        if user is None:
            log.error("a call from extension %r, which is no user's", extension)
            return await self._refuse(request, Status.NOT_ALLOWED, Disposition.FAILED)
        if target is not None:
            log.info("internal call from %s to %s: free", user.name, target.name)
            return Authorization(Status.OK, self.max_duration, f"PJSIP/{target.extension}")
        try:
            if not dialled.startswith(("+", "00")):
                raise InvalidInput("dial +<country code><number> or 00<country code><number>")
            destination = parse_e164(normalise_dialled(dialled))
        except InvalidInput as exc:
            log.info("%s is not a number we can call: %s", dialled, exc)
            return await self._refuse(request, Status.INVALID, Disposition.INVALID_NUMBER)
        presented = await self.store.number_of_user(user.name)
        if presented is None:
            log.info("%s has no number of their own to present: cannot call out", user.name)
            return await self._refuse(request, Status.NOT_ALLOWED, Disposition.NOT_ALLOWED)
        try:
            quote = await self.charging.quote(destination, Direction.OUTBOUND)
        except NoRate as exc:
            return await self._refuse_no_rate(request, exc)
        auth = await self._hold(request, quote, dial=f"PJSIP/{destination}@carrier")
        if auth.status is Status.OK:
            log.info("%s calls %s presenting %s", user.name, destination, presented)
            return Authorization(auth.status, auth.max_seconds, auth.dial, presented)
        return auth

    async def _hold(
        self, request: CallRequest, quote: Quote, *, dial: str, record: Work[object] | None = None
    ) -> Authorization:
        """Hold the first block (else refuse), then as much of the rest as allowed;
        ``record``: the record's start, written in the same transaction (else it was
        written already)."""
        verdict = await self.charging.authorize(request.call_id, quote, _NoLimits(), record=record)
        if isinstance(verdict, Refused):
            log.info("refusing: %s", verdict.reason)
            return await self._refuse(request, Status.NO_CREDIT, Disposition.REFUSED_NO_CREDIT)
        rate, held = quote.rate, verdict.held
        wanted = call_cost(rate, self.max_duration) - held
        if wanted > 0:
            state = await self.wallet.balance()
            if state.held > held:  # other calls draw on the wallet: leave them half
                wanted = min(wanted, state.available // 2)
            if wanted > 0:
                held += await self.wallet.hold_up_to(request.call_id, wanted)
        seconds = paid_seconds(rate, 0, held, limit=self.max_duration)
        log.info(
            "authorized: holding %s, the PBX ends the call after %d s",
            format_credits(held),
            seconds,
        )
        return Authorization(Status.OK, seconds, dial)

    async def _refuse_no_rate(self, request: CallRequest, exc: NoRate) -> Authorization:
        log.error("refusing: %s", exc)
        await self.store.set_charge_state(request.call_id, ChargeState.REFUSED_NO_RATE)
        return await self._refuse(request, Status.NO_RATE, Disposition.REFUSED_NO_RATE)

    async def _refuse(
        self, request: CallRequest, status: Status, disposition: Disposition
    ) -> Authorization:
        await self.store.finish(request.call_id, _now(), disposition, None, EndedBy.SYSTEM)
        log.info("refused (%s)", status.value)
        return Authorization(status)

    async def abandon(self, call_id: str) -> None:
        """Authorize failed half way, or the channel left before the dialplan could
        dial: release whatever is held and close the record as failed, uncharged."""
        async with self._one_at_a_time(call_id):
            record = await self.store.get(call_id)
            if record is not None and _chargeable(record):
                await self._settle_record(record, 0, answered=False)
            else:
                await self.wallet.release(call_id)
            if record is not None and record.is_open:
                await self.store.finish(call_id, _now(), Disposition.FAILED, None, EndedBy.SYSTEM)
                log.info("abandoned: nothing charged, nothing held")

    # ---- settle ----------------------------------------------------------------------

    async def settle(
        self,
        call_id: str,
        talk_seconds: int | None,
        dial_status: str = "",
        cause: int | None = None,
    ) -> Settled:
        """Settle a call that talked ``talk_seconds`` (the PBX's measure). Idempotent.

        None: the talk time is unknown (the dialplan passed garbage): released
        uncharged and closed as failed, like a stale hold."""
        if talk_seconds is None:
            talk_seconds, dial_status = 0, UNKNOWN_TALK
        answered = talk_seconds > 0 or dial_status.upper() == "ANSWER"
        talk = talk_seconds if answered else None
        async with self._one_at_a_time(call_id):
            record = await self.store.get(call_id)
            if record is None:
                raise NotFound(f"no call {call_id}")
            if record.charge_state == ChargeState.SETTLED or not record.is_open:
                if record.is_open:  # settled, then the process died before closing it
                    await self.store.db.unit(
                        self._close_work(record, talk, dial_status, cause, paid=0)
                    )
                log.info("already settled (or refused): nothing charged again")
                return Settled(record.billable_seconds or 0, record.cost_micro or 0, True)
            if _chargeable(record):
                # The settlement and the record's end in one transaction.
                return await self._settle_record(
                    record,
                    talk_seconds,
                    answered=answered,
                    close=lambda paid: self._close_work(
                        record, talk, dial_status, cause, paid=paid
                    ),
                )
            await self.wallet.release(call_id)
            await self.store.db.unit(
                self._close_work(record, talk, dial_status, cause, paid=self.max_duration)
            )
            return Settled(0, 0)

    async def _settle_record(
        self,
        record: CallRecord,
        talk_seconds: int,
        *,
        answered: bool,
        close: Callable[[int], Work[object]] | None = None,
    ) -> Settled:
        """Charge the call its talk time, never beyond what it paid for; ``close``
        (given the paid seconds): the record's end, in the settlement's transaction."""
        assert record.rate_id is not None
        rate = await self.charging.service.rate(record.rate_id)
        if rate is None:
            raise NotFound(f"call {record.call_id}: its rate {record.rate_id} is missing")
        charged, held = await self.wallet.funds_of(record.call_id)
        paid = paid_seconds(rate, charged, held, limit=self.max_duration)
        duration = min(talk_seconds, paid) if answered else 0
        if duration < talk_seconds:
            log.warning(
                "talk time %d s beyond the paid %d s: charging %d s", talk_seconds, paid, paid
            )
        finish = None if close is None else close(paid)
        read_back = self.store.get_work(record.call_id)

        async def end_and_read(session: UnitExecutor) -> CallRecord | None:
            if finish is not None:
                await finish(session)
            return await read_back(session)

        done = await settle_call(
            self.charging, record.call_id, rate, duration, answered=answered, also=end_and_read
        )
        if done is None:
            raise NotFound(f"no call {record.call_id}")
        return Settled(done.billable_seconds or 0, done.cost_micro or 0)

    def _close_work(
        self,
        record: CallRecord,
        talk_seconds: int | None,
        dial_status: str,
        cause: int | None,
        *,
        paid: int,
    ) -> Work[object]:
        """Close the record, one transaction's part: answered (``talk_seconds`` given,
        maybe 0) or how the dial ended; ended by the system when the PBX cut it at the
        paid time, else by the PBX (AGI does not tell which side hung up)."""
        now = _now()
        disposition = DIAL_DISPOSITIONS.get(dial_status.upper())
        connected = None
        if dial_status == UNKNOWN_TALK:
            disposition = Disposition.FAILED
        elif talk_seconds is not None:
            disposition = Disposition.ANSWERED
            answered_at = now - timedelta(seconds=talk_seconds)
            connected = self.store.connected_work(record.call_id, None, answered_at)
        elif disposition is None or disposition is Disposition.ANSWERED:
            disposition = Disposition.ABANDONED  # the caller left before anything answered
        talk = talk_seconds or 0
        at_limit = talk > 0 and paid > 0 and talk >= paid - LIMIT_SLACK
        ended_by = EndedBy.SYSTEM if at_limit else EndedBy.PBX
        finish = self.store.finish_work(record.call_id, now, disposition, cause, ended_by)

        async def work(session: UnitExecutor) -> object:
            if connected is not None:
                await connected(session)
            return await finish(session)

        return work

    # ---- the stale-hold rule ---------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """Release the holds of AGI calls never settled (module docstring); how many."""
        now = now or _now()
        cutoff = now - timedelta(seconds=self.max_duration + STALE_MARGIN)
        released = 0
        for record in await self.store.open_records():
            if not is_agi_call(record.call_id) or record.started_at > cutoff:
                continue
            token = call_id_var.set(record.call_id)
            try:
                async with self._one_at_a_time(record.call_id):
                    held = await self.wallet.hold_of(record.call_id)
                    if _chargeable(record):
                        await self._settle_record(record, 0, answered=False)
                    else:
                        await self.wallet.release(record.call_id)
                    await self.store.finish(
                        record.call_id, now, Disposition.FAILED, None, EndedBy.PBX
                    )
                log.error(
                    "AGI call started %s was never settled: its hold of %s released "
                    "uncharged (reconcile it against the PBX's CDR)",
                    record.started_at.isoformat(timespec="seconds"),
                    format_credits(held),
                )
                released += 1
            finally:
                call_id_var.reset(token)
        return released + await self._orphan_holds()

    async def _orphan_holds(self) -> int:
        """Holds of AGI calls whose record is closed: a hold whose write landed after
        the authorize that made it was abandoned (a timeout cancels the wait, not the
        database's commit). Settling releases before it closes, so such a hold is no
        call's any more."""
        released = 0
        for hold in await self.wallet.open_holds():
            if not is_agi_call(hold.call_id):
                continue
            async with self._one_at_a_time(hold.call_id):
                record = await self.store.get(hold.call_id)
                if record is not None and record.is_open:
                    continue
                amount = await self.wallet.release(hold.call_id)
            if amount:
                token = call_id_var.set(hold.call_id)
                log.warning("released an orphan hold of %s", format_credits(amount))
                call_id_var.reset(token)
                released += 1
        return released


def _chargeable(record: CallRecord) -> bool:
    return record.rate_id is not None and record.charge_state in (
        ChargeState.AUTHORIZED,
        ChargeState.CHARGING,
    )


def _now() -> datetime:
    return datetime.now(UTC)
