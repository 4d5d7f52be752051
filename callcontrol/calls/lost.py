"""Closing a call that ended while no app watched it: the crash rule, then the record.

Used by ``CallManager.adopt`` (a call of our PBX whose channels are gone at connect)
and by ``callcontrol calls close-lost`` (the open calls of a PBX that is gone for
good, whose own app will never start again to close them).
"""

from __future__ import annotations

from datetime import datetime

from callcontrol.billing.session import CallCharging
from callcontrol.calls.records import CallStore
from callcontrol.domain.call_records import CallRecord, Disposition, EndedBy

__all__ = ["close_lost"]


async def close_lost(
    store: CallStore, charging: CallCharging, record: CallRecord, ended_at: datetime
) -> bool:
    """Settle ``record`` by the crash rule (``CallCharging.settle_lost``: charged at most
    what was held for it, up to ``ended_at``: the PBX's recorded end, or the time the
    call was found gone), then complete it, ended by the PBX then. Idempotent; whether
    this call closed the record."""
    await charging.settle_lost(record, ended_at)
    disposition = Disposition.ANSWERED if record.answered_at else Disposition.FAILED
    return await store.finish(record.call_id, ended_at, disposition, None, EndedBy.PBX)
