"""Call records (CDRs): one per call, written at start, completed at hangup.

A record is finished exactly once: the first ``finish`` wins and later ones
(a duplicate hangup event, a reconciliation from AMI) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "AGI_CALL_PREFIX",
    "CallDirection",
    "CallRecord",
    "Disposition",
    "EndedBy",
    "is_agi_call",
]


class CallDirection(StrEnum):
    INBOUND = "inbound"  # a caller dialled one of the organisation's numbers
    OUTBOUND = "outbound"  # a user called an outside number
    INTERNAL = "internal"  # a user called another user's extension


class Disposition(StrEnum):
    """How a call ended. Stored as text without a database CHECK, so it may grow."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    REFUSED_NO_ROUTE = "refused_no_route"
    REFUSED_UNKNOWN_NUMBER = "refused_unknown_number"
    FAILED = "failed"
    ABANDONED = "abandoned"
    REFUSED_NO_CREDIT = "refused_no_credit"  # the wallet cannot pay the first block
    REFUSED_NO_RATE = "refused_no_rate"  # no rate prices the call: never free by accident
    INVALID_NUMBER = "invalid_number"  # a user dialled something that is not a number
    NOT_ALLOWED = "not_allowed"  # a user with no number of their own tried to call out
    REFUSED_SUSPENDED = "refused_suspended"  # the number is suspended: its rent is unpaid


class EndedBy(StrEnum):
    """Who hung up: the caller, the callee, the app (e.g. credits ran out), the PBX."""

    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"
    PBX = "pbx"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call. Times are timezone-aware UTC; the open fields are None until known."""

    call_id: str
    direction: CallDirection
    caller: str
    callee: str
    number_e164: str | None
    user_id: int | None
    user_name: str | None
    channel_id: str
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    disposition: Disposition | str | None = None
    hangup_cause: int | None = None
    ended_by: EndedBy | None = None
    # Charging: the rate used, seconds billed by its increments, the cost in
    # micro-credits, and the state (``callcontrol.domain.charging.ChargeState``).
    rate_id: int | None = None
    billable_seconds: int | None = None
    cost_micro: int | None = None
    charge_state: str | None = None
    # The PBX (setting ``pbx_node``) whose channels carry the call; None: written before
    # scale-out (migration 0007), when one PBX served the database.
    pbx_node: str | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


#: Ids of calls driven by a dialplan over FastAGI (callcontrol.agi) start with this
#: (never a hex digit, so never an ARI call's uuid): the ARI app's re-adoption and
#: crash rule leave them to the AGI server, which settles them.
AGI_CALL_PREFIX = "agi"


def is_agi_call(call_id: str) -> bool:
    return call_id.startswith(AGI_CALL_PREFIX)
