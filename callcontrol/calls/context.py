"""What every call needs from the rest of the app, in one object.

Built once by the composition root (app.py) and handed to each call, so a call's
constructor stays short and tests can build one with real parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from callcontrol.ari import AriClient, EventRouter
from callcontrol.billing.service import ChargingService
from callcontrol.calls.media import PromptMedia
from callcontrol.calls.records import CallStore
from callcontrol.domain.charging import DEFAULT_INTERVAL
from callcontrol.ivr.registry import FlowRegistry


@dataclass
class CallContext:
    ari: AriClient
    router: EventRouter
    store: CallStore
    charging: ChargingService
    media: PromptMedia
    flows: FlowRegistry | None = None
    ring_timeout: int = 30
    charge_interval: int = DEFAULT_INTERVAL
    credit_warning: int = 60
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
