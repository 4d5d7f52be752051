"""Repositories: the queries of the directory and the call records.

Each repository works inside the caller's ``AsyncSession`` (one transaction, see
``Database.session``) and returns frozen values from ``callcontrol.domain``.
Inputs are expected valid (``DirectoryService`` validates them); what only the
database can know (duplicates, unknown rows) comes back as ``Conflict`` or
``NotFound``. Inserts that may collide run in a SAVEPOINT, so a ``Conflict``
leaves the caller's transaction usable.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    CursorResult,
    Result,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.call_records import CallDirection, CallRecord, Disposition, EndedBy
from callcontrol.domain.directory import Assignment, Number, NumberState, Route, RouteKind, User
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.users import SipDigests
from callcontrol.errors import Conflict, InvalidInput, NotFound
from callcontrol.store.models import (
    CallRecordRow,
    NumberAssignmentRow,
    NumberRow,
    RouteRow,
    UserRow,
    utcnow,
)
from callcontrol.store.unit import UnitSession, prepared

__all__ = [
    "CallRecordRepository",
    "NumberRepository",
    "UserRepository",
    "number_route",
    "user_by_extension",
    "user_by_name",
]

MAX_LIST_LIMIT = 1000


def _upsert_dialect(session: AsyncSession | UnitSession) -> Any:
    """The INSERT with ON CONFLICT of the session's database (both support it)."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


_S = TypeVar("_S", bound=Select[Any])


def _fresh(statement: _S) -> _S:
    """Read rows from the database even if the session saw them before a bulk UPDATE."""
    return statement.execution_options(populate_existing=True)


def _user(row: Any) -> User:
    """A user from a mapped ``UserRow`` or a row of ``_USER_COLUMNS``."""
    return User(
        id=row.id,
        name=row.name,
        extension=row.extension,
        digest_md5=row.digest_md5,
        digest_sha256=row.digest_sha256,
        realm=row.realm,
    )


# The call path reads a user by name (a flow rings them) and by extension (an outgoing
# call): columns, not mapped objects, built once (``store.unit.prepared``), so that in a
# unit they run on the driver. Loading a ``UserRow`` through the ORM (a Session per unit,
# identity map, instance state) was 16% of the event loop's CPU on the IVR path.
_USER_COLUMNS = (
    UserRow.id,
    UserRow.name,
    UserRow.extension,
    UserRow.digest_md5,
    UserRow.digest_sha256,
    UserRow.realm,
)
_USER_BY_NAME = prepared(select(*_USER_COLUMNS).where(UserRow.name == bindparam("name")))
_USER_BY_EXTENSION = prepared(
    select(*_USER_COLUMNS).where(UserRow.extension == bindparam("extension"))
)


async def user_by_name(session: AsyncSession | UnitSession, name: str) -> User | None:
    """The user called ``name`` (any session, also a unit's)."""
    row = (await session.execute(_USER_BY_NAME, {"name": name})).first()
    return None if row is None else _user(row)


async def user_by_extension(session: AsyncSession | UnitSession, extension: str) -> User | None:
    """The user with ``extension`` (any session, also a unit's)."""
    row = (await session.execute(_USER_BY_EXTENSION, {"extension": extension})).first()
    return None if row is None else _user(row)


