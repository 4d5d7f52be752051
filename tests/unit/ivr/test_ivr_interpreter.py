"""The interpreter against scripted ports: every action, retries, barge-in, direct dial,
time switches, hang-ups (no task left behind), floods of keys."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, time
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcontrol.ivr.interpreter import MAX_SILENT_ENTRIES, FlowOutcome, OutcomeKind, run_flow
from callcontrol.ivr.loader import parse_flow
from callcontrol.ivr.model import (
    Flow,
    GotoMenu,
    Hangup,
    Menu,
    OpenRange,
    Prompt,
    Ring,
    Sound,
    TimeSwitch,
)
from callcontrol.ivr.port import CallerHungUp, DigitBuffer, RingOutcome
from callcontrol.ivr.simulate import SimulatedPort

FRIDAY_10 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

FLOW = """\
timezone: Europe/London
start: hours
time_switches:
  hours:
    hours: {mon-fri: "09:00-17:00"}
    open: main
    closed: {play: [closed], then: hangup}
menus:
  main:
    prompts: [welcome, choose]
    options:
      1: {ring: bob, fallback: {play: [sorry-busy], then: main}}
      2: support
      3: {flow: other}
      4: {play: [bye]}
      5: hangup
      6: repeat
      7: {ring: carol}
      9:
        dial: {prompts: [enter-ext], max_digits: 4, digit_timeout: 3}
        fallback: {play: [nobody]}
    timeout: 5
    retries: 2
    timeout_prompts: [no-key]
    invalid_prompts: [bad-key]
    on_failure: {ring: alice, fallback: {play: [goodbye]}}
  support:
    prompts: [support-menu]
    interruptible: false
    options:
      1: {ring: alice}
      "*": main
    retries: 0
    on_failure: main
"""

OTHER = """\
start: entry
menus:
  entry:
    prompts: [other-welcome]
    options: {1: {ring: bob}}
    retries: 0
    on_failure: hangup
