"""An incoming call: the carrier delivers a call to one of the organisation's numbers.

``route`` looks the dialled number up (one query): unknown, unrouted or suspended
(its rent unpaid), the call is refused; routed to a user, it rings them
(``RoutedCall``); routed to a flow, the
caller is answered and the IVR interpreter drives the call through ``AriCallPort``.
Incoming calls are charged too, by the dialled number's country and type: the rate
is chosen before the record is written, which then names it from its first row.
"""

from __future__ import annotations

import logging

from callcontrol.billing.errors import NoRate
from callcontrol.billing.service import Quote
from callcontrol.calls import prompts
from callcontrol.calls.call import ChannelGone
from callcontrol.calls.callee import Callee, normalise_dialled
from callcontrol.calls.ivr_port import AriCallPort
from callcontrol.calls.routed import REFUSALS, RoutedCall
from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.directory import NumberState, Route, RouteKind
from callcontrol.domain.rating import Direction
from callcontrol.ivr.interpreter import OutcomeKind
from callcontrol.ivr.interpreter import run_flow as run_ivr

__all__ = ["InboundCall"]

log = logging.getLogger(__name__)


class InboundCall(RoutedCall):
    """The carrier delivers a call to one of the organisation's numbers."""

    async def route(self) -> None:
        caller = self.channels["caller"]
        log.info(
            "incoming call from %s to %s on channel %s", self.caller_number, self.dialled, caller
        )
        number = normalise_dialled(self.dialled)
        found, rate_set_id = await self.store.inbound_route(number)
        owned, route = found if found is not None else (None, None)
        user = None
        if route is not None and route.kind is RouteKind.USER and route.user_extension:
            user = Callee(route.user_name or "", route.user_extension)
        # Rated before the record is written, so the record starts naming its rate.
        quote: Quote | None = None
        no_rate: NoRate | None = None
        if owned is not None and route is not None:
            try:
                quote = await self.ctx.charging.quote(
                    owned.e164,
                    Direction.INBOUND,
                    number_type=owned.number_type,
                    rate_set_id=rate_set_id,
                )
            except NoRate as exc:
                no_rate = exc
        record = self.store.start_work(
            call_id=self.call_id,
            direction=CallDirection.INBOUND,
            caller=self.caller_number,
            callee=number,
            channel_id=caller,
            started_at=self.started_at,
            number_e164=owned.e164 if owned else None,
            user_name=user.name if user else None,
            charge_state=ChargeState.AUTHORIZED if quote is not None else None,
            rate_id=quote.rate.id if quote is not None else None,
        )
        in_service = owned is not None and owned.state is not NumberState.SUSPENDED
        if quote is not None and route is not None and in_service:
            # The record's start and the first block's hold: one transaction.
            if not await self.authorize_quote(quote, record=record):
                return
            await self.routed(route, user)
            return
        await self.store.db.unit(record)
        self.recorded = True
        if owned is None:
            log.info("%s is not one of our numbers", number)
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_UNKNOWN_NUMBER)
            return
        if owned.state is NumberState.SUSPENDED:
            log.info("%s is suspended (rent unpaid): no incoming calls", owned.e164)
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_SUSPENDED)
            return
        if route is None:
            log.info("%s has no routing: no incoming calls", owned.e164)
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_NO_ROUTE)
            return
        if no_rate is not None:
            await self.refuse_no_rate(no_rate)
            return
        raise AssertionError("a rated call to a number in service is authorized above")

    async def routed(self, route: Route, user: Callee | None) -> None:
        """An authorized call goes where its number is routed."""
        if route.kind is RouteKind.FLOW:
            await self.run_flow(route.flow_name or "")
            return
        if user is None:
            await self.refuse(prompts.NOT_IN_SERVICE, Disposition.REFUSED_NO_ROUTE)
            return
        await self.ring_user(user)

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
        port = AriCallPort(self, self.ctx.media, self.ctx.timezone)
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
