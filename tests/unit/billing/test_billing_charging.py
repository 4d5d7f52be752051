"""Charging a live call in slices: worked examples and a simulated wallet + PBX."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.domain.charging import authorize, final_charge, next_step, paid_seconds
from callcontrol.domain.money import MICRO, parse_credits
from callcontrol.domain.rating import Direction, Rate, affordable_seconds, call_cost

MARGIN = 5  # the app ticks a few seconds before the paid time ends


def rate(per_minute: str, increments: str = "60/60", fee: str = "0") -> Rate:
    first, next_ = (int(part) for part in increments.split("/"))
    return Rate(
        None,
        Direction.OUTBOUND,
        None,
        "GB",
        None,
        parse_credits(per_minute),
        parse_credits(fee),
        first,
        next_,
    )


@dataclass
class Call:
    """A wallet of ``available`` credits, one call, and a PBX that ends the call at
    ``paid_until`` unless the caller hangs up first (after ``talk`` seconds)."""

    rate: Rate
    available: int
    charged: int = 0
    held: int = 0
    steps: list[tuple[int, int, int, int, bool]] = field(default_factory=list)

    def run(self, talk: int, interval: int = 60) -> tuple[int, bool]:
        """Ticks until the end; returns (talk seconds, whether the PBX cut the call)."""
        elapsed = 0
        while True:
            step = next_step(
                self.rate,
                elapsed_s=elapsed,
                charged=self.charged,
                held=self.held,
                available=self.available,
                interval=interval,
            )
            assert step.shortfall == 0
            self._charge(step.charge_now)
            self.held += step.hold_more
            self.available -= step.hold_more
            self.steps.append((elapsed, step.charge_now, self.held, step.paid_until, step.cut_off))
            if talk <= step.paid_until - MARGIN or step.cut_off:
                end = min(talk, step.paid_until)
                break
            elapsed = step.paid_until - MARGIN
        settlement = final_charge(self.rate, end, self.charged)
        assert settlement.excess == 0
        self._charge(settlement.charge_now)
        self.available += self.held  # release
        self.held = 0
        return end, end < talk

    def _charge(self, amount: int) -> None:
        from_hold = min(amount, self.held)
        assert amount - from_hold <= self.available, "charged beyond the hold + available"
        self.held -= from_hold
        self.available -= amount - from_hold
        self.charged += amount


def test_ten_credits_at_one_per_minute_are_cut_at_600_seconds() -> None:
    call = Call(rate("1"), available=10 * MICRO)
    assert call.run(talk=3600) == (600, True)
    assert call.charged == 10 * MICRO
    assert call.available == 0
    # answer: nothing due, one minute held, paid until 60 s
    assert call.steps[0] == (0, 0, 1 * MICRO, 60, False)
    # 5 s before each minute ends: that minute is charged, the next is held
    assert call.steps[1] == (55, 1 * MICRO, 1 * MICRO, 115, False)
    # the tenth minute is the last one paid: the PBX ends the call at 600 s
    assert call.steps[-1][3] == 600
    assert call.steps[-1][4] is True


def test_a_short_call_pays_its_blocks_and_gets_the_rest_back() -> None:
    call = Call(rate("1", "30/6", fee="0.1"), available=10 * MICRO)
    assert call.run(talk=40) == (40, False)
    assert call.charged == parse_credits("0.1") + parse_credits("0.7")  # fee + 42 s
    assert call.available == 10 * MICRO - call.charged


def test_at_30_6_the_cut_lands_on_the_last_paid_block() -> None:
    """0.75 credit at 1/min, 30/6: 42 s are paid (48 s would cost 0.8)."""
    call = Call(rate("1", "30/6"), available=parse_credits("0.75"))
    assert call.run(talk=600) == (42, True)
    assert call.charged == parse_credits("0.7")


def test_the_connection_fee_is_charged_at_answer() -> None:
    call = Call(rate("1", fee="0.25"), available=5 * MICRO)
    call.run(talk=10)
    assert call.steps[0][1] == parse_credits("0.25")
    assert call.charged == parse_credits("1.25")


def test_authorize_needs_the_fee_and_the_first_block() -> None:
    mobile = rate("0.60", "30/6", fee="0.01")
    assert authorize(mobile, parse_credits("0.31")).allowed
    refused = authorize(mobile, parse_credits("0.309999"))
    assert not refused.allowed
    assert refused.required == parse_credits("0.31")
    assert refused.reason is not None and "insufficient credits" in refused.reason


def test_a_smaller_hold_than_planned_moves_the_cut_off() -> None:
    """Another call took the credits: only 0.5 of the planned minute was held."""
    one = rate("1", "1/1")
    assert paid_seconds(one, charged=2 * MICRO, held=MICRO // 2, limit=180) == 150
    assert paid_seconds(rate("1", fee="1"), charged=0, held=MICRO // 2, limit=60) == 0


def test_final_charge_reports_billable_seconds_and_cost() -> None:
    settlement = final_charge(rate("0.10", "30/6", fee="0.01"), 95, parse_credits("0.07"))
    assert settlement.billable_seconds == 96
    assert settlement.cost == parse_credits("0.17")
    assert settlement.charge_now == parse_credits("0.10")
    unanswered = final_charge(rate("0.10", fee="0.01"), 0, 0, answered=False)
    assert (unanswered.cost, unanswered.charge_now) == (0, 0)


@settings(max_examples=300, deadline=None)
@given(
    per_minute=st.integers(1, 3 * MICRO),
    fee=st.integers(0, MICRO),
    first=st.integers(1, 60),
    next_=st.integers(1, 60),
    budget=st.integers(0, 20 * MICRO),
    talk=st.integers(0, 4000),
    interval=st.integers(10, 120),
)
def test_every_call_is_charged_exactly_its_cost_and_cut_when_credits_end(
    per_minute: int, fee: int, first: int, next_: int, budget: int, talk: int, interval: int
) -> None:
    r = Rate(None, Direction.OUTBOUND, None, "GB", None, per_minute, fee, first, next_)
    if not authorize(r, budget).allowed:
        return
    call = Call(r, available=budget)
    end, cut = call.run(talk, interval)
    assert call.charged == call_cost(r, end) <= budget
    assert call.available == budget - call.charged
    paid = affordable_seconds(r, budget)
    assert paid is not None
    assert end == min(talk, paid)
    assert cut == (paid < talk)
