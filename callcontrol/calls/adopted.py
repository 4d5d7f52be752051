"""A call found again after a restart: wait for its end, charge it, record it.

The manager re-subscribes to the call's channels and resumes its charging session
from the ledger (``CallCharging.resume``) before the call runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callcontrol.calls.call import Call, utcnow
from callcontrol.calls.limits import PbxLimits
from callcontrol.domain.call_records import CallDirection, CallRecord, Disposition, EndedBy
from callcontrol.errors import CallControlError

if TYPE_CHECKING:
    from callcontrol.calls.context import CallContext

__all__ = ["AdoptedCall"]

log = logging.getLogger(__name__)


class AdoptedCall(Call):
    """A call found again after a restart: wait for its end, charge it, record it.

    A bridged call is followed to its end. A call that was in an IVR menu cannot be
    resumed where it was (the menu state died with the old process): it is ended,
    and charged for the time it ran.
    """

    def __init__(self, record: CallRecord, channels: dict[str, str], ctx: CallContext) -> None:
        super().__init__(record.call_id, ctx, recorded=True)
        self.record = record
        for role, channel_id in channels.items():
            self.attach(role, channel_id)
        self.bridge_id = record.call_id if "callee" in channels else None
        self.answered_at = record.answered_at
        self.disposition = Disposition.ANSWERED if record.answered_at else None

    async def resume_charging(self) -> None:
        """The call's charging session, at the rate it started with, from the ledger.

        Without one (the record cannot be read back), the call is still followed to
        its end: the PBX ends it at the paid second it was given before the restart.
        """
        user_role = "caller" if self.record.direction is CallDirection.OUTBOUND else "callee"
        limits = PbxLimits(self, self.ari, self.ctx.media, user_role)
        try:
            self.charging = await self.ctx.charging.resume(self.record, limits)
        except CallControlError as exc:
            log.error("cannot resume charging (%s): the PBX still ends the call when paid", exc)

    async def _pbx_end(self) -> None:
        """The caller hung up while no app was connected: the talk ended when the PBX
        recorded (its CDR), not now. Without a record: now, as before."""
        records = self.ctx.pbx_records
        channel, since = self.record.channel_id, self.record.started_at
        found = await records.call_end(channel, since) if records is not None else None
        if found is None:
            log.warning("no PBX record of when the caller hung up: the talk ends now")
            return
        self.pbx_ended_at = min(max(found[0], self.answered_at or found[0]), utcnow())
        log.info(
            "the caller hung up at %s (the PBX's %s record)",
            self.pbx_ended_at.isoformat(timespec="milliseconds"),
            found[1].upper(),
        )

    async def handle(self) -> None:
        missing = {"caller", "callee"} - set(self.channels)
        if "caller" in missing and self.answered_at is not None:
            await self._pbx_end()  # before charging resumes: never charge past the end
        if self.charging is not None and self.answered_at is not None:
            elapsed = ((self.pbx_ended_at or utcnow()) - self.answered_at).total_seconds()
            await self.charging.resume(elapsed)
            self.background(self.charging.run(), "charging")
        if missing:
            # One side hung up while the app was away (or the caller was in a menu).
            log.info("re-adopted call has no %s: ending it", ", ".join(sorted(missing)))
            self.ended_by = EndedBy.CALLER if "caller" in missing else EndedBy.SYSTEM
            return
        log.info("re-adopted the call (channels %s)", ", ".join(self.channels.values()))
        await self.wait_for_hangup()
