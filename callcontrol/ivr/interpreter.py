"""Running a flow on a call, through a ``CallPort``.

``run_flow(flow, port, resolve=...)`` starts at ``flow.start`` and follows the
caller's keys until the call is connected to a user, hung up (by the flow or by
the caller), not reached (a ``ring`` without ``fallback`` failed) or failed. It
returns a ``FlowOutcome`` with every ``Step`` taken, for logs and the simulator.

Menus: the prompts play (a key stops them when ``interruptible``), then the
interpreter waits ``timeout`` seconds for a key. A timeout or a key with no option
counts as a failed attempt; while attempts remain (``retries``), the
``timeout_prompts``/``invalid_prompts`` play and the menu starts over; after the
last one, ``on_failure`` runs. After an invalid key the buffered keys are dropped,
so a flood of keys is only ever one invalid attempt at a time. ``repeat`` starts
the menu over with its retries reset.

Versions: the call runs on the Flow objects it holds. A ``flow:`` jump asks
``resolve(name)`` at that moment, so it gets the version current at the jump;
from then on the call stays on that one.

Limits (a flow that was not validated, or loops across flows that one file's
validation cannot see): more than ``MAX_SILENT_ENTRIES`` menus or switches entered
without a key from the caller, or ``MAX_ENTRIES`` in all, ends the flow as FAILED.

The interpreter starts no task and no timer of its own: everything it awaits is a
port call, so cancelling ``run_flow`` leaves nothing behind. ``CancelledError`` is
never caught; ``CallerHungUp`` from any port call ends the flow as CALLER_HUNG_UP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from callcontrol.ivr.model import (
    DIGIT_KEYS,
    Action,
    Dial,
    Flow,
    GotoFlow,
    GotoMenu,
    Hangup,
    Menu,
    Play,
    Prompt,
    Repeat,
    Ring,
    TimeSwitch,
    describe_action,
)
from callcontrol.ivr.port import CallerHungUp, CallPort, RingOutcome

__all__ = ["MAX_ENTRIES", "MAX_SILENT_ENTRIES", "FlowOutcome", "OutcomeKind", "Step", "run_flow"]

MAX_SILENT_ENTRIES = 50
MAX_ENTRIES = 500
_log = logging.getLogger(__name__)


class OutcomeKind(StrEnum):
    CONNECTED = "connected"  # a user answered; the bridged call has ended
    HUNG_UP = "hung_up"  # the flow hung up (hangup, or play with no then)
    CALLER_HUNG_UP = "caller_hung_up"
    NOT_REACHED = "not_reached"  # ring/dial without fallback: busy, no answer...
    FAILED = "failed"  # a limit, an unknown flow or menu at run time


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the flow did, in words; ``flow``/``node`` say where."""

    flow: str
    node: str | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class FlowOutcome:
    """How the flow ended, and the steps on the way."""

    kind: OutcomeKind
    steps: list[Step] = field(default_factory=list)
    user: str | None = None
    extension: str | None = None
    ring: RingOutcome | None = None
    reason: str = ""
    flow: str = ""
    node: str | None = None

    def describe(self) -> str:
        who = self.user or (f"extension {self.extension}" if self.extension else "?")
        match self.kind:
            case OutcomeKind.CONNECTED:
                return f"connected to {who}"
            case OutcomeKind.HUNG_UP:
                return "hung up by the flow"
            case OutcomeKind.CALLER_HUNG_UP:
                return "caller hung up"
            case OutcomeKind.NOT_REACHED:
                return f"{who} not reached ({self.ring})"
        return f"failed: {self.reason}"


@dataclass(frozen=True, slots=True)
class _GoNode:
    name: str


@dataclass(frozen=True, slots=True)
class _GoFlow:
    name: str


class _Retry(StrEnum):
    """What an option asks of its menu instead of leaving it."""

    REPEAT = "repeat"
    INVALID = "invalid"
    TIMEOUT = "timeout"


class _End(Exception):
    """Ends the run with ``outcome`` (a control signal, not an error)."""

    def __init__(self, outcome: FlowOutcome) -> None:
        self.outcome = outcome


_Next = _GoNode | _GoFlow | _Retry


async def run_flow(
    flow: Flow,
    port: CallPort,
    *,
    resolve: Callable[[str], Flow | None] | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = _log,
) -> FlowOutcome:
    """Run ``flow`` on the call behind ``port``; ``resolve`` finds flows for ``flow:``."""
    return await _Run(flow, port, resolve, log).run()


