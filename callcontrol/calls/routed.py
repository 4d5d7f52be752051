"""A call from a caller to a callee: authorize and charge it, ring, bridge.

The states shared by incoming and outgoing calls, in order:

    route      the subclass decides where the call goes and how it is rated
    authorize  the charging session reserves the first block (else: refused, uncharged)
    ringing    ring the callee's endpoint; the caller hears ringback (180)
    connected  both in a mixing bridge until either side hangs up

Refusals are early media and a cause (prompts.py). Every path ends in
``Call.finish``: the other channel is hung up and the call record completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from callcontrol.ari import ChannelEvents, StasisStart
from callcontrol.billing.errors import NoRate
from callcontrol.billing.service import Quote
from callcontrol.billing.session import Refused
from callcontrol.calls import prompts
from callcontrol.calls.call import CALL_ID_VAR, ROLE_VAR, Call, ChannelGone, new_call_id, utcnow
from callcontrol.calls.callee import Callee
from callcontrol.calls.limits import PbxLimits
from callcontrol.domain.call_records import CallDirection, Disposition
from callcontrol.domain.charging import ChargeState
from callcontrol.errors import AriHttpError, AriNotFound, StoreError
from callcontrol.ivr.port import RingOutcome
from callcontrol.store.wallet import Work

if TYPE_CHECKING:
    from callcontrol.calls.context import CallContext

__all__ = ["REFUSALS", "RoutedCall"]

log = logging.getLogger(__name__)

# What the caller hears when the user does not take a directly routed call.
REFUSALS = {
    RingOutcome.BUSY: (prompts.BUSY, Disposition.BUSY),
    RingOutcome.NO_ANSWER: (prompts.NO_ANSWER, Disposition.NO_ANSWER),
    RingOutcome.UNAVAILABLE: (prompts.UNAVAILABLE, Disposition.UNAVAILABLE),
    RingOutcome.UNKNOWN: (prompts.UNAVAILABLE, Disposition.UNAVAILABLE),
}

# Q.850 causes of an unanswered callee channel.
CAUSE_BUSY = 17
CAUSE_NO_ANSWER = (18, 19, 21)  # no user responding, no answer, rejected


class RoutedCall(Call):
    """A call from a caller to a callee: authorize and charge it, ring, bridge.

    The states shared by incoming and outgoing calls; the subclasses decide where
    the call goes (``route``) and how it is rated.
    """

    direction = CallDirection.INBOUND
    user_role = "callee"  # the organisation's user: warned before the credits end

    def __init__(self, start: StasisStart, events: ChannelEvents, ctx: CallContext) -> None:
        super().__init__(new_call_id(), ctx, recorded=False)
        self.start = start
        self.dialled = start.args[1] if len(start.args) > 1 else ""
        # The dialplan indicated ringing before Stasis (``Stasis(app,inbound,N,ringing)``):
        # the caller hears ringback already, and ringing a user needs no ARI request.
        self.ringing_indicated = start.args[2:3] == ["ringing"]
        self.caller_number = start.channel.caller.number or "anonymous"
        self.caller_name = start.channel.caller.name
        self.ring_timeout = ctx.ring_timeout
        self.started_at = utcnow()
        self.ring_attempts = 0
        self.attach("caller", start.channel.id, events)

    async def handle(self) -> None:
        try:
            await self.route()
        except StoreError as exc:
            # The database went away mid-call: fail closed, as the dialplan does.
            log.error("the database failed: %s", exc)
            if self.answered_at is None and "caller" not in self.gone:
                await self.hangup("callee")
                await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.FAILED)

    async def route(self) -> None:
        raise NotImplementedError

    # ---- charging ---------------------------------------------------------------------

    async def authorize_quote(
        self, quote: Quote, *, rate_recorded: bool = False, record: Work[object] | None = None
    ) -> bool:
        """Reserve the connection fee and first block; else refuse, uncharged.
        ``record``: the call record's start, written in the same transaction."""
        limits = PbxLimits(self, self.ari, self.ctx.media, self.user_role)
        if record is not None:
            # Closed at the end even if the authorization fails half-way (PostgreSQL
            # writes the record first); closing a record never written changes nothing.
            self.recorded = True
        verdict = await self.ctx.charging.authorize(
            self.call_id, quote, limits, rate_recorded=rate_recorded, record=record
        )
        if isinstance(verdict, Refused):
            log.info("refusing: %s", verdict.reason)
            await self.refuse(prompts.NO_CREDIT, Disposition.REFUSED_NO_CREDIT)
            return False
        self.charging = verdict
        return True

    async def refuse_no_rate(self, exc: NoRate) -> None:
        log.error("refusing: %s", exc)
        await self.store.set_charge_state(self.call_id, ChargeState.REFUSED_NO_RATE)
        await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.REFUSED_NO_RATE)

    async def answer_caller(self) -> None:
        """Answer the carrier's leg for a flow: the caller is connected to the flow, so
        from now on the call is billable, and the PBX ends it when its credits are
        used up."""
        await self.ari.answer(self.channels["caller"])
        self.answered_at = utcnow()
        self.setup_progressed()
        self.setup_done()
        await self.start_charging(self.store.answered_work(self.call_id, self.answered_at))

    async def start_charging(self, record: Work[object]) -> None:
        """The caller is connected (to a flow or a user): the talk time starts now.
        ``record`` (the record's answer) is written before or with the first charge."""
        if self.charging is None:
            await self.store.db.unit(record)
            return
        await self.charging.start(also=record)
        self.background(self.charging.run(), "charging")

    # ---- ringing --------------------------------------------------------------------

    async def ring_user(self, user: Callee) -> None:
        """Direct routing: ring the user; if they do not take the call, say why and end."""
        if not self.ringing_indicated:
            await self.ari.ring(self.channels["caller"])  # the caller hears ringback (180)
        outcome = await self.ring(user)
        if outcome is RingOutcome.ANSWERED:
            return
        refusal, disposition = REFUSALS[outcome]
        await self.refuse(refusal, disposition)

    async def ring(self, user: Callee) -> RingOutcome:
        """Ring one user's phone for ``ring_timeout`` seconds.

        ANSWERED: both are bridged, and this returns once the call has ended. Any
        other outcome: the user's channel is gone and the caller is still here
        (the caller hanging up raises ChannelGone, the call's end).
        """
        self.ring_attempts += 1
        callee = f"{self.call_id}-callee-{self.ring_attempts}"
        self.gone.discard("callee")
        self.attach("callee", callee)
        caller_id = (
            f'"{self.caller_name}" <{self.caller_number}>'
            if self.caller_name
            else self.caller_number
        )
        self.setup_progressed()
        log.debug("ringing %s at %s for %d s", user.name, user.endpoint, self.ring_timeout)
        try:
            await self.ari.originate(
                user.endpoint,
                app_args=f"dialed,{self.call_id}",
                caller_id=caller_id,
                timeout=self.ring_timeout,
                channel_id=callee,
                variables={CALL_ID_VAR: self.call_id, ROLE_VAR: "callee"},
                originator=self.channels["caller"],
            )
        except AriHttpError as exc:
            # No contact registered (or the endpoint is unknown): nothing to ring.
            log.info("%s cannot be reached: %s", user.name, exc)
            self.gone.add("callee")
            return RingOutcome.UNAVAILABLE
        ringback = await self._start_ringback()
        try:
            async with asyncio.timeout(self.ring_timeout + 5):
                while True:
                    outcome = await self._next_ringing_event()
                    if outcome is not None:
                        break
        except TimeoutError:
            log.info("%s did not answer within %d s", user.name, self.ring_timeout)
            await self.hangup("callee")
            outcome = RingOutcome.NO_ANSWER
        finally:
            if ringback is not None and "caller" not in self.gone:
                with contextlib.suppress(AriNotFound):
                    await self.ari.stop_playback(ringback)
        if outcome is RingOutcome.ANSWERED:
            await self.connect(user)
        return outcome

    async def _start_ringback(self) -> str | None:
        """An answered caller (in a flow) hears a ringing tone while the phone rings."""
        if self.answered_at is None:
            return None  # the 180 Ringing already gives the caller ringback
        playback_id = f"{self.call_id}-ringback-{self.ring_attempts}"
        try:
            await self.ari.play(self.channels["caller"], ["tone:ring"], playback_id=playback_id)
        except AriNotFound:
            return None
        return playback_id

    async def _next_ringing_event(self) -> RingOutcome | None:
        """One event while the callee rings: how the ringing ended, or None (go on)."""
        try:
            incoming = await self.next_event()
        except ChannelGone as gone:
            if gone.role == "caller":
                log.info("the caller hung up while the phone rang")
                self.note_gone("caller", gone.cause)
                self.disposition = Disposition.ABANDONED
                await self.hangup("callee")
                raise
            self.gone.add("callee")
            cause = gone.cause or 0
            if cause == CAUSE_BUSY:
                log.info("the user is busy (cause %d)", cause)
                return RingOutcome.BUSY
            if cause in CAUSE_NO_ANSWER:
                log.info("the user did not answer (cause %d)", cause)
                return RingOutcome.NO_ANSWER
            log.info("the user is unavailable (cause %d)", cause)
            return RingOutcome.UNAVAILABLE
        event = incoming.event
        if incoming.role == "callee" and isinstance(event, StasisStart):
            return RingOutcome.ANSWERED
        return None

    # ---- connected ------------------------------------------------------------------

    async def connect(self, user: Callee) -> None:
        """Bridge the caller with the user who answered.

        Only connected time is charged (README, "Charging every call"): a directly routed
        caller is answered here and charged from the moment both are bridged; if
        the bridge fails (a side hung up meanwhile, Asterisk is overloaded), the
        call ends as ``failed`` and is never charged, although the carrier saw an
        answer. A caller in a flow was charged from the answer (the flow is a
        connection too); the user's leg then gets the same paid-time limit.
        """
        caller, callee = self.channels["caller"], self.channels["callee"]
        answered_now = self.answered_at is None
        if answered_now:
            await self.ari.answer(caller)
        self.bridge_id = self.call_id
        await self.ari.create_bridge(self.bridge_id, type="mixing", name=f"call-{self.call_id}")
        await self.ari.add_channels(self.bridge_id, [caller, callee])
        self.disposition = Disposition.ANSWERED
        self.setup_done()
        who = None if user.number else user.name  # an outside number keeps who dialled
        if answered_now:
            # The record says answered before any charge (the crash rule reads it).
            self.answered_at = utcnow()
            # both legs end at the paid second
            await self.start_charging(
                self.store.connected_work(self.call_id, who, self.answered_at)
            )
        else:
            if self.charging is not None:
                await self.charging.enforce_on(callee)  # the user's leg ends there too
            try:
                if who is not None:
                    await self.store.set_connected_user(self.call_id, who)
            except StoreError as exc:
                # The call is paid for and limited by the PBX: it goes on without this.
                log.warning("could not record who took the call: %s", exc)
        log.info("connected %s with %s", self.caller_number, user.name)
        await self.wait_for_hangup()
