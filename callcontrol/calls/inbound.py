"""An incoming call: the carrier delivers a call to one of the organisation's numbers.

States, in order (each a method):

    routing    look the dialled number up (one query); unknown or unrouted: refuse
    ringing    ring the user's endpoint; the caller hears ringback (180)
    connected  both in a mixing bridge until either side hangs up

Refusals are early media and a cause (prompts.py). Every path ends in
``Call.finish``: the other channel is hung up and the call record completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from callcontrol.ari import ChannelEvents, StasisStart
from callcontrol.billing.errors import NoRate
from callcontrol.billing.service import Quote
from callcontrol.calls import prompts
from callcontrol.calls.call import Call, ChannelGone, new_call_id, utcnow
from callcontrol.calls.charging import CallCharger
from callcontrol.calls.ivr_port import AriCallPort
from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.directory import Number, RouteKind
from callcontrol.domain.rating import Direction
from callcontrol.errors import AriError, AriHttpError, AriNotFound, CallControlError, StoreError
from callcontrol.ivr.interpreter import OutcomeKind
from callcontrol.ivr.interpreter import run_flow as run_ivr
from callcontrol.ivr.model import Say
from callcontrol.ivr.port import RingOutcome

if TYPE_CHECKING:
    from callcontrol.calls.context import CallContext

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


@dataclass(frozen=True)
class Callee:
    """Whom a call rings: a name for records and logs, and where to dial.

    A user's phone by extension (``PJSIP/1001``), or an outside number through the
    carrier trunk (``PJSIP/+4930123456@carrier``).
    """

    name: str
    extension: str = ""
    number: str = ""  # an outside number, dialled through the carrier

    @property
    def endpoint(self) -> str:
        return f"PJSIP/{self.number}@carrier" if self.number else f"PJSIP/{self.extension}"


def normalise_dialled(exten: str) -> str:
    """The carrier sends the dialled number with or without '+' (or with 00)."""
    digits = exten.strip()
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+" + digits
    return digits


class RoutedCall(Call):
    """A call from a caller to a callee: authorize and charge it, ring, bridge.

    The states shared by incoming and outgoing calls; the subclasses decide where
    the call goes (``route``) and how it is rated.
    """

    direction = CallDirection.INBOUND

    def __init__(self, start: StasisStart, events: ChannelEvents, ctx: CallContext) -> None:
        super().__init__(new_call_id(), ctx)
        self.start = start
        self.dialled = start.args[1] if len(start.args) > 1 else ""
        self.caller_number = start.channel.caller.number or "anonymous"
        self.caller_name = start.channel.caller.name
        self.ring_timeout = ctx.ring_timeout
        self.started_at = utcnow()
        self.ring_attempts = 0
        self.recorded = False
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

    async def authorize_quote(self, quote: Quote) -> bool:
        """The credits must pay the connection fee and first block; else refuse, uncharged."""
        charger = CallCharger(
            self.call_id,
            quote,
            self.ctx.charging,
            self.ari,
            self.store,
            self.live_channels,
            interval=self.ctx.charge_interval,
            warning=self.ctx.credit_warning,
            on_low_credit=self.warn_low_credit,
        )
        verdict = await charger.authorize()
        if not verdict.allowed:
            await self.store.set_charge_state(
                self.call_id, ChargeState.REFUSED_NO_CREDIT, quote.rate.id
            )
            await self.refuse(prompts.NO_CREDIT, Disposition.REFUSED_NO_CREDIT)
            return False
        self.charger = charger
        return True

    async def warn_low_credit(self, seconds: int) -> None:
        """Tell the user (not the outside party) that the call ends soon: no credits left."""
        role = "caller" if self.direction is CallDirection.OUTBOUND else "callee"
        if role not in self.channels or role in self.gone:
            return
        when = "one minute" if seconds == 60 else f"{seconds} seconds"
        try:
            media = await self.ctx.media.uri(Say(f"This call will end in {when}."))
            playback = await self.ari.play(self.channels[role], [media])
        except (AriError, CallControlError) as exc:
            log.warning("could not warn the user that the credits end: %s", exc)
            return
        log.info("warned the %s: the credits end in %d s (playback %s)", role, seconds, playback.id)

    async def refuse_no_rate(self, exc: NoRate) -> None:
        log.error("refusing: %s", exc)
        await self.store.set_charge_state(self.call_id, ChargeState.REFUSED_NO_RATE)
        await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.REFUSED_NO_RATE)

    async def answer_caller(self) -> None:
        """Answer the carrier's leg: from now on the call is billable, and the PBX
        ends it when its credits are used up."""
        await self.ari.answer(self.channels["caller"])
        self.answered_at = utcnow()
        await self.store.mark_answered(self.call_id, self.answered_at)
        if self.charger is not None:
            await self.charger.start()
            self.background(self.charger.run(), "charging")

    # ---- ringing --------------------------------------------------------------------

    async def ring_user(self, user: Callee) -> None:
        """Direct routing: ring the user; if they do not take the call, say why and end."""
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
        log.info("ringing %s at %s for %d s", user.name, user.endpoint, self.ring_timeout)
        try:
            await self.ari.originate(
                user.endpoint,
                app_args=f"dialed,{self.call_id}",
                caller_id=caller_id,
                timeout=self.ring_timeout,
                channel_id=callee,
                variables={"CALLCONTROL_CALL_ID": self.call_id, "CALLCONTROL_ROLE": "callee"},
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
        caller, callee = self.channels["caller"], self.channels["callee"]
        if self.answered_at is None:
            await self.answer_caller()
        self.bridge_id = self.call_id
        await self.ari.create_bridge(self.bridge_id, type="mixing", name=f"call-{self.call_id}")
        await self.ari.add_channels(self.bridge_id, [caller, callee])
        if self.charger is not None:
            await self.charger.apply_timeout(callee)  # both legs end at the paid second
        self.disposition = Disposition.ANSWERED
        try:
            await self.store.set_connected_user(self.call_id, user.name)
        except StoreError as exc:
            # The call is paid for and limited by the PBX: it goes on without this detail.
            log.warning("could not record who took the call: %s", exc)
        log.info("connected %s with %s", self.caller_number, user.name)
        await self.wait_for_hangup()


class InboundCall(RoutedCall):
    """The carrier delivers a call to one of the organisation's numbers."""

    async def route(self) -> None:
        caller = self.channels["caller"]
        log.info(
            "incoming call from %s to %s on channel %s", self.caller_number, self.dialled, caller
        )
        await self.tag_channel(caller, "caller")
        number = normalise_dialled(self.dialled)
        found = await self.store.route_for(number)
        owned, route = found if found is not None else (None, None)
        user = None
        if route is not None and route.kind is RouteKind.USER and route.user_extension:
            user = Callee(route.user_name or "", route.user_extension)
        await self.store.start(
            call_id=self.call_id,
            direction=CallDirection.INBOUND,
            caller=self.caller_number,
            callee=number,
            channel_id=caller,
            started_at=self.started_at,
            number_e164=owned.e164 if owned else None,
            user_name=user.name if user else None,
        )
        self.recorded = True
        if owned is None:
            log.info("%s is not one of our numbers", number)
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_UNKNOWN_NUMBER)
            return
        if route is None:
            log.info("%s has no routing: no incoming calls", owned.e164)
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_NO_ROUTE)
            return
        if not await self.authorize(owned):
            return
        if route.kind is RouteKind.FLOW:
            await self.run_flow(route.flow_name or "")
            return
        if user is None:
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_NO_ROUTE)
            return
        await self.ring_user(user)

    async def authorize(self, owned: Number) -> bool:
        """Incoming calls are charged too, by the dialled number's country and type."""
        try:
            quote = await self.ctx.charging.quote(
                owned.e164, Direction.INBOUND, number_type=owned.number_type
            )
        except NoRate as exc:
            await self.refuse_no_rate(exc)
            return False
        return await self.authorize_quote(quote)

    # ---- IVR -------------------------------------------------------------------------

    async def run_flow(self, name: str) -> None:
        flows = self.ctx.flows
        flow = flows.get(name) if flows is not None else None
        if flow is None or flows is None:
            log.error("flow %r is not loaded (missing or invalid): refusing the call", name)
            await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.FAILED)
            return
        log.info("running flow %s (version %s)", name, flows.version(name))
        await self.answer_caller()
        port = AriCallPort(self)
        outcome = await run_ivr(flow, port, resolve=flows.get)
        log.info("flow %s ended: %s", outcome.flow or name, outcome.describe())
        if outcome.kind is OutcomeKind.CALLER_HUNG_UP:
            raise ChannelGone("caller", self.cause)
        if outcome.kind is OutcomeKind.NOT_REACHED and outcome.ring is not None:
            refusal, _ = REFUSALS[outcome.ring]
            await self.refuse(refusal, Disposition.ANSWERED)
        elif outcome.kind is OutcomeKind.FAILED:
            await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.ANSWERED)

    def ended_by_flow(self) -> None:
        self.ended_by = EndedBy.SYSTEM
        self.disposition = Disposition.ANSWERED


