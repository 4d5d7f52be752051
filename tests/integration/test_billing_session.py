"""The charging session of a call, on a real database, with a fake call and a fake clock.

The session reaches the call only through ``CallLimits`` (set the PBX limit, warn
the user), so these tests need no ARI: ``FakeCall`` records what the session asked.
Worked examples at 0.6 credits a minute, per second (0.01 credit a second).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from callcontrol.billing.service import ChargingService, Quote
from callcontrol.billing.session import (
    CallCharging,
    CallChargingSession,
    ChargingPolicy,
    Refused,
)
from callcontrol.calls.call import utcnow
from callcontrol.calls.records import CallStore
from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.domain.rating import Direction
from callcontrol.store.db import Database

CENT = MICRO // 100  # 0.01 credit: one second at 0.6/min
RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,0.6,0,1/1,0.01 a second
outbound,,DE,,6,0.1,1/1,Germany
"""
NUMBER = "+442079460000"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCall:
    """The telephony side: remembers the limits and warnings it was asked for."""

    def __init__(self) -> None:
        self.limits: list[float] = []
        self.warnings: list[int] = []

    async def set_paid_time(self, seconds: float, channel_id: str | None = None) -> None:
        self.limits.append(round(seconds, 3))

    async def warn_low_credit(self, seconds: int) -> None:
        self.warnings.append(seconds)


class Org:
    def __init__(self, db: Database, clock: FakeClock, policy: ChargingPolicy) -> None:
        self.service = ChargingService(db)
        self.store = CallStore(db)
        self.clock = clock
        self.charging = CallCharging(self.service, self.store, policy, clock=clock)
        self.n = 0

    async def call(self, number: str = NUMBER, direction: Direction = Direction.INBOUND) -> str:
        self.n += 1
        call_id = f"call-{self.n}"
        await self.store.start(
            call_id=call_id,
            direction=CallDirection(direction.value),
            caller="+15551234567",
            callee=number,
            channel_id=f"chan-{self.n}",
            started_at=utcnow(),
        )
        return call_id

    async def quote(self, number: str = NUMBER, direction: Direction = Direction.INBOUND) -> Quote:
        return await self.service.quote(number, direction)

    async def session(self, call_id: str, fake: FakeCall) -> CallChargingSession:
        verdict = await self.charging.authorize(call_id, await self.quote(), fake)
        assert isinstance(verdict, CallChargingSession), verdict
        return verdict


@pytest.fixture
async def org(database: Database, tmp_path: Path) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    org = Org(database, FakeClock(), ChargingPolicy(interval=10, warning=3))
    await org.service.import_rates(rates)
    return org


async def fund(org: Org, amount: int, key: str = "funds") -> None:
    await org.service.wallet.credit(amount, LedgerKind.PURCHASE, "test", key, "test funds")


async def test_authorize_reserves_the_first_block_before_anything_rings(org: Org) -> None:
    await fund(org, 5 * CENT)
    call_id = await org.call()
    session = await org.session(call_id, FakeCall())
    assert session.held == CENT  # the connection fee (0) and the first second
    state = await org.service.wallet.balance()
    assert (state.held, state.available) == (CENT, 4 * CENT)
    record = await org.store.get(call_id)
    assert record is not None and record.charge_state == "authorized"
    assert record.rate_id == session.rate.id


async def test_a_call_that_cannot_pay_its_first_block_is_refused_and_holds_nothing(
    org: Org,
) -> None:
    await fund(org, CENT - 1)
    call_id = await org.call()
    verdict = await org.charging.authorize(call_id, await org.quote(), FakeCall())
    assert isinstance(verdict, Refused)
    assert "insufficient credits" in verdict.reason
    assert (await org.service.wallet.balance()).held == 0
    record = await org.store.get(call_id)
    assert record is not None and record.charge_state == "refused_no_credit"


async def test_three_calls_on_nine_seconds_of_credit_all_get_their_first_block_paid(
    org: Org,
) -> None:
    """The review's case: 0.09 credits, three calls at once. Before, the first call
    took all 9 s at its answer and the second was answered and cut at 0 s."""
    await fund(org, 9 * CENT)
    fakes = [FakeCall() for _ in range(3)]
    sessions = [await org.session(await org.call(), fake) for fake in fakes]
    for session in sessions:  # answered one after the other
        await session.start()
    for session in sessions:
        assert session.paid_until >= 1, "an answered call always has its first block paid"
    total = sum(s.charged + s.held for s in sessions)
    assert total <= 9 * CENT
    # The first call did not take everything: the others got more than their first block.
    assert sessions[0].paid_until < 7
    assert sessions[1].paid_until >= 2
    # They talk until the credits end; every call re-plans before its limit.
    for _ in range(1, 10):
        org.clock.now += 1
        for session in sessions:
            if session.elapsed() >= session.paid_until - 1 and not session.cut_off:
                await session.tick()
    for session in sessions:
        session.hung_up()
        await session.settle()
    costs = []
    for n in range(1, 4):
        record = await org.store.get(f"call-{n}")
        assert record is not None and record.cost_micro is not None
        costs.append(record.cost_micro)
    assert all(cost >= CENT for cost in costs)
    assert sum(costs) <= 9 * CENT
    state = await org.service.wallet.balance()
    assert state.held == 0 and state.balance == 9 * CENT - sum(costs)
    assert await org.service.wallet.audit() == []


