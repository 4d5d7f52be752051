"""The calls of this app instance: start them, re-adopt them, stop them.

``on_stasis_start`` is the router's handler for a channel entering our Stasis app:
a new call is first admitted or refused by overload control (admission.py; a
refused call fails closed, never answered); carrier calls (``inbound,<number>``)
become an InboundCall, users' calls (``outbound,<number>``) an OutboundCall; a
callee entering (``dialed,<call id>``) belongs to a call already running and is
routed to it by its subscription, never here; anything else is hung up.

``adopt`` runs after every (re)connect of the events WebSocket: the channels of open
call records that no live call owns (the caller's is the record's ``channel_id``, a
callee's is tagged with the call id when it is originated) are re-adopted, their
charging resumed at the rate they started with; open call records whose channels are
gone are settled by the crash rule (``CallCharging.settle_lost``) and completed,
ended by the PBX at the time its CDR or an AMI Hangup event says
(``ctx.pbx_records``), else now.
One record that cannot be re-adopted or closed is logged and skipped: it never
stops the others. Only this PBX's records are looked at (``CallStore.pbx_node``,
the setting ``pbx_node``): with several PBXes on one database, another PBX's calls
are not in our ARI's channel list and must not be taken for lost; their own app
(or its restart) adopts and settles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from callcontrol.ari import ChannelEvents, StasisStart
from callcontrol.calls.adopted import AdoptedCall
from callcontrol.calls.call import CALL_ID_VAR, ROLE_VAR, Call, utcnow
from callcontrol.calls.context import CallContext
from callcontrol.calls.inbound import InboundCall
from callcontrol.calls.lost import close_lost
from callcontrol.calls.outbound import OutboundCall
from callcontrol.calls.routed import RoutedCall
from callcontrol.domain.call_records import CallRecord, is_agi_call
from callcontrol.domain.live_calls import LiveCall
from callcontrol.domain.rating import call_cost
from callcontrol.errors import AriError, AriNotFound, CallControlError
from callcontrol.logs import call_id_var

log = logging.getLogger(__name__)


class CallManager:
    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.ari = ctx.ari
        self.router = ctx.router
        self.store = ctx.store
        router = ctx.router
        self.calls: dict[str, Call] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.closing = False
        self.side_tasks: set[asyncio.Task[None]] = set()  # settlements, hang-ups
        router.on_stasis_start = self.on_stasis_start

    def on_stasis_start(self, event: StasisStart, events: ChannelEvents) -> None:
        kind = event.args[0] if event.args else ""
        metrics = self.ctx.metrics
        if metrics is not None and kind in ("inbound", "outbound"):
            metrics.call_setup(kind)
        if self.closing:
            log.warning("shutting down: channel %s goes back to the dialplan", event.channel.id)
            if metrics is not None:
                metrics.call_refused("shutting_down")
            self.router.unsubscribe(event.channel.id)
            self._side_task(self._fail_closed(event.channel.id))
            return
        if kind in ("inbound", "outbound"):
            admission = self.ctx.admission
            refused = admission.admit() if admission is not None else None
            if refused is not None:
                log.debug("overloaded (%s): channel %s is refused", refused, event.channel.id)
                if metrics is not None:
                    metrics.call_refused("overload")
                self.router.unsubscribe(event.channel.id)
                self._side_task(self._fail_closed(event.channel.id))
                return
            kinds = {"inbound": InboundCall, "outbound": OutboundCall}
            call: Call = kinds[kind](event, events, self.ctx)
            if admission is not None:
                admission.in_setup += 1
                call.on_setup_done = admission.setup_finished
            self._spawn(call)
            return
        # A callee whose call is gone (or an unexpected entry): do not leave it hanging.
        log.warning(
            "channel %s entered Stasis with args %s and no call owns it: hanging up",
            event.channel.id,
            event.args,
        )
        self.router.unsubscribe(event.channel.id)
        self._side_task(self._hangup_quietly(event.channel.id))

    def _spawn(self, call: Call) -> None:
        call.settle_later = self._settle_later
        token = call_id_var.set(call.call_id)
        try:
            task = asyncio.get_running_loop().create_task(call.run(), name=f"call-{call.call_id}")
        finally:
            call_id_var.reset(token)
        self.calls[call.call_id] = call
        self.tasks[call.call_id] = task
        task.add_done_callback(functools.partial(self._forget, call.call_id))
        if self.ctx.admission is not None:
            self.ctx.admission.live = len(self.tasks)

    def _forget(self, call_id: str, _task: object = None) -> None:
        call = self.calls.pop(call_id, None)
        self.tasks.pop(call_id, None)
        if self.ctx.admission is not None:
            self.ctx.admission.live = len(self.tasks)
        if call is None:
            return
        # Nothing of a call may outlive it: none of its tasks (and so none of their
        # timers), no event subscription of its channels.
        leftovers = [t.get_name() for t in call.own_tasks if not t.done()]
        subscribed = sum(self.router.is_subscribed(cid) for cid in call.channels.values())
        log.debug(
            "call %s released: %d tasks left, %d live calls, %d channel subscriptions",
            call_id,
            len(leftovers),
            len(self.tasks),
            subscribed,
        )
        if leftovers:
            log.error("call %s left tasks behind: %s", call_id, ", ".join(leftovers))

    def _side_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """A short fire-and-forget task, kept referenced until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def _fail_closed(self, channel_id: str) -> None:
        """A call that arrives while the app stops: "all circuits are busy", cause 34."""
        with contextlib.suppress(AriError):
            await self.ari.continue_in_dialplan(
                channel_id, context="callcontrol-unavailable", extension="s", priority=1
            )

    async def _hangup_quietly(self, channel_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.hangup(channel_id)

    # ---- after a (re)connect ----------------------------------------------------------

    async def adopt(self) -> None:
        """Find our calls in Asterisk again and finish records whose calls are gone."""
        channels = await self.ari.list_channels()
        by_call: dict[str, dict[str, str]] = defaultdict(dict)
        for channel in channels:
            call_id = channel.channelvars.get(CALL_ID_VAR, "")
            role = channel.channelvars.get(ROLE_VAR, "")
            if call_id and role:
                by_call[call_id][role] = channel.id
        present = {channel.id for channel in channels}

        # Live calls of this process that missed a hangup while the socket was down.
        for call in list(self.calls.values()):
            for role, channel_id in call.channels.items():
                if channel_id not in present and role not in call.gone:
                    log.info(
                        "channel %s of call %s vanished while disconnected",
                        channel_id,
                        call.call_id,
                    )
                    call.vanished(role)

        records = await self.store.open_records()  # this PBX's only
        log.info(
            "pbx node %s: %d open call records, %d tagged calls in Asterisk",
            self.store.pbx_node or "(any)",
            len(records),
            len(by_call),
        )
        for record in records:
            if record.call_id in self.calls or is_agi_call(record.call_id):
                continue  # ours and live, or a dialplan's call that the AGI server settles
            token = call_id_var.set(record.call_id)
            try:
                owned = by_call.get(record.call_id, {})
                if record.channel_id in present:
                    # The caller's channel is the record's: not tagged (two ARI requests
                    # a call saved). Its record is written before anything answers it,
                    # so a caller without a record was never answered: the carrier's
                    # own timeout ends it.
                    owned.setdefault("caller", record.channel_id)
                if owned:
                    await self._readopt(record, owned)
                else:
                    await self._close_lost(record)
            except CallControlError as exc:
                log.error("could not re-adopt or close the call: %s", exc)
            finally:
                call_id_var.reset(token)
        # Tagged channels with no open record (e.g. the record was completed by hand).
        for call_id, owned in by_call.items():
            if call_id not in self.calls and not await self.store.is_open(call_id):
                for channel_id in owned.values():
                    log.warning("channel %s of finished call %s: hanging up", channel_id, call_id)
                    await self._hangup_quietly(channel_id)

    async def _close_lost(self, record: CallRecord) -> None:
        """A call that ended while no app was connected: settle it at the end the PBX
        recorded (its CDR, or an AMI Hangup event), else by the crash rule at the time
        it was found gone; then close its record."""
        now = utcnow()
        found = None
        if self.ctx.pbx_records is not None:
            found = await self.ctx.pbx_records.call_end(record.channel_id, record.started_at)
        if found is None:
            ended_at, source = now, "no PBX record: the time it was found gone"
            if self.ctx.pbx_records is not None:
                log.warning(
                    "no PBX record of the end of channel %s: settled as ended now",
                    record.channel_id,
                )
        else:
            # The PBX's clock: never before the call began nor after now.
            ended_at = min(max(found[0], record.answered_at or record.started_at), now)
            source = f"the PBX's {found[1].upper()} record"
        if await close_lost(self.store, self.ctx.charging, record, ended_at):
            log.info(
                "the call ended while the app was away: recorded as %s, ended by the PBX "
                "at %s (%s)",
                "answered" if record.answered_at else "failed",
                ended_at.isoformat(timespec="milliseconds"),
                source,
            )

    async def _readopt(self, record: CallRecord, owned: dict[str, str]) -> None:
        if record.pbx_node != self.store.pbx_node:  # its channels are on our PBX
            await self.store.claim(record.call_id, record.pbx_node)
        for channel_id in owned.values():
            try:
                await self.ari.subscribe(channel_id)
            except AriError as exc:
                log.warning("could not subscribe to channel %s: %s", channel_id, exc)
        call = AdoptedCall(record, owned, self.ctx)
        await call.resume_charging()
        self._spawn(call)
        # A channel may have hung up between the listing and the subscription.
        for role, channel_id in owned.items():
            try:
                await self.ari.get_channel(channel_id)
            except AriNotFound:
                call.vanished(role)

    # ---- shutdown --------------------------------------------------------------------

    def _settle_later(self, call: Call) -> None:
        """Retry a call's final charge and record until they are written (the database
        was down, or the cleanup overran its deadline)."""
        token = call_id_var.set(call.call_id)
        try:
            task = asyncio.get_running_loop().create_task(
                self._retry_settlement(call), name=f"settle-{call.call_id}"
            )
        finally:
            call_id_var.reset(token)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def _retry_settlement(self, call: Call) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await call.complete_record()
                return
            except CallControlError as exc:
                log.warning("the call's settlement is retried: %s", exc)
                delay = min(delay * 2, 30.0)

    def snapshot(self) -> list[LiveCall]:
        """The live calls as read-only values, oldest first (for the console)."""
        out: list[LiveCall] = []
        for call in list(self.calls.values()):
            if call.finishing:
                continue
            if isinstance(call, AdoptedCall):
                record = call.record
                direction, caller, callee = record.direction, record.caller, record.callee
                started_at = record.started_at
            elif isinstance(call, RoutedCall):
                direction, caller, callee = call.direction, call.caller_number, call.dialled
                started_at = call.started_at
            else:
                continue
            session = call.charging
            talk = int(session.elapsed()) if session is not None else 0
            if session is None and call.answered_at is not None:
                talk = int((utcnow() - call.answered_at).total_seconds())
            out.append(
                LiveCall(
                    call_id=call.call_id,
                    direction=str(direction),
                    caller=caller,
                    callee=callee,
                    started_at=started_at,
                    answered_at=call.answered_at,
                    talk_seconds=max(talk, 0),
                    cost_micro=(
                        call_cost(session.rate, talk, answered=session.answered)
                        if session is not None
                        else None
                    ),
                    rate=session.rate.description if session is not None else None,
                )
            )
        return sorted(out, key=lambda live: live.started_at)

    def counts_by_direction(self) -> dict[str, int]:
        """The calls in progress by direction (the metrics read it when scraped)."""
        counts: dict[str, int] = {}
        for call in list(self.calls.values()):
            if isinstance(call, AdoptedCall):
                direction = str(call.record.direction)
            elif isinstance(call, RoutedCall):
                direction = str(call.direction)
            else:
                direction = "unknown"
            counts[direction] = counts.get(direction, 0) + 1
        return counts

    def credits_changed(self) -> None:
        """Credits were added (by any process): every live call re-plans its limit."""
        for call in list(self.calls.values()):
            if call.charging is not None:
                call.charging.credits_added()

    async def shutdown(self, detach: bool = True) -> None:
        """Stop every call task; detached calls stay up in Asterisk for the next start."""
        self.closing = True
        tasks = list(self.tasks.values())
        for call_id, call in list(self.calls.items()):
            if call.finishing:
                continue  # already ended: let its final charge and record complete
            if detach:
                call.detach()
            self.tasks[call_id].cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