class UserRepository:
    """Users and their SIP credentials."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, name: str, extension: str, digests: SipDigests, realm: str) -> User:
        """Insert a user; Conflict naming the name or the extension when taken."""
        row = UserRow(
            name=name,
            extension=extension,
            digest_md5=digests.md5,
            digest_sha256=digests.sha256,
            realm=realm,
        )
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError as error:
            if "extension" in str(error.orig):
                raise Conflict(f"extension {extension} is already taken") from error
            raise Conflict(f"user name {name!r} is already taken") from error
        return _user(row)

    async def get_by_name(self, name: str) -> User | None:
        return await user_by_name(self._session, name)

    async def get_by_extension(self, extension: str) -> User | None:
        return await user_by_extension(self._session, extension)

    async def list(self) -> builtins.list[User]:
        """Every user, by name."""
        rows = await self._session.scalars(_fresh(select(UserRow).order_by(UserRow.name)))
        return [_user(row) for row in rows]

    async def remove(self, name: str) -> bool:
        """Delete the user; False if unknown. Conflict while a number routes to them."""
        try:
            async with self._session.begin_nested():
                result = await self._session.execute(delete(UserRow).where(UserRow.name == name))
        except IntegrityError as error:
            numbers = await NumberRepository(self._session).routed_to_user(name)
            raise Conflict(
                f"user {name!r} receives the calls of {', '.join(numbers) or 'a number'}"
            ) from error
        return bool(_rowcount(result))

    async def set_digests(self, name: str, digests: SipDigests, realm: str) -> User | None:
        """Replace the user's SIP digests (and realm); the updated user, None if unknown."""
        row = await self._session.scalar(
            update(UserRow)
            .where(UserRow.name == name)
            .values(
                digest_md5=digests.md5,
                digest_sha256=digests.sha256,
                realm=realm,
                updated_at=utcnow(),
            )
            .returning(UserRow)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return None if row is None else _user(row)


def _number_query() -> Select[Any]:
    """Numbers with their route and the routed user: one query, outer joins."""
    return (
        select(
            NumberRow.e164,
            NumberRow.country,
            NumberRow.number_type,
            RouteRow.kind,
            RouteRow.flow_name,
            UserRow.name,
            UserRow.extension,
            NumberRow.state,
            NumberRow.monthly_micro,
            NumberRow.paid_until,
        )
        .outerjoin(RouteRow, RouteRow.number_id == NumberRow.id)
        .outerjoin(UserRow, UserRow.id == RouteRow.user_id)
    )


def _number(row: Row[Any], assigned: tuple[Assignment, ...] = ()) -> Number:
    e164, country, number_type, kind, flow_name, user_name, user_extension = row[:7]
    state, monthly, paid_until = row[7:]
    route = None
    if kind is not None:
        route = Route(
            kind=RouteKind(kind),
            user_name=user_name,
            user_extension=user_extension,
            flow_name=flow_name,
        )
    return Number(
        e164=e164,
        country=country,
        number_type=NumberType(number_type),
        route=route,
        state=NumberState(state),
        monthly=monthly,
        paid_until=paid_until,
        assigned=assigned,
    )


async def _assignments(
    session: AsyncSession, e164: str | None = None
) -> dict[str, tuple[Assignment, ...]]:
    """Each number's assignments (of one number, or all), defaults first."""
    statement = (
        select(NumberRow.e164, UserRow.name, NumberAssignmentRow.is_default)
        .join(NumberAssignmentRow, NumberAssignmentRow.number_id == NumberRow.id)
        .join(UserRow, UserRow.id == NumberAssignmentRow.user_id)
        .order_by(NumberRow.e164, NumberAssignmentRow.is_default.desc(), UserRow.name)
    )
    if e164 is not None:
        statement = statement.where(NumberRow.e164 == e164)
    out: dict[str, list[Assignment]] = {}
    for number, name, default in await session.execute(statement):
        out.setdefault(number, []).append(Assignment(name, bool(default)))
    return {number: tuple(items) for number, items in out.items()}


async def number_route(
    session: AsyncSession | UnitSession, e164: str
) -> tuple[Number, Route | None] | None:
    """The number (without its assignments) and its route for an incoming call (one
    query, on any session, also a unit's); None if not ours."""
    row = (await session.execute(_NUMBER_ROUTE, {"e164": e164})).first()
    if row is None:
        return None
    number = _number(row)
    return number, number.route


# The call path's statements, built once (``store.unit.prepared``: on SQLite each is
# compiled once and runs straight on the driver's cursor).
_NUMBER_ROUTE = prepared(_number_query().where(NumberRow.e164 == bindparam("e164")))


class NumberRepository:
    """The organisation's numbers and their routing."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, e164: str, country: str, number_type: NumberType) -> Number:
        """Insert a number without routing; Conflict if it exists."""
        try:
            async with self._session.begin_nested():
                self._session.add(
                    NumberRow(e164=e164, country=country, number_type=number_type.value)
                )
                await self._session.flush()
        except IntegrityError as error:
            raise Conflict(f"number {e164} already exists") from error
        return Number(e164=e164, country=country, number_type=number_type)

    async def get(self, e164: str) -> Number | None:
        row = (await self._session.execute(_number_query().where(NumberRow.e164 == e164))).first()
        if row is None:
            return None
        return _number(row, (await _assignments(self._session, e164)).get(e164, ()))

    async def list(self) -> builtins.list[Number]:
        """Every number with its route and assignments, by number."""
        rows = await self._session.execute(_number_query().order_by(NumberRow.e164))
        assigned = await _assignments(self._session)
        return [_number(row, assigned.get(row[0], ())) for row in rows]

    async def route_for(self, e164: str) -> tuple[Number, Route | None] | None:
        """``number_route`` in this repository's session."""
        return await number_route(self._session, e164)

    async def remove(self, e164: str) -> bool:
        """Delete the number and its route; False if unknown."""
        result = await self._session.execute(delete(NumberRow).where(NumberRow.e164 == e164))
        return bool(_rowcount(result))

    async def set_route_user(self, e164: str, user_name: str) -> Number:
        """Route the number's calls to the user; NotFound for an unknown number or user."""
        number_id = await self._number_id(e164)
        user_id = await self._session.scalar(select(UserRow.id).where(UserRow.name == user_name))
        if user_id is None:
            raise NotFound(f"no user named {user_name!r}")
        await self._set_route(number_id, RouteKind.USER, user_id=user_id, flow_name=None)
        return await self._get_existing(e164)

    async def set_route_flow(self, e164: str, flow_name: str) -> Number:
        """Route the number's calls to the flow ``flow_name``; NotFound for an unknown number."""
        number_id = await self._number_id(e164)
        await self._set_route(number_id, RouteKind.FLOW, user_id=None, flow_name=flow_name)
        return await self._get_existing(e164)

    async def clear_route(self, e164: str) -> bool:
        """Remove the number's routing (it then receives no calls); False if it had none."""
        number_id = await self._number_id(e164)
        result = await self._session.execute(
            delete(RouteRow).where(RouteRow.number_id == number_id)
        )
        return bool(_rowcount(result))

    async def routed_to_user(self, user_name: str) -> builtins.list[str]:
        """The numbers whose calls ring the user, in E.164."""
        rows = await self._session.scalars(
            select(NumberRow.e164)
            .join(RouteRow, RouteRow.number_id == NumberRow.id)
            .join(UserRow, UserRow.id == RouteRow.user_id)
            .where(UserRow.name == user_name)
            .order_by(NumberRow.e164)
        )
        return list(rows)

    async def clear_routes_to_user(self, user_name: str) -> builtins.list[str]:
        """Remove every route to the user; returns the numbers that lost their routing."""
        numbers = await self.routed_to_user(user_name)
        user_id = select(UserRow.id).where(UserRow.name == user_name).scalar_subquery()
        await self._session.execute(delete(RouteRow).where(RouteRow.user_id == user_id))
        return numbers

    async def _number_id(self, e164: str) -> int:
        number_id = await self._session.scalar(select(NumberRow.id).where(NumberRow.e164 == e164))
        if number_id is None:
            raise NotFound(f"no number {e164}")
        return number_id

    async def _get_existing(self, e164: str) -> Number:
        number = await self.get(e164)
        if number is None:  # pragma: no cover - removed inside our own transaction
            raise NotFound(f"no number {e164}")
        return number

    async def _set_route(
        self, number_id: int, kind: RouteKind, *, user_id: int | None, flow_name: str | None
    ) -> None:
        """Insert or replace the number's route in one statement (an upsert), so that
        concurrent changes of the same route each apply whole, the last one winning."""
        table = cast(Table, RouteRow.__table__)
        insert = (
            _upsert_dialect(self._session)
            .insert(table)
            .values(
                number_id=number_id,
                kind=kind.value,
                user_id=user_id,
                flow_name=flow_name,
                updated_at=utcnow(),
            )
        )
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.number_id],
            set_={
                name: insert.excluded[name]
                for name in ("kind", "user_id", "flow_name", "updated_at")
            },
        )
        try:
            async with self._session.begin_nested():
                await self._session.execute(statement)
        except IntegrityError as error:
            raise Conflict("the number or its user was removed meanwhile") from error