async def test_a_call_alone_takes_its_whole_slice_and_settles_exactly(org: Org) -> None:
    await fund(org, 100 * CENT)
    fake = FakeCall()
    session = await org.session(await org.call(), fake)
    await session.start()
    assert (session.paid_until, session.cut_off) == (10, False)  # one 10 s slice
    assert fake.limits == [10.0]
    org.clock.now += 7.6
    session.hung_up()
    org.clock.now += 30  # a late settlement does not bill the time after the hangup
    await session.settle()
    record = await org.store.get("call-1")
    assert record is not None
    assert (record.billable_seconds, record.cost_micro, record.charge_state) == (
        7,
        7 * CENT,
        "settled",
    )
    assert (await org.service.wallet.balance()).balance == 93 * CENT
    assert await org.service.wallet.audit() == []


async def test_the_limit_lands_on_the_second_the_credits_end_and_the_user_is_warned(
    org: Org,
) -> None:
    await fund(org, 5 * CENT)
    fake = FakeCall()
    session = await org.session(await org.call(), fake)
    await session.start()
    assert (session.paid_until, session.cut_off) == (5, True)
    assert session._warn_at() == 2  # 3 s before the end (policy.warning)
    org.clock.now += 4.9
    assert session.ended_at_limit()  # within the slack of the paid second: the PBX cut it
    org.clock.now -= 4.9
    assert not session.ended_at_limit()


async def test_credits_added_extend_the_limit(org: Org) -> None:
    await fund(org, 5 * CENT)
    fake = FakeCall()
    session = await org.session(await org.call(), fake)
    await session.start()
    await fund(org, 5 * CENT, "top-up")
    org.clock.now += 2
    await session.tick()
    assert (session.paid_until, session.cut_off) == (10, True)
    assert fake.limits[-1] == 8.0  # 10 s paid, 2 s gone


async def test_a_resumed_call_keeps_its_rate_after_the_table_dropped_it(
    org: Org, tmp_path: Path
) -> None:
    await fund(org, 100 * CENT)
    call_id = await org.call("+4930123456", Direction.OUTBOUND)
    quote = await org.quote("+4930123456", Direction.OUTBOUND)
    first = await org.charging.authorize(call_id, quote, FakeCall())
    assert isinstance(first, CallChargingSession)
    answered = utcnow() - timedelta(seconds=4)
    await org.store.mark_answered(call_id, answered)
    org.clock.now -= 4
    await first.start()  # the app that died: fee charged, slice held
    org.clock.now += 4
    # A new rate table without Germany, then the restart.
    new_rates = tmp_path / "new.csv"
    new_rates.write_text(RATES.splitlines()[0] + "\n" + RATES.splitlines()[1] + "\n")
    await org.service.import_rates(new_rates)
    record = await org.store.get(call_id)
    assert record is not None
    fake = FakeCall()
    resumed = await org.charging.resume(record, fake)
    assert resumed is not None and resumed.rate == quote.rate
    await resumed.resume(4.0)
    assert resumed.charged == MICRO // 10 + 4 * MICRO // 10  # fee + 4 s, charged once
    org.clock.now += 2
    resumed.hung_up()
    await resumed.settle()
    record = await org.store.get(call_id)
    assert record is not None and record.cost_micro == MICRO // 10 + 6 * MICRO // 10
    assert await org.service.wallet.audit() == []


async def test_the_crash_rule_charges_what_was_paid_at_most(org: Org) -> None:
    await fund(org, 5 * CENT)
    call_id = await org.call()
    session = await org.session(call_id, FakeCall())
    answered = utcnow() - timedelta(seconds=60)
    await org.store.mark_answered(call_id, answered)
    await session.start()  # paid until 5 s; then the app died and the PBX cut the call
    record = await org.store.get(call_id)
    assert record is not None
    await org.charging.settle_lost(record, utcnow())
    await org.store.finish(call_id, utcnow(), Disposition.ANSWERED, None, EndedBy.PBX)
    record = await org.store.get(call_id)
    assert record is not None and (record.cost_micro, record.charge_state) == (
        5 * CENT,
        "settled",
    )
    state = await org.service.wallet.balance()
    assert (state.balance, state.held) == (0, 0)
    assert await org.service.wallet.audit() == []


async def test_a_lost_call_that_never_answered_releases_its_reserved_block(org: Org) -> None:
    await fund(org, 5 * CENT)
    call_id = await org.call()
    await org.session(call_id, FakeCall())  # authorized, then the app died while it rang
    record = await org.store.get(call_id)
    assert record is not None
    await org.charging.settle_lost(record, utcnow())
    await org.store.finish(call_id, utcnow(), Disposition.FAILED, None, EndedBy.PBX)
    state = await org.service.wallet.balance()
    assert (state.balance, state.held) == (5 * CENT, 0)
    assert await org.service.wallet.audit() == []


async def test_only_a_call_short_of_its_slice_replans_when_credits_arrive(org: Org) -> None:
    """A call with its whole slice paid ignores new credits until its next tick; a call
    short of its slice (here: holding a share of the last credits) re-plans at once."""
    await fund(org, 15 * CENT)
    full = await org.session(await org.call(), FakeCall())
    await full.start()  # 10 s held: a whole slice
    short = await org.session(await org.call(), FakeCall())
    await short.start()  # what is left: a share of the last 5 s
    assert (full.short, short.short) == (False, True)
    full.credits_added()
    short.credits_added()
    assert not full._wake.is_set()
    assert short._wake.is_set()
