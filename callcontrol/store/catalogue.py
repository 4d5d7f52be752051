"""The number inventory's rows (``catalogue_numbers``): import, search, reserve, acquire.

Each state change is one conditional UPDATE, so concurrent purchases on SQLite or on
one PostgreSQL shared by several processes never hold or sell a number twice: the
statement that finds the row in the expected state wins, the other changes nothing.
A reservation past its expiry and an ageing number past its date count as available
(no job has to free them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.carrier.port import Coverage, Offer
from callcontrol.domain.numbers import NumberType
from callcontrol.store.models import CatalogueNumberRow, NumberRow, utcnow

__all__ = ["CatalogueRepository"]

_C = CatalogueNumberRow


def _available(now: datetime) -> ColumnElement[bool]:
    return or_(
        _C.state == "available",
        and_(_C.state == "reserved", _C.reserved_until <= now),
        and_(_C.state == "ageing", _C.available_at <= now),
    )


def _offer(row: CatalogueNumberRow) -> Offer:
    return Offer(
        e164=row.e164,
        country=row.country,
        number_type=NumberType(row.number_type),
        setup=row.setup_micro,
        monthly=row.monthly_micro,
        generation=row.generation,
    )


class CatalogueRepository:
    """The inventory inside the caller's session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def import_offers(self, offers: Iterable[Offer]) -> tuple[int, int]:
        """Add new numbers (available, or taken when the organisation already has them)
        and update the prices of known ones; (added, updated)."""
        wanted = {offer.e164: offer for offer in offers}
        known = {
            row.e164: row
            for row in await self._session.scalars(select(_C).where(_C.e164.in_(list(wanted))))
        }
        owned = set(
            await self._session.scalars(
                select(NumberRow.e164).where(NumberRow.e164.in_(list(wanted)))
            )
        )
        added = updated = 0
        for e164, offer in wanted.items():
            row = known.get(e164)
            if row is None:
                self._session.add(
                    _C(
                        e164=e164,
                        country=offer.country,
                        number_type=offer.number_type.value,
                        setup_micro=offer.setup,
                        monthly_micro=offer.monthly,
                        state="taken" if e164 in owned else "available",
                        generation=1,
                        imported_at=utcnow(),
                    )
                )
                added += 1
            elif (row.setup_micro, row.monthly_micro, row.number_type) != (
                offer.setup,
                offer.monthly,
                offer.number_type.value,
            ):
                row.setup_micro, row.monthly_micro = offer.setup, offer.monthly
                row.number_type = offer.number_type.value
                updated += 1
        await self._session.flush()
        return added, updated

    async def coverage(self, now: datetime) -> list[Coverage]:
        rows = await self._session.execute(
            select(
                _C.country,
                _C.number_type,
                func.count(),
                func.min(_C.setup_micro),
                func.min(_C.monthly_micro),
            )
            .where(_available(now))
            .group_by(_C.country, _C.number_type)
            .order_by(_C.country, _C.number_type)
        )
        return [
            Coverage(country, NumberType(kind), int(count), int(setup), int(monthly))
            for country, kind, count, setup, monthly in rows
        ]

    async def offered(self, country: str | None = None) -> list[tuple[str, str]]:
        """(country, type) pairs in the inventory at all (whatever their state)."""
        statement = select(_C.country, _C.number_type).distinct()
        if country is not None:
            statement = statement.where(_C.country == country)
        rows = await self._session.execute(statement.order_by(_C.country, _C.number_type))
        return [(c, t) for c, t in rows]

    async def search(
        self,
        now: datetime,
        *,
        country: str,
        number_type: NumberType,
        e164_prefix: str,
        contains: str,
        limit: int,
    ) -> list[Offer]:
        statement = select(_C).where(
            _C.country == country, _C.number_type == number_type.value, _available(now)
        )
        if e164_prefix:
            statement = statement.where(_C.e164.startswith(e164_prefix, autoescape=True))
        if contains:
            statement = statement.where(_C.e164.contains(contains, autoescape=True))
        rows = await self._session.scalars(statement.order_by(_C.e164).limit(limit))
        return [_offer(row) for row in rows]

    async def get(self, e164: str) -> CatalogueNumberRow | None:
        row: CatalogueNumberRow | None = await self._session.scalar(
            select(_C).where(_C.e164 == e164).execution_options(populate_existing=True)
        )
        return row

    async def offer(self, e164: str) -> Offer | None:
        row = await self.get(e164)
        return None if row is None else _offer(row)

    async def reserve(self, e164: str, token: str, until: datetime, now: datetime) -> bool:
        """Hold an available number for the purchase ``token`` until ``until``."""
        return await self._update(
            and_(_C.e164 == e164, _available(now)),
            state="reserved",
            reservation=token,
            reserved_until=until,
            available_at=None,
        )

    async def acquire(self, e164: str, token: str) -> bool:
        """The reserved number is sold: taken (even if the hold expired meanwhile,
        as long as no other purchase took it over)."""
        return await self._update(
            and_(_C.e164 == e164, _C.state == "reserved", _C.reservation == token),
            state="taken",
            reservation=None,
            reserved_until=None,
        )

    async def cancel(self, e164: str, token: str) -> bool:
        return await self._update(
            and_(_C.e164 == e164, _C.state == "reserved", _C.reservation == token),
            state="available",
            reservation=None,
            reserved_until=None,
        )

    async def release(self, e164: str, available_at: datetime) -> bool:
        """A sold number comes back: ageing until ``available_at``, its generation
        counted up (the next owner's fees get keys of their own)."""
        return await self._update(
            and_(_C.e164 == e164, _C.state == "taken"),
            state="ageing",
            available_at=available_at,
            generation=_C.generation + 1,
        )

    async def _update(self, where: ColumnElement[bool], **values: Any) -> bool:
        result = await self._session.execute(
            update(_C).where(where).values(**values).execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1
