"""The IVR interpreter's CallPort over ARI, on an answered incoming call.

One consumer of the call's events at a time: each port method reads the call's
inbox itself while it waits (a playback to finish, a digit, the phone to answer),
so no pump task competes with ringing or bridging. Digits that arrive while they
cannot be used yet (a non-interruptible prompt, or keys typed ahead while the flow
was busy) wait in the IVR's ``DigitBuffer``, with the same overflow rule as every
port: before it plays or reads, the port takes the keys already received into the
buffer, so a flood keeps its first ``DIGIT_BUFFER`` keys and a waiting key skips a
prompt instead of starting and stopping it. The caller hanging up surfaces as
``CallerHungUp``. The port needs only what ``IvrCall`` names of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from callcontrol.ari import AriClient, ChannelDtmfReceived, PlaybackFinished
from callcontrol.calls.call import ChannelGone, Incoming
from callcontrol.calls.callee import Callee
from callcontrol.calls.media import PromptMedia
from callcontrol.calls.records import CallStore
from callcontrol.errors import AriNotFound
from callcontrol.ivr.model import Prompt
from callcontrol.ivr.port import CallerHungUp, DigitBuffer, RingOutcome

__all__ = ["AriCallPort", "IvrCall"]

log = logging.getLogger(__name__)

DIGIT_BUFFER = 32
PLAYBACK_DEADLINE = 120.0  # a prompt that never finishes must not hold the call


class IvrCall(Protocol):
    """What the port uses of an answered call (``InboundCall`` is one)."""

    call_id: str
    channels: dict[str, str]
    ari: AriClient
    store: CallStore

    async def next_event(self, timeout: float | None = None) -> Incoming: ...  # noqa: ASYNC109

    def note_gone(self, role: str, cause: int | None) -> None: ...

    async def ring(self, user: Callee) -> RingOutcome: ...

    def ended_by_flow(self) -> None: ...

    async def hangup(self, role: str, reason: str = "normal") -> None: ...


class AriCallPort:
    def __init__(self, call: IvrCall, media: PromptMedia, timezone: ZoneInfo) -> None:
        self.call = call
        self.media = media
        self.timezone = timezone
        self.digits = DigitBuffer(DIGIT_BUFFER)

    # ---- events --------------------------------------------------------------------------

    async def _next(self, timeout: float | None) -> ChannelDtmfReceived | PlaybackFinished | None:  # noqa: ASYNC109
        """The next DTMF or playback-finished event of the caller; None on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        item = await self.call.next_event()
                    except ChannelGone as gone:
                        if gone.role != "caller":
                            continue  # a stray end of a callee that did not answer
                        self.call.note_gone("caller", gone.cause)
                        raise CallerHungUp() from None
                    event = item.event
                    if item.role == "caller" and isinstance(
                        event, ChannelDtmfReceived | PlaybackFinished
                    ):
                        return event
        except TimeoutError:
            return None

    async def _take_waiting_keys(self) -> None:
        """Move the caller's keys already received into the digit buffer (its limit
        drops the newest of a flood). Never waits: ``_next(0)`` returns None as soon
        as it would have to."""
        while (event := await self._next(0)) is not None:
            if isinstance(event, ChannelDtmfReceived):
                self.digits.push(event.digit)

    # ---- CallPort ------------------------------------------------------------------------

    async def play(self, prompts: Sequence[Prompt], *, interruptible: bool) -> str | None:
        await self._take_waiting_keys()
        if interruptible and (digit := self.digits.pop()) is not None:
            return digit
        if not prompts:
            return None
        media = await self.media.uris(prompts)
        playback_id = f"{self.call.call_id}-{uuid.uuid4().hex[:8]}"
        caller = self.call.channels["caller"]
        try:
            await self.call.ari.play(caller, media, playback_id=playback_id)
        except AriNotFound:
            raise CallerHungUp() from None
        try:
            async with asyncio.timeout(PLAYBACK_DEADLINE):
                while True:
                    event = await self._next(None)
                    if isinstance(event, PlaybackFinished):
                        if event.playback.id == playback_id:
                            if event.playback.state == "failed":
                                log.error("a prompt failed to play: %s", ", ".join(media))
                            return None
                        continue
                    if isinstance(event, ChannelDtmfReceived):
                        if interruptible:
                            log.debug("barge-in: %s stops the prompt", event.digit)
                            await self._stop(playback_id)
                            return event.digit
                        self.digits.push(event.digit)
        except TimeoutError:
            log.warning("a prompt did not finish within %.0f s: stopping it", PLAYBACK_DEADLINE)
            await self._stop(playback_id)
            return None

    async def _stop(self, playback_id: str) -> None:
        with contextlib.suppress(AriNotFound):
            await self.call.ari.stop_playback(playback_id)

    async def read_digit(self, timeout: float) -> str | None:  # noqa: ASYNC109
        await self._take_waiting_keys()
        if (digit := self.digits.pop()) is not None:
            return digit
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            event = await self._next(remaining)
            if event is None:
                return None
            if isinstance(event, ChannelDtmfReceived):
                return event.digit

    def flush_digits(self) -> None:
        self.digits.flush()

    async def ring_user(self, user_name: str) -> RingOutcome:
        user = await self.call.store.user_by_name(user_name)
        if user is None:
            log.warning("the flow rings %r, who is not a user (any more)", user_name)
            return RingOutcome.UNKNOWN
        return await self._ring(user.name, user.extension)

    async def ring_extension(self, extension: str) -> RingOutcome:
        user = await self.call.store.user_by_extension(extension)
        if user is None:
            return RingOutcome.UNKNOWN
        return await self._ring(user.name, user.extension)

    async def _ring(self, name: str, extension: str) -> RingOutcome:
        try:
            return await self.call.ring(Callee(name, extension))
        except ChannelGone as gone:
            if gone.role == "caller":
                raise CallerHungUp() from None
            raise

    async def hangup(self) -> None:
        self.call.ended_by_flow()
        await self.call.hangup("caller")

    def now(self) -> datetime:
        return datetime.now(self.timezone)