"""

EXTENSIONS = {"1001": "alice", "1002": "bob"}


def flow_of(text: str, name: str = "main") -> Flow:
    flow, errors = parse_flow(
        textwrap.dedent(text), file=f"{name}.yaml", name=name, base_dir=Path("/nonexistent")
    )
    assert errors == [] and flow is not None
    return flow


MAIN = flow_of(FLOW)


async def run(
    keys: Sequence[str],
    *,
    flow: Flow = MAIN,
    at: datetime = FRIDAY_10,
    ring: dict[str, RingOutcome] | None = None,
    resolve: dict[str, Flow] | None = None,
) -> tuple[FlowOutcome, SimulatedPort]:
    port = SimulatedPort(keys, now=at, ring=ring, extensions=EXTENSIONS)
    outcome = await run_flow(flow, port, resolve=(resolve or {}).get)
    return outcome, port


def names(prompts: Sequence[Prompt]) -> list[str]:
    return [p.name if isinstance(p, Sound) else str(p) for p in prompts]


# ---- actions ---------------------------------------------------------------------------


async def test_ring_answered_connects() -> None:
    outcome, port = await run(["1"])
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.user == "bob"
    assert port.rang == ["bob"]
    assert names(port.played) == ["welcome", "choose"]
    assert [str(s) for s in outcome.steps][-3:] == [
        "key 1: ring bob",
        "ring bob -> answered",
        "end: connected to bob",
    ]


async def test_ring_busy_runs_the_fallback() -> None:
    outcome, port = await run(["1", "2", "1"], ring={"bob": RingOutcome.BUSY})
    assert port.rang == ["bob", "alice"]
    assert names(port.played) == [
        "welcome",
        "choose",
        "sorry-busy",
        "welcome",
        "choose",
        "support-menu",
    ]
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.user == "alice"


async def test_ring_without_fallback_is_not_reached() -> None:
    outcome, _port = await run(["7"], ring={"carol": RingOutcome.NO_ANSWER})
    assert outcome.kind is OutcomeKind.NOT_REACHED
    assert (outcome.user, outcome.ring) == ("carol", RingOutcome.NO_ANSWER)
    assert outcome.describe() == "carol not reached (no_answer)"


async def test_submenu_and_back() -> None:
    outcome, port = await run(["2", "*", "2", "1"])
    assert names(port.played) == [
        "welcome",
        "choose",
        "support-menu",
        "welcome",
        "choose",
        "support-menu",
    ]
    assert outcome.user == "alice"
    assert "menu support" in [str(s) for s in outcome.steps]


async def test_play_then_hangup_and_plain_hangup() -> None:
    outcome, port = await run(["4"])
    assert outcome.kind is OutcomeKind.HUNG_UP and port.hung_up
    assert names(port.played)[-1] == "bye"
    outcome, port = await run(["5"])
    assert outcome.kind is OutcomeKind.HUNG_UP and port.hung_up
    assert outcome.describe() == "hung up by the flow"


async def test_repeat_plays_the_menu_again_with_fresh_retries() -> None:
    outcome, port = await run(["8", "8", "6", "8", "8", "1"])
    menu = ["welcome", "choose"]
    assert names(port.played) == [
        *menu,
        "bad-key",
        *menu,
        "bad-key",
        *menu,  # 6: repeat, the attempts start over
        *menu,
        "bad-key",
        *menu,
        "bad-key",
        *menu,
    ]
    assert "menu main (repeat)" in [str(s) for s in outcome.steps]
    assert outcome.user == "bob"


async def test_flow_jump_uses_the_version_resolved_at_that_moment() -> None:
    other_v1 = flow_of(OTHER, "other")
    other_v2 = flow_of(OTHER.replace("other-welcome", "other-welcome-v2"), "other")
    versions = {"other": other_v1}
    port = SimulatedPort(["3", "1"], now=FRIDAY_10)

    def resolve(name: str) -> Flow | None:
        found = versions.get(name)
        versions["other"] = other_v2  # an edit right after the jump: this call keeps v1
        return found

    outcome = await run_flow(MAIN, port, resolve=resolve)
    assert names(port.played)[-1] == "other-welcome"
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.flow == "other"
    assert f"flow other (version {other_v1.version})" in [str(s) for s in outcome.steps]


async def test_flow_jump_to_a_missing_flow_fails() -> None:
    outcome, _port = await run(["3"])
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "no flow named 'other'"


# ---- timeouts and invalid keys -----------------------------------------------------------


async def test_timeouts_with_retries_then_on_failure() -> None:
    outcome, port = await run([], ring={"alice": RingOutcome.UNAVAILABLE})
    assert names(port.played) == [
        "welcome",
        "choose",
        "no-key",
        "welcome",
        "choose",
        "no-key",
        "welcome",
        "choose",  # third timeout: no retry prompt, on_failure
        "goodbye",
    ]
    steps = [str(s) for s in outcome.steps]
    assert steps.count("wait 5s for a key -> timeout") == 3
    assert "timeout, attempt 3 of 3: on_failure" in steps
    assert outcome.kind is OutcomeKind.HUNG_UP


async def test_invalid_keys_then_on_failure() -> None:
    outcome, port = await run(["8", "#", "*"])
    assert names(port.played) == [
        "welcome",
        "choose",
        "bad-key",
        "welcome",
        "choose",
        "bad-key",
        "welcome",
        "choose",
    ]
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.user == "alice"  # on_failure
    assert "invalid, attempt 3 of 3: on_failure" in [str(s) for s in outcome.steps]


async def test_mixed_timeout_and_invalid_count_together() -> None:
    outcome, port = await run(["_", "8", "_"])
    menu = ["welcome", "choose"]
    assert names(port.played) == [*menu, "no-key", *menu, "bad-key", *menu]
    assert port.rang == ["alice"] and outcome.user == "alice"


# ---- barge-in ------------------------------------------------------------------------


async def test_barge_in_stops_the_prompts_and_counts_as_the_choice() -> None:
    outcome, _port = await run(["^2", "1"])
    steps = [str(s) for s in outcome.steps]
    assert "play sound:welcome, sound:choose -> 2 (barge-in)" in steps
    assert "wait 5s for a key -> 2" not in steps
    assert outcome.user == "alice"


async def test_no_barge_in_when_not_interruptible() -> None:
    # support is not interruptible: a key during its prompts is dropped
    outcome, _port = await run(["2", "^1", "1"])
    steps = [str(s) for s in outcome.steps]
    assert "play sound:support-menu" in steps
    assert "wait 5s for a key -> 1" in steps
    assert outcome.user == "alice"


async def test_barge_in_during_retry_prompts() -> None:
    outcome, port = await run(["8", "^1"])
    assert names(port.played) == ["welcome", "choose", "bad-key"]
    assert outcome.user == "bob"


# ---- direct dial -----------------------------------------------------------------------


async def test_direct_dial_known_extension() -> None:
    outcome, port = await run(["9", "1", "0", "0", "2"])
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.extension == "1002"
    assert port.rang == ["1002"]
    assert "dial 1002 -> answered" in [str(s) for s in outcome.steps]


async def test_direct_dial_hash_finishes_and_barge_in_on_its_prompt() -> None:
    outcome, port = await run(["9", "^1", "0", "#"], ring={"10": RingOutcome.ANSWERED})
    assert port.rang == ["10"]
    assert names(port.played)[-1] == "enter-ext"
    assert outcome.extension == "10"


async def test_direct_dial_inter_digit_timeout_ends_the_entry() -> None:
    outcome, port = await run(["9", "1", "0", "0", "_"], ring={"100": RingOutcome.ANSWERED})
    assert port.rang == ["100"]
    assert outcome.kind is OutcomeKind.CONNECTED and outcome.extension == "100"


async def test_direct_dial_unknown_extension_is_invalid_input() -> None:
    outcome, port = await run(["9", "5555", "1"])
    assert port.rang == ["5555", "bob"]
    assert names(port.played) == ["welcome", "choose", "enter-ext", "bad-key", "welcome", "choose"]
    assert "dial 5555 -> unknown" in [str(s) for s in outcome.steps]


async def test_direct_dial_empty_entry_is_a_timeout_and_star_invalid() -> None:
    outcome, port = await run(["9", "#", "9", "*", "1"])
    assert names(port.played) == [
        "welcome",
        "choose",
        "enter-ext",
        "no-key",
        "welcome",
        "choose",
        "enter-ext",
        "bad-key",
        "welcome",
        "choose",
    ]
    assert outcome.user == "bob"


async def test_direct_dial_busy_runs_fallback() -> None:
    outcome, port = await run(["9", "1001"], ring={"alice": RingOutcome.BUSY})
    assert names(port.played)[-1] == "nobody"
    assert outcome.kind is OutcomeKind.HUNG_UP


# ---- time switches -------------------------------------------------------------------


async def test_time_switch_open_and_closed() -> None:
    outcome, port = await run(["1"], at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    assert outcome.user == "bob"
    outcome, port = await run(["1"], at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC))  # Saturday
    assert names(port.played) == ["closed"] and outcome.kind is OutcomeKind.HUNG_UP
    assert "Sat 2026-11-28 10:00 Europe/London: closed" in [str(s) for s in outcome.steps]


def _switch(*ranges: OpenRange, holidays: frozenset[object] = frozenset()) -> TimeSwitch:
    return TimeSwitch("t", ranges, GotoMenu("a"), Hangup(), holidays)  # type: ignore[arg-type]


def test_time_switch_across_midnight() -> None:
    friday_night = _switch(OpenRange(4, time(22, 0), time(2, 0)))
    zone = "Europe/Berlin"

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text + "+01:00")

    assert not friday_night.is_open(at("2026-11-27T21:59"), zone)  # Fri
    assert friday_night.is_open(at("2026-11-27T22:00"), zone)
    assert friday_night.is_open(at("2026-11-28T01:59"), zone)  # Sat small hours
    assert not friday_night.is_open(at("2026-11-28T02:00"), zone)
    assert not friday_night.is_open(at("2026-11-26T23:00"), zone)  # Thu
    sunday_night = _switch(OpenRange(6, time(23, 0), time(1, 0)))
    assert sunday_night.is_open(at("2026-11-30T00:30"), zone)  # Monday 00:30, week wraps
    until_midnight = _switch(OpenRange(0, time(20, 0), None))
    assert until_midnight.is_open(at("2026-11-30T23:59"), zone)
    assert not until_midnight.is_open(at("2026-12-01T00:00"), zone)


def test_time_switch_across_dst_uses_wall_clock() -> None:
    every_day = _switch(*(OpenRange(d, time(9, 0), time(17, 0)) for d in range(7)))
    # London moves to BST (UTC+1) on 2026-03-29: 08:30 UTC is 08:30 before, 09:30 after
    assert not every_day.is_open(datetime(2026, 3, 28, 8, 30, tzinfo=UTC), "Europe/London")
    assert every_day.is_open(datetime(2026, 3, 29, 8, 30, tzinfo=UTC), "Europe/London")
    # and back on 2026-10-25: 16:30 UTC is 17:30 BST the day before, 16:30 GMT after
    assert not every_day.is_open(datetime(2026, 10, 24, 16, 30, tzinfo=UTC), "Europe/London")
    assert every_day.is_open(datetime(2026, 10, 25, 16, 30, tzinfo=UTC), "Europe/London")
    with pytest.raises(ValueError, match="timezone-aware"):
        every_day.is_open(datetime(2026, 3, 29, 8, 30), "Europe/London")


def test_holidays_are_closed_all_day() -> None:
    from datetime import date

    switch = _switch(
        *(OpenRange(d, time(0, 0), None) for d in range(7)),
        holidays=frozenset({date(2026, 12, 25)}),
    )
    assert not switch.is_open(datetime(2026, 12, 25, 12, 0, tzinfo=UTC), "UTC")
    assert switch.is_open(datetime(2026, 12, 24, 12, 0, tzinfo=UTC), "UTC")
    # the holiday is the local date: 23:30 UTC on the 24th is the 25th in Tokyo
    assert not switch.is_open(datetime(2026, 12, 24, 23, 30, tzinfo=UTC), "Asia/Tokyo")


# ---- the loop guard ------------------------------------------------------------------


def _menu(name: str, on_failure: object, timeout: float = 1.0) -> Menu:
    return Menu(
        name=name,
        prompts=(Sound(f"{name}-prompt"),),
        options=MappingProxyType({"1": Ring("alice")}),
        on_failure=on_failure,  # type: ignore[arg-type]
        timeout=timeout,
        retries=0,
    )


async def test_silent_loop_in_an_unvalidated_flow_ends_as_failed() -> None:
    flow = Flow(
        "loop",
        "a",
        MappingProxyType({"a": _menu("a", GotoMenu("b")), "b": _menu("b", GotoMenu("a"))}),
    )
    outcome, port = await run([], flow=flow)
    assert outcome.kind is OutcomeKind.FAILED
    assert "without a key" in outcome.reason
    assert len(port.played) == MAX_SILENT_ENTRIES


# ---- floods and random keys ------------------------------------------------------------

KEYS = st.sampled_from([*"0123456789*#", "_", "^1", "^2", "^9", "^*", "hangup"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(KEYS, max_size=60), busy=st.booleans())
def test_random_keys_never_break_the_flow(keys: list[str], busy: bool) -> None:
    ring = {u: RingOutcome.BUSY for u in ("alice", "bob")} if busy else None
    outcome, _port = asyncio.run(run(keys, ring=ring))
    assert outcome.kind in set(OutcomeKind)
    assert outcome.steps and str(outcome.steps[-1]).startswith("end: ")


async def test_flood_of_500_random_keys_terminates() -> None:
    import random

    rng = random.Random(7)
    keys = [rng.choice("0123456789*#") for _ in range(500)]
    busy = {"alice": RingOutcome.BUSY, "bob": RingOutcome.BUSY, "1001": RingOutcome.BUSY}
    outcome, _port = await run(keys, ring=busy)
    assert outcome.kind in (OutcomeKind.HUNG_UP, OutcomeKind.FAILED, OutcomeKind.NOT_REACHED)


# ---- a live port: real asyncio waits, hang-ups, cancellation -----------------------------


class LivePort:
    """A CallPort on a DigitBuffer: prompts named in ``hold`` play until a digit or
    ``finish()``; the others end at once."""

    def __init__(self, hold: set[str] | None = None) -> None:
        self.digits = DigitBuffer()
        self.hold = hold or set()
        self.played: list[str] = []
        self.waiting = asyncio.Event()
        self.playing = asyncio.Event()
        self._done: asyncio.Future[None] | None = None

    async def play(self, prompts: Sequence[Prompt], *, interruptible: bool) -> str | None:
        for prompt in prompts:
            assert isinstance(prompt, Sound)
            if interruptible and self.digits.pending():
                return await self.digits.read(0)
            self.played.append(prompt.name)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if prompt.name not in self.hold:
                done.set_result(None)
            self._done = done
            self.playing.set()
            try:
                if interruptible:
                    digit = await self.digits.read_until(done)
                    if digit is not None:
                        return digit
                else:
                    await done
            finally:
                self.playing.clear()
                done.cancel()
        return None

    def finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def read_digit(self, timeout: float) -> str | None:
        self.waiting.set()
        try:
            return await self.digits.read(timeout)
        finally:
            self.waiting.clear()

    def flush_digits(self) -> None:
        self.digits.flush()

    async def ring_user(self, user_name: str) -> RingOutcome:
        if self.digits.closed:
            raise CallerHungUp()
        return RingOutcome.ANSWERED

    async def ring_extension(self, extension: str) -> RingOutcome:
        return RingOutcome.UNKNOWN

    async def hangup(self) -> None:
        self.digits.close()

    def now(self) -> datetime:
        return FRIDAY_10


async def test_live_barge_in_stops_the_playing_prompt_and_skips_the_rest() -> None:
    port = LivePort(hold={"welcome"})
    task = asyncio.create_task(run_flow(MAIN, port))
    await port.playing.wait()
    assert port.played == ["welcome"]
    port.digits.push("1")
    outcome = await task
    assert port.played == ["welcome"]  # "choose" never started
    assert outcome.user == "bob"


async def test_live_caller_hangup_mid_menu_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    port = LivePort()
    task = asyncio.create_task(run_flow(MAIN, port))
    await port.waiting.wait()  # the menu waits for a key
    port.digits.close()  # the caller hangs up
    outcome = await task
    assert outcome.kind is OutcomeKind.CALLER_HUNG_UP
    assert str(outcome.steps[-1]) == "end: caller hung up"
    assert asyncio.all_tasks() == before


async def test_live_hangup_during_a_held_prompt() -> None:
    before = asyncio.all_tasks()
    port = LivePort(hold={"welcome"})
    task = asyncio.create_task(run_flow(MAIN, port))
    await port.playing.wait()
    port.digits.close()
    outcome = await task
    assert outcome.kind is OutcomeKind.CALLER_HUNG_UP
    assert asyncio.all_tasks() == before


async def test_live_cancellation_propagates_and_leaves_nothing() -> None:
    before = asyncio.all_tasks()
    port = LivePort()
    task = asyncio.create_task(run_flow(MAIN, port))
    await port.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before


async def test_live_timeout_really_waits_and_flood_is_absorbed() -> None:
    fast = Flow("fast", "a", MappingProxyType({"a": _menu("a", Hangup(), timeout=0.01)}))
    port = LivePort()
    for _ in range(500):
        port.digits.push("7")  # invalid, far more than the buffer keeps
    outcome = await run_flow(fast, port)
    assert outcome.kind is OutcomeKind.HUNG_UP
    steps = [str(s) for s in outcome.steps]
    assert "invalid key 7" in steps
