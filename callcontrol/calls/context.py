"""What every call needs from the rest of the app, in one object.

Built once by the composition root (app.py) and handed to each call, so a call's
constructor stays short and tests can build one with real parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from callcontrol.ari import AriClient, EventRouter
from callcontrol.billing.session import CallCharging
from callcontrol.calls.admission import Admission
from callcontrol.calls.media import PromptMedia
from callcontrol.calls.records import CallStore
from callcontrol.ivr.registry import FlowRegistry


class CallMetrics(Protocol):
    """What calls count (``callcontrol.metrics.Metrics``): one increment per hook."""

    def call_setup(self, direction: str) -> None: ...

    def call_refused(self, cause: str) -> None: ...

    def call_refused_as(self, disposition: str) -> None: ...


class CallEnds(Protocol):
    """The PBX's own record of a call's end (``callcontrol.ami.records.PbxRecords``)."""

    async def call_end(
        self, channel_id: str, since: datetime | None = None
    ) -> tuple[datetime, str] | None: ...


@dataclass
class CallContext:
    ari: AriClient
    router: EventRouter
    store: CallStore
    charging: CallCharging  # quotes, and a charging session per rated call
    media: PromptMedia
    flows: FlowRegistry | None = None
    ring_timeout: int = 30
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    country: str = "GB"  # whose emergency numbers users may dial
    main_number: str = ""  # presented by emergency calls of users without a number
    admission: Admission | None = None  # overload control; None: every call is taken
    metrics: CallMetrics | None = None  # None: nothing counted
    # When calls that ended unseen really ended (CDR, AMI); None: the crash rule's "now".
    pbx_records: CallEnds | None = None
