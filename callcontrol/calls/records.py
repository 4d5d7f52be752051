"""What a call needs from the database, one short transaction per operation.

Each method is one unit of work (``Database.unit``: on SQLite one hand-off to its
thread) and, for the hot path, one statement: the route of the dialled number, the
call record's start (with its rate), connection and end. The ``*_work`` methods
return the same writes as parts of a transaction, for the charging session to join
them with the wallet's (``store.wallet.callpath``: three transactions per call).
Nothing is cached between calls, so a routing change made by an admin applies to
the next call.
"""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict, Unpack

from sqlalchemy import case, func, select, update

from callcontrol.domain.call_records import CallDirection, CallRecord, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.directory import Number, Route, User
from callcontrol.store.db import Database, UnitExecutor
from callcontrol.store.models import CallRecordRow, UserRow
from callcontrol.store.ownership import OwnershipRepository, presented_number
from callcontrol.store.rates import current_set_id
from callcontrol.store.repositories import (
    CallRecordRepository,
    UserRepository,
    column_param,
    number_route,
    user_by_extension,
    user_by_name,
)
from callcontrol.store.unit import prepared
from callcontrol.store.wallet import Work

#: A dialled number: ours (and its route) or None.
Routed = tuple[Number, Route | None] | None


class NewRecord(TypedDict):
    """A new call record's fields (``CallRecordRepository.start``)."""

    call_id: str
    direction: CallDirection
    caller: str
    callee: str
    channel_id: str
    started_at: datetime
    number_e164: NotRequired[str | None]
    user_name: NotRequired[str | None]
    charge_state: NotRequired[ChargeState | None]
    rate_id: NotRequired[int | None]


