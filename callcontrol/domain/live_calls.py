"""A live call as the console shows it: a read-only snapshot, taken on the event loop.

``CallManager.snapshot()`` builds these from its calls; the console joins them with
the open call records (who, which number) and renders them. Money is micro-credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["LiveCall", "LiveCallSource"]


@dataclass(frozen=True, slots=True)
class LiveCall:
    call_id: str
    direction: str  # inbound, outbound, internal
    caller: str
    callee: str
    started_at: datetime
    answered_at: datetime | None
    talk_seconds: int  # since the answer; 0 until answered
    cost_micro: int | None  # what the call costs so far at its rate; None: not charged
    rate: str | None  # the rate's description, when the call is charged


class LiveCallSource(Protocol):
    """What knows the live calls: the serve process's CallManager, or a test's stand-in."""

    def snapshot(self) -> list[LiveCall]: ...
