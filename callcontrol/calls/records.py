"""What a call needs from the database, one short transaction per operation.

Each method is one session (and, for the hot path, one statement): the route of
the dialled number, the call record's start (with its rate), connection and end.
Nothing is cached between calls, so a routing change made by an admin applies to
the next call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from callcontrol.domain.call_records import CallDirection, CallRecord, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.directory import Number, Route, User
from callcontrol.store.db import Database
from callcontrol.store.models import CallRecordRow, UserRow
from callcontrol.store.ownership import OwnershipRepository
from callcontrol.store.repositories import (
    CallRecordRepository,
    NumberRepository,
    UserRepository,
)


class CallStore:
    """``pbx_node``: the PBX this app serves (setting ``pbx_node``). The records it
    starts name it, and ``open_records`` are that PBX's calls only: with several PBXes
    on one database, an app re-adopts and settles its own calls, never another PBX's
    live ones. None: every record (tools that look at the whole database)."""

    def __init__(self, db: Database, pbx_node: str | None = None) -> None:
        self.db = db
        self.pbx_node = pbx_node

    async def route_for(self, e164: str) -> tuple[Number, Route | None] | None:
        async with self.db.session() as session:
            return await NumberRepository(session).route_for(e164)

    async def user_by_name(self, name: str) -> User | None:
        async with self.db.session() as session:
            return await UserRepository(session).get_by_name(name)

    async def user_by_extension(self, extension: str) -> User | None:
        async with self.db.session() as session:
            return await UserRepository(session).get_by_extension(extension)

    async def number_of_user(self, user_name: str) -> str | None:
        """The number a user presents when calling out: their default assigned number
        in service (else another of theirs in service); None: they cannot call out."""
        async with self.db.session() as session:
            return await OwnershipRepository(session).presented_number(user_name)

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
        charge_state: ChargeState | None = None,
        rate_id: int | None = None,
    ) -> CallRecord:
        async with self.db.session() as session:
            return await CallRecordRepository(session).start(
                call_id=call_id,
                direction=direction,
                caller=caller,
                callee=callee,
                channel_id=channel_id,
                started_at=started_at,
                number_e164=number_e164,
                user_name=user_name,
                charge_state=None if charge_state is None else charge_state.value,
                rate_id=rate_id,
                pbx_node=self.pbx_node,
            )

    async def mark_answered(self, call_id: str, at: datetime) -> bool:
        async with self.db.session() as session:
            return await CallRecordRepository(session).mark_answered(call_id, at)

    async def finish(
        self,
        call_id: str,
        ended_at: datetime,
        disposition: Disposition,
        cause: int | None,
        ended_by: EndedBy,
    ) -> bool:
        async with self.db.session() as session:
            return await CallRecordRepository(session).finish(
                call_id,
                ended_at=ended_at,
                disposition=disposition,
                hangup_cause=cause,
                ended_by=ended_by,
            )

    async def set_connected_user(
        self, call_id: str, user_name: str | None, answered_at: datetime | None = None
    ) -> None:
        """Record who took the call (for IVR calls it is known only when they answer;
        None: keep who is recorded) and, for a call answered only now, when (kept if
        already set): one statement."""
        values: dict[str, Any] = {}
        if user_name is not None:
            values["user_name"] = user_name
            values["user_id"] = (
                select(UserRow.id).where(UserRow.name == user_name).scalar_subquery()
            )
        if answered_at is not None:
            values["answered_at"] = func.coalesce(CallRecordRow.answered_at, answered_at)
        async with self.db.session() as session:
            await session.execute(
                update(CallRecordRow).where(CallRecordRow.call_id == call_id).values(**values)
            )

    async def set_charge_state(
        self, call_id: str, state: ChargeState, rate_id: int | None = None
    ) -> None:
        async with self.db.session() as session:
            await CallRecordRepository(session).set_charge(
                call_id, charge_state=state, rate_id=rate_id
            )

    async def settle(self, call_id: str, rate_id: int, billable_seconds: int, cost: int) -> None:
        async with self.db.session() as session:
            await CallRecordRepository(session).set_charge(
                call_id,
                charge_state=ChargeState.SETTLED,
                rate_id=rate_id,
                billable_seconds=billable_seconds,
                cost_micro=cost,
            )

    async def open_records(self) -> list[CallRecord]:
        """The calls in progress on this PBX (on every PBX when no node is set)."""
        async with self.db.session() as session:
            return await CallRecordRepository(session).open_records(self.pbx_node)

    async def claim(self, call_id: str) -> bool:
        """This PBX carries the call of a record that names no PBX (written before
        migration 0007): name ours, so that no other PBX's app takes it for lost."""
        if self.pbx_node is None:
            return False
        async with self.db.session() as session:
            return await CallRecordRepository(session).claim_for_node(call_id, self.pbx_node)

    async def is_open(self, call_id: str) -> bool:
        async with self.db.session() as session:
            record = await CallRecordRepository(session).get(call_id)
        return record is not None and record.is_open

    async def get(self, call_id: str) -> CallRecord | None:
        async with self.db.session() as session:
            return await CallRecordRepository(session).get(call_id)

    async def recent(self, limit: int = 50) -> list[CallRecord]:
        async with self.db.session() as session:
            return await CallRecordRepository(session).list_recent(limit)