class CallStore:
    """``pbx_node``: the PBX this app serves (setting ``pbx_node``). The records it
    starts name it, and ``open_records`` are that PBX's calls only: with several PBXes
    on one database, an app re-adopts and settles its own calls, never another PBX's
    live ones. None: every record (tools that look at the whole database)."""

    def __init__(
        self,
        db: Database,
        pbx_node: str | None = None,
        *,
        family: str | None = None,
        others: frozenset[str] = frozenset(),
    ) -> None:
        self.db = db
        self.pbx_node = pbx_node
        # Worker 1 of several (setting workers) also takes the records of the PBX's nodes
        # that no longer run (``family`` and ``family/<K>``, after a change of workers),
        # never those of the workers that do (``others``).
        self.family = family
        self.others = others

    async def inbound_route(self, e164: str) -> tuple[Routed, int | None]:
        """The dialled number (None: not ours) and its route, and the id of the rate
        set in force (``ChargingService``'s cache check), in one transaction."""

        async def work(
            session: UnitExecutor,
        ) -> tuple[tuple[Number, Route | None] | None, int | None]:
            return await number_route(session, e164), await current_set_id(session)

        return await self.db.unit(work)

    async def user_by_name(self, name: str) -> User | None:
        return await self.db.unit(lambda session: user_by_name(session, name))

    async def user_by_extension(self, extension: str) -> User | None:
        return await self.db.unit(lambda session: user_by_extension(session, extension))

    async def number_of_user(self, user_name: str) -> str | None:
        """The number a user presents when calling out: their default assigned number
        in service (else another of theirs in service); None: they cannot call out."""
        return await self.db.unit(lambda session: presented_number(session, user_name))

    async def presented_numbers(self) -> dict[str, str]:
        """Every user's presented number (users with none are left out)."""
        async with self.db.session() as session:
            numbers = await OwnershipRepository(session).numbers_of_users()
        return {
            name: next(n.e164 for n in owned if n.active)
            for name, owned in numbers.items()
            if any(n.active for n in owned)
        }

    async def users(self) -> list[User]:
        async with self.db.session() as session:
            return await UserRepository(session).list()

    async def start(self, **fields: Unpack[NewRecord]) -> CallRecord:
        """Insert the record of a new call; Conflict if the id exists."""
        return await self.db.unit(self.start_work(**fields))

    def start_work(self, **fields: Unpack[NewRecord]) -> Work[CallRecord]:
        """The record's INSERT as a part of a transaction."""
        state = fields.get("charge_state")

        async def work(session: UnitExecutor) -> CallRecord:
            return await CallRecordRepository(session).start(
                call_id=fields["call_id"],
                direction=fields["direction"],
                caller=fields["caller"],
                callee=fields["callee"],
                channel_id=fields["channel_id"],
                started_at=fields["started_at"],
                number_e164=fields.get("number_e164"),
                user_name=fields.get("user_name"),
                charge_state=None if state is None else state.value,
                rate_id=fields.get("rate_id"),
                pbx_node=self.pbx_node,
            )

        return work

    async def mark_answered(self, call_id: str, at: datetime) -> bool:
        return await self.db.unit(self.answered_work(call_id, at))

    def answered_work(self, call_id: str, at: datetime) -> Work[bool]:
        """Set the answer time once, while the call is open; whether it applied."""
        return lambda session: CallRecordRepository(session).mark_answered(call_id, at)

    async def finish(
        self,
        call_id: str,
        ended_at: datetime,
        disposition: Disposition,
        cause: int | None,
        ended_by: EndedBy,
    ) -> bool:
        return await self.db.unit(self.finish_work(call_id, ended_at, disposition, cause, ended_by))

    def finish_work(
        self,
        call_id: str,
        ended_at: datetime,
        disposition: Disposition,
        cause: int | None,
        ended_by: EndedBy,
    ) -> Work[bool]:
        """Close the record (only the first close applies: whether this one did)."""

        async def work(session: UnitExecutor) -> bool:
            return await CallRecordRepository(session).finish(
                call_id,
                ended_at=ended_at,
                disposition=disposition,
                hangup_cause=cause,
                ended_by=ended_by,
            )

        return work

    async def set_connected_user(
        self, call_id: str, user_name: str | None, answered_at: datetime | None = None
    ) -> None:
        await self.db.unit(self.connected_work(call_id, user_name, answered_at))

    def connected_work(
        self, call_id: str, user_name: str | None, answered_at: datetime | None = None
    ) -> Work[None]:
        """Record who took the call (for IVR calls it is known only when they answer;
        None: keep who is recorded) and, for a call answered only now, when (kept if
        already set): one statement."""
        params = {"v_call_id": call_id, "v_user_name": user_name, "v_answered_at": answered_at}

        async def work(session: UnitExecutor) -> None:
            await session.execute(_CONNECTED, params)

        return work

    async def set_charge_state(
        self, call_id: str, state: ChargeState, rate_id: int | None = None
    ) -> None:
        await self.db.unit(self.charge_state_work(call_id, state, rate_id))

    def charge_state_work(
        self, call_id: str, state: ChargeState, rate_id: int | None = None
    ) -> Work[bool]:
        """The record's charging state (and rate): a settled record stays as it is."""
        return lambda session: CallRecordRepository(session).set_charge(
            call_id, charge_state=state, rate_id=rate_id
        )

    async def settle(self, call_id: str, rate_id: int, billable_seconds: int, cost: int) -> None:
        await self.db.unit(self.settled_work(call_id, rate_id, billable_seconds, cost))

    def settled_work(
        self, call_id: str, rate_id: int, billable_seconds: int, cost: int
    ) -> Work[bool]:
        """The record settled: its rate, billed seconds and cost."""
        return lambda session: CallRecordRepository(session).set_charge(
            call_id,
            charge_state=ChargeState.SETTLED,
            rate_id=rate_id,
            billable_seconds=billable_seconds,
            cost_micro=cost,
        )

    async def open_records(self) -> list[CallRecord]:
        """The calls in progress on this PBX (on every PBX when no node is set)."""
        node, family = self.pbx_node, self.family
        records = await self.db.unit(
            lambda session: CallRecordRepository(session).open_records(node, family)
        )
        return [r for r in records if r.pbx_node not in self.others]

    async def claim(self, call_id: str, from_node: str | None = None) -> bool:
        """This PBX carries the call of a record that names no PBX (written before
        migration 0007), or a node of this PBX that no longer runs: name ours, so that
        no other app takes it for lost."""
        node = self.pbx_node
        if node is None:
            return False
        return await self.db.unit(
            lambda session: CallRecordRepository(session).claim_for_node(call_id, node, from_node)
        )

    async def is_open(self, call_id: str) -> bool:
        record = await self.get(call_id)
        return record is not None and record.is_open

    async def get(self, call_id: str) -> CallRecord | None:
        return await self.db.unit(self.get_work(call_id))

    def get_work(self, call_id: str) -> Work[CallRecord | None]:
        """The record as it is, read in a transaction (None: no such call)."""
        return lambda session: CallRecordRepository(session).get(call_id)

    async def recent(self, limit: int = 50) -> list[CallRecord]:
        return await self.db.unit(lambda session: CallRecordRepository(session).list_recent(limit))


# Who took the call and when (each kept when its parameter is NULL): built once
# (``store.unit.prepared``).
_USER_NAME = column_param(CallRecordRow.user_name)
_CONNECTED = prepared(
    update(CallRecordRow)
    .where(CallRecordRow.call_id == column_param(CallRecordRow.call_id))
    .values(
        user_name=func.coalesce(_USER_NAME, CallRecordRow.user_name),
        user_id=case(
            (_USER_NAME.is_(None), CallRecordRow.user_id),
            else_=select(UserRow.id).where(UserRow.name == _USER_NAME).scalar_subquery(),
        ),
        answered_at=func.coalesce(
            CallRecordRow.answered_at,
            column_param(CallRecordRow.answered_at),
        ),
    )
    .execution_options(synchronize_session=False)
)
