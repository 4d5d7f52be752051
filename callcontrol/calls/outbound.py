"""Calls from users' phones: to another user (internal, free) or out through the carrier.

The dialplan sends what a user dials to ``Stasis(callcontrol,outbound,<digits>)``:

    an extension of another user   ring that user; calls between users are free
    +E164 or 00E164                call out through the carrier trunk, presenting the
                                   user's number, rated by the destination and charged
                                   from the answer like every call

A user may call out only with a number of their own to present: a number assigned
to them (``callcontrol numbers assign``), their default one; a user with none is
refused with "your call cannot be completed as dialed" before the carrier sees
anything. Anything else is refused the same way.

Emergency numbers (``domain.emergency``, for the ``country`` setting) never get
here from a correctly installed dialplan: it dials them to the carrier itself,
before any Stasis, so they work even when the app is down. Should one arrive
anyway, it is put through at once, never refused, never charged, never limited,
presenting the user's number or the organisation's main number.
"""

from __future__ import annotations

import logging

from callcontrol.billing.errors import NoRate
from callcontrol.calls import prompts
from callcontrol.calls.callee import Callee, normalise_dialled
from callcontrol.calls.routed import RoutedCall
from callcontrol.domain.call_records import CallDirection, Disposition
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.emergency import is_emergency
from callcontrol.domain.numbers import parse_e164
from callcontrol.domain.rating import Direction
from callcontrol.errors import InvalidInput

log = logging.getLogger(__name__)


def endpoint_of(channel_name: str) -> str:
    """``PJSIP/1001-0000002a`` -> ``1001``."""
    _, _, rest = channel_name.partition("/")
    return rest.rsplit("-", 1)[0]


class OutboundCall(RoutedCall):
    direction = CallDirection.OUTBOUND
    user_role = "caller"

    async def route(self) -> None:
        caller = self.channels["caller"]
        extension = endpoint_of(self.start.channel.name)
        log.info("user %s dials %s on channel %s", extension, self.dialled, caller)
        user = await self.store.user_by_extension(extension)
        target = None
        if self.dialled.isdigit() and len(self.dialled) <= 6:
            target = await self.store.user_by_extension(self.dialled)
        internal = target is not None
        if internal:
            self.direction = CallDirection.INTERNAL  # live calls and metrics say so
        await self.store.start(
            call_id=self.call_id,
            direction=CallDirection.INTERNAL if internal else CallDirection.OUTBOUND,
            caller=extension,
            callee=self.dialled,
            channel_id=caller,
            started_at=self.started_at,
            # the organisation's user on the call: whom it rings, else who dialled
            user_name=target.name if target else (user.name if user else None),
        )
        self.recorded = True
        if is_emergency(self.dialled, self.ctx.country):
            await self.emergency(extension, user.name if user else None)
            return
        if user is None:
            log.error("a call from endpoint %s, which is no user's", extension)
            await self.refuse(prompts.CANNOT_COMPLETE, Disposition.FAILED)
            return
        if target is not None:
            log.info("internal call from %s to %s: free", user.name, target.name)
            await self.store.set_charge_state(self.call_id, ChargeState.FREE)
            self.caller_name, self.caller_number = user.name, user.extension
            await self.ring_user(Callee(target.name, target.extension))
            return
        try:
            if not self.dialled.startswith(("+", "00")):
                raise InvalidInput("dial +<country code><number> or 00<country code><number>")
            destination = parse_e164(normalise_dialled(self.dialled))
        except InvalidInput as exc:
            log.info("%s is not a number we can call: %s", self.dialled, exc)
            await self.refuse(prompts.CANNOT_COMPLETE, Disposition.INVALID_NUMBER)
            return
        presented = await self.store.number_of_user(user.name)
        if presented is None:
            log.info(
                "%s has no number of their own to present (none assigned): cannot call out",
                user.name,
            )
            await self.refuse(prompts.CANNOT_COMPLETE, Disposition.NOT_ALLOWED)
            return
        try:
            quote = await self.ctx.charging.quote(destination, Direction.OUTBOUND)
        except NoRate as exc:
            await self.refuse_no_rate(exc)
            return
        if not await self.authorize_quote(quote):
            return
        self.caller_name, self.caller_number = "", presented
        log.info("%s calls %s presenting %s", user.name, destination, presented)
        await self.ring_user(Callee(destination, number=destination))

    async def emergency(self, extension: str, user_name: str | None) -> None:
        """An emergency call: straight to the carrier, free and without a limit."""
        presented = await self.store.number_of_user(user_name) if user_name else None
        self.caller_name = user_name or ""
        self.caller_number = presented or self.ctx.main_number or extension
        log.warning(
            "emergency call to %s from %s: put through at once, free, presenting %s",
            self.dialled,
            user_name or extension,
            self.caller_number,
        )
        await self.store.set_charge_state(self.call_id, ChargeState.FREE)
        await self.ring_user(Callee(self.dialled, number=self.dialled))
