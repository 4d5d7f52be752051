"""Rate sets and their rates: an import adds a set; the newest set is in force.

Like ``repositories``, ``RateRepository`` works inside the caller's session (one
transaction) and returns frozen values from ``callcontrol.domain.rating``. Rates are
never changed: call records point at the price they were charged at.

Old sets are deleted only by ``prune(keep)`` (``callcontrol rates prune``), which
keeps the newest ``keep`` sets, every set with a rate a call record names
(``call_records.rate_id``), and every set that was in force since the oldest call
still open started (a live call may be priced by any of them). The rest go, with
their rates.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction, Rate, RateSet
from callcontrol.store.models import CallRecordRow, RateRow, RateSetRow
from callcontrol.store.unit import UnitSession, prepared

__all__ = ["RateRepository"]


def _rate(row: RateRow) -> Rate:
    return Rate(
        id=row.id,
        direction=Direction(row.direction),
        prefix=row.prefix,
        country=row.country,
        number_type=None if row.number_type is None else NumberType(row.number_type),
        price_per_minute=row.price_per_minute_micro,
        connection_fee=row.connection_fee_micro,
        first_increment=row.first_increment,
        next_increment=row.next_increment,
        description=row.description,
    )


def _rate_set(row: RateSetRow) -> RateSet:
    return RateSet(
        id=row.id,
        source=row.source,
        sha256=row.sha256,
        rate_count=row.rate_count,
        imported_at=row.imported_at,
    )


async def current_set_id(session: AsyncSession | UnitSession) -> int | None:
    """The id of the rate set in force (the newest; None before any import): the
    cheap look that tells a process its cached rates are stale."""
    newest: int | None = await session.scalar(_CURRENT_SET_ID)
    return newest


_CURRENT_SET_ID = prepared(select(func.max(RateSetRow.id)))


class RateRepository:
    """Rate sets: an import adds a set; the newest set is in force."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_set(self, source: str, sha256: str, rates: Sequence[Rate]) -> RateSet:
        """Insert a rate set and all its rates (in the caller's one transaction)."""
        row = RateSetRow(source=source[-256:], sha256=sha256, rate_count=len(rates))
        self._session.add(row)
        await self._session.flush()
        if rates:
            await self._session.execute(
                insert(RateRow),
                [
                    {
                        "rate_set_id": row.id,
                        "direction": rate.direction.value,
                        "prefix": rate.prefix,
                        "country": rate.country,
                        "number_type": None if rate.number_type is None else rate.number_type,
                        "price_per_minute_micro": rate.price_per_minute,
                        "connection_fee_micro": rate.connection_fee,
                        "first_increment": rate.first_increment,
                        "next_increment": rate.next_increment,
                        "description": rate.description[:256],
                    }
                    for rate in rates
                ],
            )
        return _rate_set(row)

    async def current_set(self) -> RateSet | None:
        row = await self._session.scalar(
            select(RateSetRow)
            .order_by(RateSetRow.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return None if row is None else _rate_set(row)

    async def current_rates(self) -> list[Rate]:
        """The rates in force (of the newest set), in one query; [] before any import."""
        newest = select(func.max(RateSetRow.id)).scalar_subquery()
        rows = await self._session.scalars(
            select(RateRow)
            .where(RateRow.rate_set_id == newest)
            .order_by(RateRow.direction, RateRow.country, RateRow.prefix, RateRow.number_type)
            .execution_options(populate_existing=True)
        )
        return [_rate(row) for row in rows]

    async def prune(self, keep: int) -> list[RateSet]:
        """Delete the rate sets nothing needs any more (module docstring); returns them.
        ``keep`` >= 1: the set in force always stays."""
        if keep < 1:
            raise ValueError("keep at least the rate set in force")
        sets = list(await self._session.scalars(select(RateSetRow).order_by(RateSetRow.id.desc())))
        kept = {row.id for row in sets[:keep]}
        charged = select(CallRecordRow.rate_id).where(CallRecordRow.rate_id.is_not(None))
        kept.update(
            await self._session.scalars(
                select(RateRow.rate_set_id).where(RateRow.id.in_(charged)).distinct()
            )
        )
        oldest_open = await self._session.scalar(
            select(func.min(CallRecordRow.started_at)).where(CallRecordRow.ended_at.is_(None))
        )
        if oldest_open is not None:
            in_force_then = [row.id for row in sets if row.imported_at <= oldest_open]
            since = in_force_then[0] if in_force_then else 0
            kept.update(row.id for row in sets if row.id >= since)
        pruned = [row for row in sets if row.id not in kept]
        if pruned:
            ids = [row.id for row in pruned]
            await self._session.execute(delete(RateRow).where(RateRow.rate_set_id.in_(ids)))
            await self._session.execute(delete(RateSetRow).where(RateSetRow.id.in_(ids)))
        return [_rate_set(row) for row in reversed(pruned)]

    async def get(self, rate_id: int) -> Rate | None:
        """Any rate by id, in force or from an older set (call records point at them)."""
        row = await self._session.get(RateRow, rate_id)
        return None if row is None else _rate(row)