def _disposition(value: str | None) -> Disposition | str | None:
    if value is None:
        return None
    try:
        return Disposition(value)
    except ValueError:
        return value


# A record by its id, as columns (``store.unit.prepared``): no ORM identity map or
# instance state for a read on the call path (the AGI server reads a record at settle).
_RECORD_BY_ID = prepared(
    select(*CallRecordRow.__table__.columns).where(CallRecordRow.call_id == bindparam("call_id"))
)


def _record(row: Any) -> CallRecord:
    return CallRecord(
        call_id=row.call_id,
        direction=CallDirection(row.direction),
        caller=row.caller,
        callee=row.callee,
        number_e164=row.number_e164,
        user_id=row.user_id,
        user_name=row.user_name,
        channel_id=row.channel_id,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        disposition=_disposition(row.disposition),
        hangup_cause=row.hangup_cause,
        ended_by=None if row.ended_by is None else EndedBy(row.ended_by),
        rate_id=row.rate_id,
        billable_seconds=row.billable_seconds,
        cost_micro=row.cost_micro,
        charge_state=row.charge_state,
        pbx_node=row.pbx_node,
    )


class CallRecordRepository:
    """Call records: started once, answered at most once, finished exactly once."""

    def __init__(self, session: AsyncSession | UnitSession) -> None:
        self._session = session

    async def start(
        self,
        *,
        call_id: str,
        direction: CallDirection,
        caller: str,
        callee: str,
        channel_id: str,
        started_at: datetime,
        number_e164: str | None = None,
        user_name: str | None = None,
        charge_state: str | None = None,
        rate_id: int | None = None,
        pbx_node: str | None = None,
    ) -> CallRecord:
        """Insert the record of a new call (one statement); Conflict if the id exists.

        ``user_name`` is kept as a snapshot; ``user_id`` links to the user while they exist.
        ``charge_state`` and ``rate_id``: a call rated before its record is written
        starts with them (one statement instead of two).
        """
        values = {
            "v_call_id": call_id,
            "v_direction": direction.value,
            "v_caller": caller,
            "v_callee": callee,
            "v_channel_id": channel_id,
            "v_started_at": started_at,
            "v_number_e164": number_e164,
            "v_user_name": user_name,
            "v_charge_state": charge_state,
            "v_rate_id": rate_id,
            "v_pbx_node": pbx_node,
        }
        dialect = self._session.get_bind().dialect.name
        statement = _START_POSTGRESQL if dialect == "postgresql" else _START_SQLITE
        row = (await self._session.execute(statement, values)).first()
        if row is None:
            raise Conflict(f"call record {call_id} already exists")
        return _record(row)

    async def mark_answered(self, call_id: str, at: datetime) -> bool:
        """Set the answer time once, while the call is open; whether it applied."""
        result = await self._session.execute(_ANSWERED, {"v_call_id": call_id, "v_answered_at": at})
        return _rowcount(result) == 1

    async def finish(
        self,
        call_id: str,
        *,
        ended_at: datetime,
        disposition: Disposition | str,
        hangup_cause: int | None,
        ended_by: EndedBy | None,
    ) -> bool:
        """Close the record. Only the first finish applies (``WHERE ended_at IS NULL``).

        Returns whether this call closed it.
        """
        result = await self._session.execute(
            _FINISH,
            {
                "v_call_id": call_id,
                "v_ended_at": ended_at,
                "v_disposition": str(disposition),
                "v_hangup_cause": hangup_cause,
                "v_ended_by": None if ended_by is None else ended_by.value,
            },
        )
        return _rowcount(result) == 1

    async def set_charge(
        self,
        call_id: str,
        *,
        charge_state: str,
        rate_id: int | None = None,
        billable_seconds: int | None = None,
        cost_micro: int | None = None,
    ) -> bool:
        """Record the call's charging state and, when known, its rate, billed seconds
        and cost (micro-credits). Fields left None keep their value. A settled record
        (``charge_state = 'settled'``) is final: later calls change nothing.

        Returns whether the record was updated.
        """
        result = await self._session.execute(
            _SET_CHARGE,
            {
                "v_call_id": call_id,
                "v_charge_state": charge_state,
                "v_rate_id": rate_id,
                "v_billable_seconds": billable_seconds,
                "v_cost_micro": cost_micro,
            },
        )
        return _rowcount(result) == 1

    async def claim_for_node(
        self, call_id: str, pbx_node: str, from_node: str | None = None
    ) -> bool:
        """Name the PBX of a record written before records named it (NULL), or move a
        record from ``from_node`` (a worker that no longer runs) to ``pbx_node``, once."""
        was = (
            CallRecordRow.pbx_node.is_(None)
            if from_node is None
            else CallRecordRow.pbx_node == from_node
        )
        return await self._update(call_id, (was,), pbx_node=pbx_node)

    async def get(self, call_id: str) -> CallRecord | None:
        row = (await self._session.execute(_RECORD_BY_ID, {"call_id": call_id})).first()
        return None if row is None else _record(row)

    async def list_recent(self, limit: int = 50) -> builtins.list[CallRecord]:
        """The newest records first."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        rows = await self._session.scalars(
            _fresh(
                select(CallRecordRow)
                .order_by(CallRecordRow.started_at.desc(), CallRecordRow.call_id.desc())
                .limit(limit)
            )
        )
        return [_record(row) for row in rows]

    async def open_records(
        self, pbx_node: str | None = None, family: str | None = None
    ) -> builtins.list[CallRecord]:
        """Calls not finished yet (``ended_at IS NULL``), oldest first; with ``pbx_node``
        only that PBX's calls (and those written before records named their PBX); with
        ``family`` also those of node ``family`` and its workers' (``family/<K>``)."""
        query = select(CallRecordRow).where(CallRecordRow.ended_at.is_(None))
        if pbx_node is not None:
            nodes = [CallRecordRow.pbx_node == pbx_node, CallRecordRow.pbx_node.is_(None)]
            if family is not None:
                nodes.append(CallRecordRow.pbx_node == family)
                nodes.append(CallRecordRow.pbx_node.startswith(family + "/", autoescape=True))
            query = query.where(or_(*nodes))
        rows = await self._session.scalars(
            _fresh(query.order_by(CallRecordRow.started_at, CallRecordRow.call_id))
        )
        return [_record(row) for row in rows]

    async def _update(self, call_id: str, conditions: Sequence[Any], **values: Any) -> bool:
        result = await self._session.execute(
            update(CallRecordRow)
            .where(CallRecordRow.call_id == call_id, *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1


def column_param(column: Any) -> Any:
    """A bind parameter typed as ``column`` and named ``v_<column>`` (SQLAlchemy keeps a
    column's own name for the parameters it makes in VALUES and SET)."""
    return bindparam(f"v_{column.key}", type_=column.type)


def _start_statement(dialect: Any) -> Any:
    """A call record's INSERT (nothing on a duplicate id), its user linked by name."""
    table = cast(Table, CallRecordRow.__table__)
    row = CallRecordRow
    fields = (
        row.call_id,
        row.direction,
        row.caller,
        row.callee,
        row.channel_id,
        row.started_at,
        row.number_e164,
        row.user_name,
        row.charge_state,
        row.rate_id,
        row.pbx_node,
    )
    user_id = (
        select(UserRow.id).where(UserRow.name == column_param(row.user_name)).scalar_subquery()
    )
    values = {column.key: column_param(column) for column in fields}
    return prepared(
        dialect.insert(table)
        .values(**values, user_id=user_id)
        .on_conflict_do_nothing()
        .returning(*table.c)
    )


def _record_update(*conditions: Any, **values: Any) -> Any:
    return prepared(
        update(CallRecordRow)
        .where(CallRecordRow.call_id == column_param(CallRecordRow.call_id), *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _keep(column: Any) -> Any:
    """``column`` set to its parameter, kept as it is when the parameter is NULL."""
    return func.coalesce(column_param(column), column)


_START_SQLITE = _start_statement(sqlite)
_START_POSTGRESQL = _start_statement(postgresql)
_ANSWERED = _record_update(
    CallRecordRow.answered_at.is_(None),
    CallRecordRow.ended_at.is_(None),
    answered_at=column_param(CallRecordRow.answered_at),
)
_FINISH = _record_update(
    CallRecordRow.ended_at.is_(None),
    **{
        column.key: column_param(column)
        for column in (
            CallRecordRow.ended_at,
            CallRecordRow.disposition,
            CallRecordRow.hangup_cause,
            CallRecordRow.ended_by,
        )
    },
)
_SET_CHARGE = _record_update(
    CallRecordRow.charge_state.is_(None) | (CallRecordRow.charge_state != "settled"),
    charge_state=column_param(CallRecordRow.charge_state),
    rate_id=_keep(CallRecordRow.rate_id),
    billable_seconds=_keep(CallRecordRow.billable_seconds),
    cost_micro=_keep(CallRecordRow.cost_micro),
)