class AdoptedCall(Call):
    """A call found again after a restart: wait for its end, charge it, record it.

    A bridged call is followed to its end. A call that was in an IVR menu cannot be
    resumed where it was (the menu state died with the old process): it is ended,
    and charged for the time it ran.
    """

    def __init__(
        self,
        call_id: str,
        channels: dict[str, str],
        ctx: CallContext,
        answered_at: datetime | None,
    ) -> None:
        super().__init__(call_id, ctx)
        for role, channel_id in channels.items():
            self.attach(role, channel_id)
        self.bridge_id = call_id if "callee" in channels else None
        self.answered_at = answered_at
        self.disposition = Disposition.ANSWERED if answered_at else None

    async def handle(self) -> None:
        if self.charger is not None and self.answered_at is not None:
            elapsed = (utcnow() - self.answered_at).total_seconds()
            await self.charger.resume(elapsed)
            self.background(self.charger.run(), "charging")
        missing = {"caller", "callee"} - set(self.channels)
        if missing:
            # One side hung up while the app was away (or the caller was in a menu).
            log.info("re-adopted call has no %s: ending it", ", ".join(sorted(missing)))
            self.ended_by = EndedBy.CALLER if "caller" in missing else EndedBy.SYSTEM
            return
        log.info("re-adopted the call (channels %s)", ", ".join(self.channels.values()))
        await self.wait_for_hangup()


__all__ = ["AdoptedCall", "Callee", "InboundCall", "RoutedCall", "normalise_dialled"]
