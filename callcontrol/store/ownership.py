"""The organisation's numbers as property: bought, assigned to users, rented, released.

``NumberRepository`` (repositories.py) keeps routing; this one keeps what the
number life cycle adds (``numbers.service``, ``numbers.rental``): the rows of a
bought number, its assignments to users (one default per user, kept by a partial
unique index), and the rental state changes, each one conditional UPDATE so that
several processes sharing one database apply each change once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.carrier.port import Offer
from callcontrol.errors import Conflict, NotFound
from callcontrol.store.models import NumberAssignmentRow, NumberRow, UserRow, utcnow
from callcontrol.store.unit import UnitSession, prepared

__all__ = ["OwnershipRepository", "RentalRow", "UserNumber", "presented_number"]

_A = NumberAssignmentRow

# Read for every outgoing call: built once (``store.unit.prepared``), so that in a unit
# it runs on the driver.
_PRESENTED = prepared(
    select(NumberRow.e164)
    .join(_A, _A.number_id == NumberRow.id)
    .join(UserRow, UserRow.id == _A.user_id)
    .where(UserRow.name == bindparam("user_name"), NumberRow.state == "active")
    .order_by(_A.is_default.desc(), NumberRow.e164)
    .limit(1)
)


async def presented_number(session: AsyncSession | UnitSession, user_name: str) -> str | None:
    """The number the user presents calling out: their default if in service, else
    another of theirs in service; None if they have none (they cannot call out). Any
    session, also a unit's."""
    presented: str | None = await session.scalar(_PRESENTED, {"user_name": user_name})
    return presented


@dataclass(frozen=True, slots=True)
class RentalRow:
    """A rented number as the renewal sees it."""

    id: int
    e164: str
    generation: int
    monthly: int
    state: str
    bought_at: datetime
    paid_until: datetime
    unpaid_since: datetime | None
    suspended_at: datetime | None


@dataclass(frozen=True, slots=True)
class UserNumber:
    """A number assigned to a user: whether it is their default, and in service."""

    e164: str
    default: bool
    active: bool


def _rental(row: NumberRow) -> RentalRow:
    if row.bought_at is None or row.paid_until is None:  # pragma: no cover - by the query
        raise NotFound(f"{row.e164} is not rented")
    return RentalRow(
        id=row.id,
        e164=row.e164,
        generation=row.generation,
        monthly=row.monthly_micro,
        state=row.state,
        bought_at=row.bought_at,
        paid_until=row.paid_until,
        unpaid_since=row.unpaid_since,
        suspended_at=row.suspended_at,
    )


