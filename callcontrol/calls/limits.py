"""The charging session's view of a call over ARI (``billing.session.CallLimits``).

The session decides; this only obeys: ``TIMEOUT(absolute)`` on the call's live
channels (Asterisk itself then ends the call at the paid second, even if the app is
gone), and a spoken warning to the user, never to the outside party.
"""

from __future__ import annotations

import logging

from callcontrol.ari import AriClient
from callcontrol.calls.call import Call
from callcontrol.calls.media import PromptMedia
from callcontrol.errors import AriError, AriNotFound, CallControlError
from callcontrol.ivr.model import Say

__all__ = ["PbxLimits"]

log = logging.getLogger(__name__)


class PbxLimits:
    def __init__(self, call: Call, ari: AriClient, media: PromptMedia, user_role: str) -> None:
        self.call = call
        self.ari = ari
        self.media = media
        self.user_role = user_role  # the leg of the organisation's user

    async def set_paid_time(self, seconds: float, channel_id: str | None = None) -> None:
        channels = self.call.live_channels() if channel_id is None else [channel_id]
        for channel in channels:
            try:
                await self.ari.set_variable(channel, "TIMEOUT(absolute)", f"{seconds:.3f}")
            except AriNotFound:
                pass  # hung up meanwhile
            except AriError as exc:
                log.error("could not set the paid-time limit on %s: %s", channel, exc)

    async def warn_low_credit(self, seconds: int) -> None:
        role = self.user_role
        if role not in self.call.channels or role in self.call.gone:
            return
        when = "one minute" if seconds == 60 else f"{seconds} seconds"
        try:
            media = await self.media.uri(Say(f"This call will end in {when}."))
            playback = await self.ari.play(self.call.channels[role], [media])
        except (AriError, CallControlError) as exc:
            log.warning("could not warn the user that the credits end: %s", exc)
            return
        log.info("warned the %s: the credits end in %d s (playback %s)", role, seconds, playback.id)
