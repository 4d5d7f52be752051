"""A call's wallet writes joined with its call record's, in as few transactions as
the database allows: three per charged call on SQLite.

A charged call used to open a dozen sessions: the record's start, the hold, the
record's answer, the wallet read, the fee's charge, the next slice's hold, the
ledger read, the final charge, the release, the record's cost and its end. Here
they are three units of work (``Database.unit``), each one hand-off to SQLite's
thread and one BEGIN IMMEDIATE transaction:

    open_call  the record's start (naming the rate) + the first block's hold
               (+ the record's ``refused_no_credit`` when it cannot be held)
    tick       the record's answer, if any + the wallet read + the charge of what
               was used + the hold of the next slice
    settle     the ledger read + the final charge (or refund) + the release
               + the record's cost and end

The record's parts are given as units of work (``Work``: an ``async def`` taking
the transaction's session; ``calls.records.CallStore`` builds them), and the
decisions as pure functions of what the transaction read (``TickPlan``, the
settlement's ``decide``), which run inside it, under the write lock: so a decision
is always taken on the wallet as it is when it is written.

The crash rule holds as before, and more strictly: a record names its rate in the
same transaction that holds credits for it, and its cost in the one that releases
them; a crash between the transactions leaves what the recovery already settles.

PostgreSQL keeps its one-statement, autocommit writes (the wallet row locked only
while the server runs one statement): the same operations there run the same steps
one after another (``SequentialCallPath``), each as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from callcontrol.domain.charging import Settlement
from callcontrol.domain.money import LedgerKind, WalletState
from callcontrol.store.db import Database, UnitExecutor
from callcontrol.store.wallet.common import Posted, Refused

__all__ = [
    "Opened",
    "SequentialCallPath",
    "Settled",
    "TickPlan",
    "Ticked",
    "Work",
    "charge_description",
    "final_key",
    "refund_description",
    "refund_key",
]

T = TypeVar("T")

#: A part of a transaction: an ``async def`` that runs statements on its session.
Work = Callable[[UnitExecutor], Awaitable[T]]


def charge_description(call_id: str) -> str:
    return f"call {call_id}"


class TickPlan(Protocol):
    """A tick's decisions, pure functions of what its transaction read."""

    def charge(self, state: WalletState) -> tuple[int, str]:
        """What to charge now (0: nothing) and the charge's idempotency key."""
        ...

    def hold(self, state: WalletState, hold_left: int | None) -> int:
        """What to hold more after the charge (``hold_left``: the call's hold after
        it; None: nothing was charged)."""
        ...


@dataclass(frozen=True, slots=True)
class Opened:
    """``open_call``: whether the first block is held."""

    held: bool


@dataclass(frozen=True, slots=True)
class Ticked:
    """A tick: the wallet it read, the charge (None: none; Refused: nothing of the
    tick applied after the record's part), and what it added to the hold."""

    state: WalletState
    charged: int
    posted: Posted | Refused | None
    added: int


@dataclass(frozen=True, slots=True)
class Settled(Generic[T]):
    """A settlement: what was decided, the final charge (Refused: nothing applied),
    the refund, what was released, and the record part's result."""

    settlement: Settlement
    posted: Posted | Refused | None
    refund: Posted | Refused | None
    released: int
    recorded: T | None


class _Writes(Protocol):
    """The wallet writes and reads ``SequentialCallPath`` runs one by one."""

    _db: Database

    async def state(self) -> WalletState: ...

    async def charged_for(self, reference: str) -> int: ...

    async def post(
        self,
        *,
        kind: LedgerKind,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused: ...

    async def charge(
        self,
        *,
        call_id: str,
        amount: int,
        reference: str | None,
        idempotency_key: str,
        description: str,
    ) -> Posted | Refused: ...

    async def hold(self, call_id: str, amount: int) -> bool: ...

    async def hold_up_to(self, call_id: str, wanted: int) -> int: ...

    async def release(self, call_id: str) -> int: ...


class SequentialCallPath:
    """The call-path operations as the single writes run one after another (each
    atomic on its own), for a store whose writes must stay one statement each."""

    async def open_call(
        self: _Writes,
        call_id: str,
        amount: int,
        *,
        record: Work[object] | None,
        refused: Work[object],
    ) -> Opened:
        if record is not None:
            await self._db.unit(record)
        if await self.hold(call_id, amount):
            return Opened(held=True)
        await self._db.unit(refused)
        return Opened(held=False)

    async def tick(
        self: _Writes, call_id: str, plan: TickPlan, *, also: Work[object] | None = None
    ) -> Ticked:
        if also is not None:
            await self._db.unit(also)
        state = await self.state()
        amount, key = plan.charge(state)
        posted: Posted | Refused | None = None
        hold_left: int | None = None
        if amount:
            posted = await self.charge(
                call_id=call_id,
                amount=amount,
                reference=call_id,
                idempotency_key=key,
                description=charge_description(call_id),
            )
            if isinstance(posted, Refused):
                return Ticked(state, amount, posted, 0)
            hold_left = posted.hold_left
        wanted = plan.hold(state, hold_left)
        added = await self.hold_up_to(call_id, wanted) if wanted else 0
        return Ticked(state, amount, posted, added)

    async def settle(
        self: _Writes,
        call_id: str,
        decide: Callable[[int], Settlement],
        *,
        also: Callable[[Settlement], Work[T]],
    ) -> Settled[T]:
        settlement = decide(await self.charged_for(call_id))
        posted: Posted | Refused | None = None
        if settlement.charge_now:
            posted = await self.charge(
                call_id=call_id,
                amount=settlement.charge_now,
                reference=call_id,
                idempotency_key=final_key(call_id),
                description=charge_description(call_id),
            )
            if isinstance(posted, Refused):
                return Settled(settlement, posted, None, 0, None)
        refund: Posted | Refused | None = None
        if settlement.excess:
            refund = await self.post(
                kind=LedgerKind.REFUND,
                amount=settlement.excess,
                reference=call_id,
                idempotency_key=refund_key(call_id),
                description=refund_description(call_id),
            )
        released = await self.release(call_id)
        recorded = await self._db.unit(also(settlement))
        return Settled(settlement, posted, refund, released, recorded)


def final_key(call_id: str) -> str:
    return f"call:{call_id}:final"


def refund_key(call_id: str) -> str:
    return f"call:{call_id}:refund"


def refund_description(call_id: str) -> str:
    return f"call {call_id}: charged beyond its final cost"
