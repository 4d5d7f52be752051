"""Read-only pages of the call history and the ledger, for the console and its API.

Both are keyset-paginated, newest first: a page ends with a cursor naming its last
row, and the next page starts strictly after it. No OFFSET, so page 2,000 of
100,000 records costs what page 1 costs: an index range scan
(``ix_call_records_started_at``; the ledger's primary key).

Call history filters: a time range ``[since, until)``, user name, number (the
organisation's number, or the caller/callee for calls without one), direction,
disposition. Each row carries the rate it was charged at (joined by ``rate_id``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import LedgerEntry
from callcontrol.errors import InvalidInput
from callcontrol.store.db import Database
from callcontrol.store.models import CallRecordRow, LedgerEntryRow, RateRow
from callcontrol.store.repositories import _record
from callcontrol.store.wallet.common import entry

__all__ = ["CallFilter", "CallHistory", "CallRow", "LedgerPage"]

MAX_PAGE = 500
EXPORT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class CallFilter:
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    number: str | None = None
    direction: str | None = None
    disposition: str | None = None


@dataclass(frozen=True, slots=True)
class CallRow:
    """A call record with the rate it was charged at (None when not charged)."""

    record: CallRecord
    rate_description: str | None
    rate_per_minute: int | None  # micro-credits
    rate_increments: str | None  # e.g. 60/60


def _encode(started_at: datetime, call_id: str) -> str:
    raw = f"{started_at.astimezone(UTC).isoformat()}|{call_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, call_id = raw.partition("|")
        at = datetime.fromisoformat(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"invalid page cursor {cursor[:40]!r}") from None
    if not call_id or at.tzinfo is None:
        raise InvalidInput(f"invalid page cursor {cursor[:40]!r}")
    return at, call_id


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def _calls_query(where: CallFilter) -> Select[tuple[CallRecordRow, RateRow]]:
    query = select(CallRecordRow, RateRow).outerjoin(RateRow, RateRow.id == CallRecordRow.rate_id)
    c = CallRecordRow
    if where.since is not None:
        query = query.where(c.started_at >= where.since)
    if where.until is not None:
        query = query.where(c.started_at < where.until)
    if where.user:
        query = query.where(c.user_name == where.user)
    if where.number:
        query = query.where(
            or_(c.number_e164 == where.number, c.caller == where.number, c.callee == where.number)
        )
    if where.direction:
        query = query.where(c.direction == where.direction)
    if where.disposition:
        query = query.where(c.disposition == where.disposition)
    return query.order_by(c.started_at.desc(), c.call_id.desc())


def _row(record_row: CallRecordRow, rate: RateRow | None) -> CallRow:
    return CallRow(
        record=_record(record_row),
        rate_description=rate.description if rate else None,
        rate_per_minute=rate.price_per_minute_micro if rate else None,
        rate_increments=f"{rate.first_increment}/{rate.next_increment}" if rate else None,
    )


async def _page(
    session: AsyncSession, where: CallFilter, limit: int, after: tuple[datetime, str] | None
) -> list[CallRow]:
    query = _calls_query(where)
    if after is not None:
        at, call_id = after
        c = CallRecordRow
        query = query.where(or_(c.started_at < at, and_(c.started_at == at, c.call_id < call_id)))
    rows = (await session.execute(query.limit(limit))).all()
    return [_row(r[0], r[1]) for r in rows]


class CallHistory:
    """Pages of call records on ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, where: CallFilter, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[CallRow], str | None]:
        """One page and the cursor of the next (None on the last page)."""
        limit = _limit(limit)
        after = _decode(cursor) if cursor else None
        async with self._db.session() as session:
            rows = await _page(session, where, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1].record if rows and more else None
        return rows, (_encode(last.started_at, last.call_id) if last else None)

    async def export(self, where: CallFilter) -> AsyncIterator[CallRow]:
        """Every matching record, newest first, read in batches (one session each)."""
        after: tuple[datetime, str] | None = None
        while True:
            async with self._db.session() as session:
                rows = await _page(session, where, EXPORT_BATCH, after)
            for row in rows:
                yield row
            if len(rows) < EXPORT_BATCH:
                return
            last = rows[-1].record
            after = (last.started_at, last.call_id)


class LedgerPage:
    """Pages of the wallet's ledger, newest first, by entry id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, *, limit: int = 50, before_id: int | None = None
    ) -> tuple[list[LedgerEntry], int | None]:
        """One page and the ``before_id`` of the next (None on the last page)."""
        limit = _limit(limit)
        query = select(LedgerEntryRow).order_by(LedgerEntryRow.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(LedgerEntryRow.id < before_id)
        async with self._db.session() as session:
            rows = list(await session.scalars(query))
        entries = [entry(r) for r in rows[:limit]]  # same column names
        more = len(rows) > limit
        return entries, (entries[-1].id if more and entries else None)