class _Run:
    def __init__(
        self,
        flow: Flow,
        port: CallPort,
        resolve: Callable[[str], Flow | None] | None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.flow = flow
        self.port = port
        self.resolve = resolve
        self.log = log
        self.steps: list[Step] = []
        self.node: str | None = None
        self.entries = 0
        self.silent_entries = 0

    # ---- bookkeeping -----------------------------------------------------------------

    def step(self, text: str) -> None:
        self.steps.append(Step(self.flow.name, self.node, text))
        self.log.debug("ivr %s/%s: %s", self.flow.name, self.node or "-", text)

    def end(
        self,
        kind: OutcomeKind,
        *,
        user: str | None = None,
        extension: str | None = None,
        ring: RingOutcome | None = None,
        reason: str = "",
    ) -> _End:
        outcome = FlowOutcome(
            kind,
            self.steps,
            user=user,
            extension=extension,
            ring=ring,
            reason=reason,
            flow=self.flow.name,
            node=self.node,
        )
        self.step(f"end: {outcome.describe()}")
        return _End(outcome)

    def heard_key(self) -> None:
        self.silent_entries = 0

    def enter(self, what: str) -> None:
        self.entries += 1
        self.silent_entries += 1
        if self.silent_entries > MAX_SILENT_ENTRIES:
            raise self.end(
                OutcomeKind.FAILED,
                reason=f"{MAX_SILENT_ENTRIES} menus in a row without a key: a loop",
            )
        if self.entries > MAX_ENTRIES:
            raise self.end(OutcomeKind.FAILED, reason=f"more than {MAX_ENTRIES} menus in one call")
        self.step(what)

    # ---- the run ---------------------------------------------------------------------

    async def run(self) -> FlowOutcome:
        try:
            self.log.info("ivr: flow %s (version %s) starts", self.flow.name, self.flow.version)
            target: _Next = _GoNode(self.flow.start)
            while True:
                target = await self.go(target)
        except _End as end:
            outcome = end.outcome
        except CallerHungUp:
            outcome = FlowOutcome(
                OutcomeKind.CALLER_HUNG_UP, self.steps, flow=self.flow.name, node=self.node
            )
            self.step("end: caller hung up")
        self.log.info("ivr: flow %s ended: %s", outcome.flow, outcome.describe())
        return outcome

    async def go(self, target: _Next) -> _Next:
        if isinstance(target, _GoFlow):
            flow = self.flow if target.name == self.flow.name else None
            if self.resolve is not None:
                flow = self.resolve(target.name)
            if flow is None:
                raise self.end(OutcomeKind.FAILED, reason=f"no flow named {target.name!r}")
            self.flow = flow
            self.node = None
            self.step(f"flow {flow.name} (version {flow.version or '-'})")
            return _GoNode(flow.start)
        if isinstance(target, _Retry):  # repeat outside a menu: nothing to repeat
            raise self.end(OutcomeKind.FAILED, reason=f"{target} outside a menu")
        node = self.flow.nodes.get(target.name)
        if node is None:
            raise self.end(OutcomeKind.FAILED, reason=f"no menu named {target.name!r}")
        self.node = node.name
        if isinstance(node, TimeSwitch):
            self.enter(f"time switch {node.name}")
            return await self.switch(node)
        self.enter(f"menu {node.name}")
        return await self.menu(node)

    async def switch(self, node: TimeSwitch) -> _Next:
        now = self.port.now()
        is_open = node.is_open(now, self.flow.timezone)
        local = now.astimezone(ZoneInfo(self.flow.timezone))
        state = "open" if is_open else "closed"
        self.step(f"{local:%a %Y-%m-%d %H:%M} {self.flow.timezone}: {state}")
        return await self.action(node.open if is_open else node.closed, None)

    # ---- menus -----------------------------------------------------------------------

    async def menu(self, menu: Menu) -> _Next:
        attempts = menu.retries + 1
        failures = 0
        key: str | None = None
        play_menu = True
        while True:
            if key is None and play_menu:
                key = await self.play(menu.prompts, menu.interruptible)
            play_menu = True
            if key is None:
                key = await self.wait_key(menu.timeout)
            if key is None:
                result: _Next = _Retry.TIMEOUT
            else:
                self.heard_key()
                action = menu.options.get(key)
                if action is None:
                    self.step(f"invalid key {key}")
                    self.port.flush_digits()
                    result = _Retry.INVALID
                else:
                    self.step(f"key {key}: {describe_action(action)}")
                    result = await self.action(action, menu)
            key = None
            if result is _Retry.REPEAT:
                failures = 0
                self.enter(f"menu {menu.name} (repeat)")
                continue
            if not isinstance(result, _Retry):
                return result
            failures += 1
            if failures >= attempts:
                self.step(f"{result}, attempt {failures} of {attempts}: on_failure")
                self.port.flush_digits()
                return await self.action(menu.on_failure, menu)
            self.step(f"{result}, attempt {failures} of {attempts}")
            retry_prompts = (
                menu.timeout_prompts if result is _Retry.TIMEOUT else menu.invalid_prompts
            )
            key = await self.play(retry_prompts, menu.interruptible)

    async def play(self, prompts: Sequence[Prompt], interruptible: bool) -> str | None:
        if not prompts:
            return None
        text = "play " + ", ".join(str(p) for p in prompts)
        key = await self.port.play(prompts, interruptible=interruptible)
        if not interruptible:
            self.port.flush_digits()
            key = None
        self.step(f"{text} -> {key} (barge-in)" if key is not None else text)
        return key

    async def wait_key(self, timeout: float) -> str | None:  # noqa: ASYNC109
        key = await self.port.read_digit(timeout)
        self.step(f"wait {timeout:g}s for a key -> {key if key is not None else 'timeout'}")
        return key

    # ---- actions ---------------------------------------------------------------------

    async def action(self, action: Action, menu: Menu | None) -> _Next:
        match action:
            case Hangup():
                self.step("hangup")
                await self.port.hangup()
                raise self.end(OutcomeKind.HUNG_UP)
            case GotoMenu(menu=name):
                return _GoNode(name)
            case GotoFlow(flow=name):
                return _GoFlow(name)
            case Repeat():
                return _Retry.REPEAT
            case Play(prompts=prompts, then=then):
                await self.play(prompts, interruptible=False)
                return await self.action(then or Hangup(), menu)
            case Ring(user=user, fallback=fallback):
                outcome = await self.port.ring_user(user)
                self.step(f"ring {user} -> {outcome}")
                if outcome is RingOutcome.ANSWERED:
                    raise self.end(OutcomeKind.CONNECTED, user=user, ring=outcome)
                return await self.not_reached(fallback, menu, outcome, user=user)
            case Dial():
                if menu is None:
                    raise self.end(OutcomeKind.FAILED, reason="dial outside a menu")
                return await self.dial(action, menu)
        raise AssertionError(action)  # pragma: no cover

    async def not_reached(
        self,
        fallback: Action | None,
        menu: Menu | None,
        ring: RingOutcome,
        *,
        user: str | None = None,
        extension: str | None = None,
    ) -> _Next:
        if fallback is None:
            raise self.end(OutcomeKind.NOT_REACHED, user=user, extension=extension, ring=ring)
        return await self.action(fallback, menu)

    async def dial(self, dial: Dial, menu: Menu) -> _Next:
        key = await self.play(dial.prompts, interruptible=True)
        if key is None:
            key = await self.wait_key(menu.timeout)
        digits = ""
        while key is not None and key != "#":
            if key not in DIGIT_KEYS:
                self.step(f"dial: {key} is not a digit")
                self.port.flush_digits()
                return _Retry.INVALID
            digits += key
            if len(digits) >= dial.max_digits:
                break
            key = await self.port.read_digit(dial.digit_timeout)
        self.step(
            f"digits (#, {dial.max_digits} digits or {dial.digit_timeout:g}s end) -> "
            f"{digits or 'none'}"
        )
        if not digits:
            return _Retry.TIMEOUT
        outcome = await self.port.ring_extension(digits)
        self.step(f"dial {digits} -> {outcome}")
        if outcome is RingOutcome.UNKNOWN:
            self.port.flush_digits()
            return _Retry.INVALID
        if outcome is RingOutcome.ANSWERED:
            raise self.end(OutcomeKind.CONNECTED, extension=digits, ring=outcome)
        return await self.not_reached(dial.fallback, menu, outcome, extension=digits)