class OwnershipRepository:
    """Inside the caller's session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # ---- bought numbers --------------------------------------------------------------------

    async def add_bought(self, offer: Offer, bought_at: datetime, paid_until: datetime) -> None:
        """The number is ours, active, paid until ``paid_until``; Conflict if it exists."""
        try:
            async with self._session.begin_nested():
                self._session.add(
                    NumberRow(
                        e164=offer.e164,
                        country=offer.country,
                        number_type=offer.number_type.value,
                        created_at=bought_at,
                        state="active",
                        monthly_micro=offer.monthly,
                        generation=offer.generation,
                        bought_at=bought_at,
                        paid_until=paid_until,
                    )
                )
                await self._session.flush()
        except IntegrityError as error:
            raise Conflict(f"{offer.e164} is already one of the organisation's numbers") from error

    async def delete(self, e164: str) -> bool:
        """Remove the number; its routing and assignments go with it (cascade)."""
        result = await self._session.execute(delete(NumberRow).where(NumberRow.e164 == e164))
        return cast(CursorResult[Any], result).rowcount == 1

    # ---- assignments ---------------------------------------------------------------------

    async def _ids(self, e164: str, user_name: str) -> tuple[int, int]:
        number_id = await self._session.scalar(select(NumberRow.id).where(NumberRow.e164 == e164))
        if number_id is None:
            raise NotFound(
                f"{e164} is not one of the organisation's numbers: buy it first "
                "(callcontrol numbers buy)"
            )
        user_id = await self._session.scalar(select(UserRow.id).where(UserRow.name == user_name))
        if user_id is None:
            raise NotFound(f"no user named {user_name!r}")
        return number_id, user_id

    async def assign(self, e164: str, user_name: str, *, default: bool) -> bool:
        """Assign the number to the user (again: no change but the default). The user's
        first number becomes their default; ``default`` makes it so. Whether it was new."""
        number_id, user_id = await self._ids(e164, user_name)
        has_default = await self._session.scalar(
            select(_A.number_id).where(_A.user_id == user_id, _A.is_default)
        )
        existing = await self._session.scalar(
            select(_A.is_default).where(_A.number_id == number_id, _A.user_id == user_id)
        )
        make_default = default or has_default is None or (existing is True)
        if make_default:
            await self._session.execute(
                update(_A).where(_A.user_id == user_id, _A.is_default).values(is_default=False)
            )
        if existing is None:
            self._session.add(
                _A(
                    number_id=number_id,
                    user_id=user_id,
                    is_default=make_default,
                    assigned_at=utcnow(),
                )
            )
        else:
            await self._session.execute(
                update(_A)
                .where(_A.number_id == number_id, _A.user_id == user_id)
                .values(is_default=make_default)
            )
        await self._session.flush()
        return existing is None

    async def unassign(self, e164: str, user_name: str) -> bool:
        """Remove the assignment; if it was the user's default, their next number (by
        E.164) becomes it. False if the number was not assigned to them."""
        number_id, user_id = await self._ids(e164, user_name)
        was_default = await self._session.scalar(
            select(_A.is_default).where(_A.number_id == number_id, _A.user_id == user_id)
        )
        if was_default is None:
            return False
        await self._session.execute(
            delete(_A).where(_A.number_id == number_id, _A.user_id == user_id)
        )
        if was_default:
            await self._promote_default(user_id)
        return True

    async def _promote_default(self, user_id: int) -> None:
        successor = await self._session.scalar(
            select(_A.number_id)
            .join(NumberRow, NumberRow.id == _A.number_id)
            .where(_A.user_id == user_id)
            .order_by(NumberRow.e164)
            .limit(1)
        )
        if successor is not None:
            await self._session.execute(
                update(_A)
                .where(_A.user_id == user_id, _A.number_id == successor)
                .values(is_default=True)
            )

    async def assigned_users(self, e164: str) -> list[str]:
        rows = await self._session.scalars(
            select(UserRow.name)
            .join(_A, _A.user_id == UserRow.id)
            .join(NumberRow, NumberRow.id == _A.number_id)
            .where(NumberRow.e164 == e164)
            .order_by(UserRow.name)
        )
        return list(rows)

    async def promote_defaults(self, user_names: list[str]) -> None:
        """Give each of these users a default again if they lost theirs (a release)."""
        for name in user_names:
            user_id = await self._session.scalar(select(UserRow.id).where(UserRow.name == name))
            if user_id is None:
                continue
            has = await self._session.scalar(
                select(_A.number_id).where(_A.user_id == user_id, _A.is_default)
            )
            if has is None:
                await self._promote_default(user_id)

    async def numbers_of_users(self) -> dict[str, list[UserNumber]]:
        """Every user's assigned numbers, defaults first, then by E.164."""
        rows = await self._session.execute(
            select(UserRow.name, NumberRow.e164, _A.is_default, NumberRow.state)
            .join(_A, _A.user_id == UserRow.id)
            .join(NumberRow, NumberRow.id == _A.number_id)
            .order_by(UserRow.name, _A.is_default.desc(), NumberRow.e164)
        )
        out: dict[str, list[UserNumber]] = {}
        for name, e164, default, state in rows:
            out.setdefault(name, []).append(UserNumber(e164, bool(default), state == "active"))
        return out

    # ---- rent ----------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int) -> list[RentalRow]:
        """Rented numbers whose paid period has ended, oldest first."""
        rows = await self._session.scalars(
            select(NumberRow)
            .where(NumberRow.paid_until.is_not(None), NumberRow.paid_until <= now)
            .order_by(NumberRow.paid_until, NumberRow.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return [_rental(row) for row in rows]

    async def rental(self, number_id: int) -> RentalRow | None:
        row = await self._session.scalar(
            select(NumberRow)
            .where(NumberRow.id == number_id, NumberRow.paid_until.is_not(None))
            .execution_options(populate_existing=True)
        )
        return None if row is None else _rental(row)

    async def advance(self, rent: RentalRow, paid_until: datetime) -> bool:
        """The period starting at ``rent.paid_until`` is paid: move to ``paid_until``, in
        service again. Only if no one moved it first (the claim)."""
        return await self._update(
            rent,
            NumberRow.paid_until == rent.paid_until,
            paid_until=paid_until,
            state="active",
            unpaid_since=None,
            suspended_at=None,
        )

    async def mark_unpaid(self, rent: RentalRow) -> bool:
        """The rent of the period starting at ``paid_until`` was refused: unpaid since
        then (once)."""
        return await self._update(
            rent,
            and_(NumberRow.paid_until == rent.paid_until, NumberRow.unpaid_since.is_(None)),
            unpaid_since=rent.paid_until,
        )

    async def suspend(self, rent: RentalRow, now: datetime) -> bool:
        return await self._update(
            rent,
            and_(NumberRow.paid_until == rent.paid_until, NumberRow.state == "active"),
            state="suspended",
            suspended_at=now,
        )

    async def _update(self, rent: RentalRow, where: ColumnElement[bool], **values: Any) -> bool:
        result = await self._session.execute(
            update(NumberRow)
            .where(NumberRow.id == rent.id, NumberRow.generation == rent.generation, where)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1
