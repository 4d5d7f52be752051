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
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callcontrol.ari import AriClient, ChannelDestroyed, ChannelEvents, EventRouter, StasisStart
from callcontrol.calls import prompts
from callcontrol.calls.call import Call, ChannelGone, new_call_id, utcnow
from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.directory import RouteKind
from callcontrol.errors import AriHttpError, StoreError

if TYPE_CHECKING:
    from callcontrol.calls.records import CallStore

log = logging.getLogger(__name__)

# Q.850 causes of an unanswered callee channel.
CAUSE_BUSY = 17
CAUSE_NO_ANSWER = (18, 19, 21)  # no user responding, no answer, rejected


@dataclass(frozen=True)
class Callee:
    """The user a call rings: the name for records and logs, the extension to dial."""

    name: str
    extension: str


def normalise_dialled(exten: str) -> str:
    """The carrier sends the dialled number with or without '+' (or with 00)."""
    digits = exten.strip()
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+" + digits
    return digits


class InboundCall(Call):
    def __init__(
        self,
        start: StasisStart,
        events: ChannelEvents,
        ari: AriClient,
        router: EventRouter,
        store: CallStore,
        ring_timeout: int,
    ) -> None:
        super().__init__(new_call_id(), ari, router, store)
        self.start = start
        self.dialled = start.args[1] if len(start.args) > 1 else ""
        self.caller_number = start.channel.caller.number or "anonymous"
        self.caller_name = start.channel.caller.name
        self.ring_timeout = ring_timeout
        self.started_at = utcnow()
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
        if route.kind is RouteKind.FLOW:
            log.error(
                "%s routes to flow %r, but IVR flows are not available yet",
                owned.e164,
                route.flow_name,
            )
            await self.refuse(prompts.SERVICE_UNAVAILABLE, Disposition.FAILED)
            return
        if user is None:
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_NO_ROUTE)
            return
        await self.ring_user(user)

    # ---- ringing --------------------------------------------------------------------

    async def ring_user(self, user: Callee) -> None:
        callee = f"{self.call_id}-callee"
        self.attach("callee", callee)
        await self.ari.ring(self.channels["caller"])
        caller_id = (
            f'"{self.caller_name}" <{self.caller_number}>'
            if self.caller_name
            else self.caller_number
        )
        log.info("ringing %s at PJSIP/%s for %d s", user.name, user.extension, self.ring_timeout)
        try:
            await self.ari.originate(
                f"PJSIP/{user.extension}",
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
            await self.refuse(prompts.UNAVAILABLE, Disposition.UNAVAILABLE)
            return
        try:
            async with asyncio.timeout(self.ring_timeout + 5):
                while True:
                    item = await self.next_event_ringing()
                    if item is not None:
                        break
        except TimeoutError:
            log.info("%s did not answer within %d s", user.name, self.ring_timeout)
            await self.hangup("callee")
            await self.refuse(prompts.NO_ANSWER, Disposition.NO_ANSWER)
            return
        if isinstance(item, str):
            await self.connect(user)
            return
        refusal, disposition = item
        await self.refuse(refusal, disposition)

    async def next_event_ringing(
        self,
    ) -> str | tuple[prompts.Refusal, Disposition] | None:
        """One event while the callee rings: 'answered', a refusal, or None (go on)."""
        try:
            incoming = await self.next_event()
        except ChannelGone as gone:
            if gone.role == "caller":
                log.info("the caller hung up while the phone rang")
                self._note_gone("caller", gone.cause)
                self.disposition = Disposition.ABANDONED
                await self.hangup("callee")
                raise
            self.gone.add("callee")
            cause = gone.cause or 0
            if cause == CAUSE_BUSY:
                log.info("the user is busy (cause %d)", cause)
                return prompts.BUSY, Disposition.BUSY
            if cause in CAUSE_NO_ANSWER:
                log.info("the user did not answer (cause %d)", cause)
                return prompts.NO_ANSWER, Disposition.NO_ANSWER
            log.info("the user is unavailable (cause %d)", cause)
            return prompts.UNAVAILABLE, Disposition.UNAVAILABLE
        event = incoming.event
        if incoming.role == "callee" and isinstance(event, StasisStart):
            return "answered"
        return None

    # ---- connected ------------------------------------------------------------------

    async def connect(self, user: Callee) -> None:
        caller, callee = self.channels["caller"], self.channels["callee"]
        await self.ari.answer(caller)
        self.bridge_id = self.call_id
        await self.ari.create_bridge(self.bridge_id, type="mixing", name=f"call-{self.call_id}")
        await self.ari.add_channels(self.bridge_id, [caller, callee])
        self.answered_at = utcnow()
        self.disposition = Disposition.ANSWERED
        await self.store.mark_answered(self.call_id, self.answered_at)
        log.info("connected %s with %s", self.caller_number, user.name)
        await self.wait_for_hangup()

    async def wait_for_hangup(self) -> None:
        """Both sides are talking: the first to hang up ends the call for both."""
        while True:
            try:
                await self.next_event()
            except ChannelGone as gone:
                self._note_gone(gone.role, gone.cause)
                log.info("the %s hung up", gone.role)
                return


class AdoptedCall(Call):
    """A connected call found after a restart: wait for its end, then record it."""

    def __init__(
        self,
        call_id: str,
        channels: dict[str, str],
        ari: AriClient,
        router: EventRouter,
        store: CallStore,
        answered: bool,
    ) -> None:
        super().__init__(call_id, ari, router, store)
        for role, channel_id in channels.items():
            self.attach(role, channel_id)
        self.bridge_id = call_id if answered else None
        self.answered_at = utcnow() if answered else None
        self.disposition = Disposition.ANSWERED if answered else None

    async def handle(self) -> None:
        missing = {"caller", "callee"} - set(self.channels)
        if missing:
            # One side hung up while the app was away: end the other one too.
            log.info("re-adopted call lost its %s while the app was away", ", ".join(missing))
            self.ended_by = EndedBy.CALLER if "caller" in missing else EndedBy.CALLEE
            return
        log.info("re-adopted the call (channels %s)", ", ".join(self.channels.values()))
        while True:
            try:
                await self.next_event()
            except ChannelGone as gone:
                self._note_gone(gone.role, gone.cause)
                log.info("the %s hung up", gone.role)
                return


__all__ = ["AdoptedCall", "ChannelDestroyed", "InboundCall", "normalise_dialled"]
