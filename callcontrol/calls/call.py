"""One call: its channels, their events merged in order, and its end.

A call owns one ``asyncio.TaskGroup``: a forwarding task per channel (merging each
channel's ordered events into the call's inbox) and whatever the call's state
needs (playbacks, timers). The call's coroutine runs the states; when it returns
or is cancelled, ``finish`` hangs up what is still up and completes the call record
in ``finally`` under a short, shielded deadline, exactly once.

A call that is *detached* (the app shuts down on SIGTERM) leaves its channels up
and its record open: the next start re-adopts it (see manager.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callcontrol.ari import (
    Channel,
    ChannelDestroyed,
    ChannelEvents,
    ChannelHangupRequest,
    Event,
    PlaybackFinished,
    StasisEnd,
)
from callcontrol.calls.prompts import Refusal
from callcontrol.domain.call_records import Disposition, EndedBy
from callcontrol.errors import AriError, AriNotFound, CallControlError, StoreError
from callcontrol.logs import call_id_var

if TYPE_CHECKING:
    from callcontrol.billing.session import CallChargingSession
    from callcontrol.calls.context import CallContext

log = logging.getLogger(__name__)

# Set on the channels a call originates (in the originate request), so that a restarted
# app finds them again; a caller's channel is found by its call record's channel_id.
CALL_ID_VAR = "CALLCONTROL_CALL_ID"
ROLE_VAR = "CALLCONTROL_ROLE"
CLEANUP_DEADLINE = 5.0
PROMPT_DEADLINE = 30.0


def new_call_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Incoming:
    """One event, tagged with the role of the channel it came from."""

    role: str
    event: Event


class ChannelGone(Exception):
    """A channel of the call hung up (raised inside a state to end it)."""

    def __init__(self, role: str, cause: int | None) -> None:
        super().__init__(role)
        self.role = role
        self.cause = cause


class Call:
    """Base of every call: channels by role, a merged inbox, and a guaranteed end."""

    def __init__(self, call_id: str, ctx: CallContext, *, recorded: bool) -> None:
        self.call_id = call_id
        self.ctx = ctx
        self.ari = ctx.ari
        self.router = ctx.router
        self.store = ctx.store
        self.charging: CallChargingSession | None = None  # rated calls, once authorized
        self.ended_at: datetime | None = None
        self.pbx_ended_at: datetime | None = None  # the PBX's record of an unseen end
        # Called when the final charge cannot be written now (the database is down).
        self.settle_later: Callable[[Call], None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self.own_tasks: list[asyncio.Task[None]] = []  # every task the call started
        self.channels: dict[str, str] = {}  # role -> channel id
        self.gone: set[str] = set()  # roles whose channel has hung up
        self.inbox: asyncio.Queue[Incoming] = asyncio.Queue()
        self.bridge_id: str | None = None
        self.detached = False
        self.answered_at: datetime | None = None  # when the caller was connected
        self.disposition: Disposition | None = None
        self.ended_by: EndedBy | None = None
        self.cause: int | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._pending: list[tuple[str, ChannelEvents]] = []
        self._finished = False
        self.recorded = recorded  # whether the call record exists (finish completes it)
        # Called once when the call leaves its setup (connected or ended): overload control.
        self.on_setup_done: Callable[[], None] | None = None
        self.arrived = asyncio.get_running_loop().time()  # the StasisStart, for setup delay
        self._progressed = False

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Run the call to its end; never raises except CancelledError."""
        call_id_var.set(self.call_id)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for role, events in self._pending:
                    self._start_forwarding(role, events)
                self._pending.clear()
                try:
                    await self.handle()
                except ChannelGone as gone:
                    self.note_gone(gone.role, gone.cause)
                finally:
                    for task in self._background:
                        task.cancel()
                    self._close_subscriptions()
        except* CallControlError as group:
            for exc in group.exceptions:
                log.error("call failed: %s", exc)
            self.disposition = self.disposition or Disposition.FAILED
        except* Exception:
            log.exception("call crashed")
            self.disposition = self.disposition or Disposition.FAILED
        finally:
            self._tg = None
            self.setup_done()
            await asyncio.shield(self._finish_under_deadline())

    async def handle(self) -> None:
        raise NotImplementedError

    def setup_progressed(self) -> None:
        """The call takes its first step out (rings a user, answers into a flow): how
        long the app took since the StasisStart tells overload control how it keeps up."""
        admission = self.ctx.admission
        if admission is not None and self.on_setup_done is not None and not self._progressed:
            self._progressed = True
            admission.took(asyncio.get_running_loop().time() - self.arrived)

    def setup_done(self) -> None:
        """The call is connected (to a user or a flow) or has ended: no longer in setup."""
        done, self.on_setup_done = self.on_setup_done, None
        if done is not None:
            done()

    def detach(self) -> None:
        """Leave the channels up and the record open (app shutdown); cancel separately."""
        self.detached = True

    # ---- channels and events ----------------------------------------------------------

    def background(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` alongside the call's states until the call ends (e.g. the charger)."""
        if self._tg is None:
            raise RuntimeError("the call is not running")
        task = self._tg.create_task(coro, name=f"{name}-{self.call_id}")
        self._background.append(task)
        self.own_tasks.append(task)

    def live_channels(self) -> list[str]:
        return [cid for role, cid in self.channels.items() if role not in self.gone]

    def attach(self, role: str, channel_id: str, events: ChannelEvents | None = None) -> None:
        """Own a channel: route its events into the inbox, tagged with ``role``."""
        self.channels[role] = channel_id
        subscription = events or self.router.subscribe(channel_id)
        if self._tg is None:
            self._pending.append((role, subscription))
        else:
            self._start_forwarding(role, subscription)

    def _start_forwarding(self, role: str, events: ChannelEvents) -> None:
        assert self._tg is not None
        task = self._tg.create_task(
            self._forward(role, events), name=f"events-{role}-{self.call_id}"
        )
        self.own_tasks.append(task)

    async def _forward(self, role: str, events: ChannelEvents) -> None:
        async for event in events:
            self.inbox.put_nowait(Incoming(role, event))

    def vanished(self, role: str) -> None:
        """A channel disappeared while we were not listening: treat it as hung up."""
        channel_id = self.channels[role]
        self.inbox.put_nowait(
            Incoming(
                role, ChannelDestroyed(type="ChannelDestroyed", channel=Channel(id=channel_id))
            )
        )

    def _close_subscriptions(self) -> None:
        for channel_id in self.channels.values():
            self.router.unsubscribe(channel_id)

    async def next_event(self, timeout: float | None = None) -> Incoming:  # noqa: ASYNC109
        """The next event of any channel; raises ChannelGone when a channel hangs up.

        A channel reports its end several times (hangup request, StasisEnd,
        ChannelDestroyed): only the first counts; later events of a channel that is
        gone are dropped here.
        """
        async with asyncio.timeout(timeout):
            while True:
                item = await self.inbox.get()
                if item.role not in self.gone:
                    break
        event = item.event
        if isinstance(event, ChannelHangupRequest):
            self.cause = event.cause if event.cause is not None else self.cause
            raise ChannelGone(item.role, event.cause)
        if isinstance(event, StasisEnd | ChannelDestroyed):
            cause = event.cause if isinstance(event, ChannelDestroyed) else self.cause
            raise ChannelGone(item.role, cause)
        return item

    async def wait_for_hangup(self) -> None:
        """Both sides are talking: the first to hang up ends the call for both."""
        while True:
            try:
                await self.next_event()
            except ChannelGone as gone:
                self.note_gone(gone.role, gone.cause)
                log.debug("the %s hung up", gone.role)
                return

    def note_gone(self, role: str, cause: int | None) -> None:
        self.gone.add(role)
        charging = self.charging
        if self.ended_by is None and charging is not None and charging.ended_at_limit():
            log.info(
                "the paid time ran out (%s): the PBX ended the call at %d s",
                "no credits left" if charging.cut_off else "charging was unavailable",
                charging.paid_until,
            )
            self.ended_by = EndedBy.SYSTEM
        if self.ended_by is None:
            self.ended_by = EndedBy.CALLER if role == "caller" else EndedBy.CALLEE
        if cause is not None:
            self.cause = cause

    # ---- actions -------------------------------------------------------------------

    async def play_and_wait(self, role: str, media: list[str]) -> None:
        """Play to one channel and wait until it finishes (ChannelGone if it hangs up)."""
        channel_id = self.channels[role]
        playback_id = f"{self.call_id}-{uuid.uuid4().hex[:8]}"
        await self.ari.play(channel_id, media, playback_id=playback_id)
        async with asyncio.timeout(PROMPT_DEADLINE):
            while True:
                item = await self.next_event()
                if (
                    isinstance(item.event, PlaybackFinished)
                    and item.event.playback.id == playback_id
                ):
                    return

    async def refuse(self, refusal: Refusal, disposition: Disposition) -> None:
        """Tell the caller why as early media, then release the call with a cause."""
        self.disposition = disposition
        self.ended_by = EndedBy.SYSTEM
        if self.ctx.metrics is not None:
            self.ctx.metrics.call_refused_as(disposition)
        caller = self.channels["caller"]
        log.info("refusing the call: %s (%s)", disposition.value, refusal.reason)
        try:
            if self.answered_at is None:  # early media: the call is never answered
                await self.ari.request("POST", f"/channels/{caller}/progress")
            await self.play_and_wait("caller", refusal.uris)
        except TimeoutError:
            log.warning("the refusal prompt did not finish in %.0f s", PROMPT_DEADLINE)
        await self.hangup("caller", refusal.reason)

    async def hangup(self, role: str, reason: str = "normal") -> None:
        channel_id = self.channels.get(role)
        if channel_id is None or role in self.gone:
            return
        self.gone.add(role)
        with contextlib.suppress(AriNotFound):  # already gone
            await self.ari.hangup(channel_id, reason)

    # ---- the end ---------------------------------------------------------------------

    async def _finish_under_deadline(self) -> None:
        call_id_var.set(self.call_id)
        try:
            async with asyncio.timeout(CLEANUP_DEADLINE):
                await self.finish()
        except TimeoutError:
            log.error("cleanup did not finish within %.0f s", CLEANUP_DEADLINE)
            self._settle_later()
        except Exception:
            log.exception("cleanup failed")
            self._settle_later()

    def _settle_later(self) -> None:
        """The record must not stay open (its credits held) until the next restart:
        its settlement is retried in the background (idempotent)."""
        if self.recorded and not self.detached and self.settle_later is not None:
            self.settle_later(self)

    @property
    def finishing(self) -> bool:
        """The call has ended and its cleanup runs (shutdown lets it complete)."""
        return self._finished

    async def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._close_subscriptions()
        if self.detached:
            log.info("detached: channels stay up, the next start re-adopts the call")
            return
        # The talk time ends now, however long the hang-ups and the settlement take
        # (or when the PBX recorded it: a side hung up while no app was connected).
        self.ended_at = self.pbx_ended_at or utcnow()
        if self.charging is not None:
            if self.pbx_ended_at is not None and self.answered_at is not None:
                self.charging.hung_up((self.pbx_ended_at - self.answered_at).total_seconds())
            else:
                self.charging.hung_up()
        for role in list(self.channels):
            try:
                await self.hangup(role)
            except AriError as exc:
                log.warning("could not hang up the %s channel: %s", role, exc)
        if self.bridge_id is not None:
            try:
                await self.ari.destroy_bridge(self.bridge_id)
            except AriNotFound:
                pass
            except AriError as exc:
                log.warning("could not destroy bridge %s: %s", self.bridge_id, exc)
        if not self.recorded:
            log.info("call ended before it was recorded: %s", self.disposition)
            return
        try:
            await self.complete_record()
        except StoreError as exc:
            log.error("the call's charge and record wait for the database: %s", exc)
            self._settle_later()

    async def complete_record(self) -> None:
        """Settle the charge and close the record; idempotent, so it may be retried."""
        disposition = self.disposition or (
            Disposition.ANSWERED if self.answered_at else Disposition.FAILED
        )
        ended_at = self.ended_at or utcnow()
        finish = self.store.finish_work(
            self.call_id, ended_at, disposition, self.cause, self.ended_by or EndedBy.SYSTEM
        )
        if self.charging is not None:
            # the settlement and the record's end: one transaction
            applied = bool(await self.charging.settle(also=finish))
        else:
            applied = await self.store.db.unit(finish)
        log.info(
            "call ended: %s, ended by %s, cause %s%s",
            disposition.value,
            (self.ended_by or EndedBy.SYSTEM).value,
            self.cause,
            "" if applied else " (record was already complete)",
        )
