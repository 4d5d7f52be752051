"""The simulator: run a flow against a scripted caller, without a PBX.

The key script is a list of tokens, used in order whenever the IVR waits for the
caller:

    0-9 * #     a key, pressed when the IVR waits for one (after the prompts)
    ^K          key K pressed while the prompts play (barge-in)
    _           no key: the wait times out
    hangup      the caller hangs up
    1002#       several keys, one after the other (same as 1,0,0,2,#); a direct
                dial entry ends by itself at max_digits, so leave the # off then

When the script runs out, the caller stays silent (every wait times out). Ringing
answers unless the ``ring`` map says otherwise (``{"alice": BUSY}``, by user name
or extension); ``extensions`` maps extensions to user names for direct dial (an
extension not in it is unknown; None: every extension answers). The clock is fixed
at ``at`` (naive: in the flow's time zone). ``simulate`` returns the steps as lines:

    menu main
    play say:'For sales, press 1...'
    wait 5s for a key -> 1
    key 1: ring bob
    ring bob -> answered
    end: connected to bob
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from callcontrol.errors import InvalidInput
from callcontrol.ivr.interpreter import FlowOutcome, run_flow
from callcontrol.ivr.model import OPTION_KEYS, Flow, Prompt
from callcontrol.ivr.port import CallerHungUp, RingOutcome

__all__ = [
    "SimulatedPort",
    "parse_at",
    "parse_keys",
    "parse_ring",
    "simulate",
    "simulate_async",
]

TIMEOUT = "_"
HANGUP = "hangup"
BARGE = "^"


def parse_keys(text: str | Iterable[str]) -> list[str]:
    """Tokens from ``"1,#,_,^2,1002#"`` (or a list), checked; single keys split out."""
    raw = text.split(",") if isinstance(text, str) else list(text)
    tokens: list[str] = []
    for item in (t.strip() for t in raw):
        if not item:
            continue
        if item in (TIMEOUT, HANGUP):
            tokens.append(item)
            continue
        barge = item.startswith(BARGE)
        keys = item[1:] if barge else item
        if not keys or any(k not in OPTION_KEYS for k in keys):
            raise InvalidInput(
                f"bad key {item!r}: use 0-9, *, #, _ (time out), ^K (K during the prompts) "
                "or hangup"
            )
        tokens.append(BARGE + keys[0] if barge else keys[0])
        tokens.extend(keys[1:])
    return tokens


def parse_ring(items: Iterable[str]) -> dict[str, RingOutcome]:
    """``["alice=busy", "1002=no_answer"]`` -> a ring map."""
    out: dict[str, RingOutcome] = {}
    for item in items:
        who, sep, what = item.partition("=")
        try:
            if not sep or not who.strip():
                raise ValueError
            out[who.strip()] = RingOutcome(what.strip().lower())
        except ValueError:
            choices = ", ".join(o.value for o in RingOutcome)
            raise InvalidInput(f"--ring expects NAME=OUTCOME ({choices}), got {item!r}") from None
    return out


def parse_at(text: str | datetime | None, timezone: str) -> datetime:
    """An aware datetime: ISO text or naive datetime in ``timezone``; None: now."""
    if text is None:
        return datetime.now(UTC)
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"--at expects an ISO time such as 2026-11-27T10:00: {text!r}"
            ) from None
    else:
        when = text
    return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo(timezone))


class SimulatedPort:
    """A ``CallPort`` driven by a key script, with a fixed clock."""

    def __init__(
        self,
        keys: Iterable[str],
        *,
        now: datetime | None = None,
        ring: Mapping[str, RingOutcome] | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> None:
        self.script: deque[str] = deque(parse_keys(list(keys)))
        self.buffer: deque[str] = deque()
        self.clock = now or datetime.now(UTC)
        self.ring = dict(ring or {})
        self.extensions = None if extensions is None else dict(extensions)
        self.played: list[Prompt] = []
        self.rang: list[str] = []
        self.hung_up = False

    async def play(self, prompts: Sequence[Prompt], *, interruptible: bool) -> str | None:
        await asyncio.sleep(0)
        if interruptible and self.buffer:
            return self.buffer.popleft()
        self.played.extend(prompts)
        if self.script and self.script[0].startswith(BARGE):
            key = self.script.popleft()[1:]
            if interruptible:
                return key
            self.buffer.append(key)
        return None

    async def read_digit(self, timeout: float) -> str | None:  # noqa: ASYNC109
        await asyncio.sleep(0)
        if self.buffer:
            return self.buffer.popleft()
        if not self.script:
            return None
        token = self.script.popleft()
        if token == HANGUP:
            self.hung_up = True
            raise CallerHungUp()
        if token == TIMEOUT:
            return None
        return token.removeprefix(BARGE)

    def flush_digits(self) -> None:
        self.buffer.clear()

    async def ring_user(self, user_name: str) -> RingOutcome:
        await asyncio.sleep(0)
        self.rang.append(user_name)
        return self.ring.get(user_name, RingOutcome.ANSWERED)

    async def ring_extension(self, extension: str) -> RingOutcome:
        await asyncio.sleep(0)
        self.rang.append(extension)
        if extension in self.ring:
            return self.ring[extension]
        if self.extensions is None:
            return RingOutcome.ANSWERED
        user = self.extensions.get(extension)
        if user is None:
            return RingOutcome.UNKNOWN
        return self.ring.get(user, RingOutcome.ANSWERED)

    async def hangup(self) -> None:
        await asyncio.sleep(0)
        self.hung_up = True

    def now(self) -> datetime:
        return self.clock


async def simulate_async(
    flow: Flow,
    keys: Iterable[str],
    *,
    at: str | datetime | None = None,
    ring: Mapping[str, RingOutcome] | None = None,
    extensions: Mapping[str, str] | None = None,
    resolve: Callable[[str], Flow | None] | None = None,
) -> FlowOutcome:
    """Run ``flow`` on a ``SimulatedPort``; the outcome holds the steps."""
    port = SimulatedPort(keys, now=parse_at(at, flow.timezone), ring=ring, extensions=extensions)
    return await run_flow(flow, port, resolve=resolve)


def simulate(
    flow: Flow,
    keys: Iterable[str],
    *,
    at: str | datetime | None = None,
    ring: Mapping[str, RingOutcome] | None = None,
    extensions: Mapping[str, str] | None = None,
    resolve: Callable[[str], Flow | None] | None = None,
) -> list[str]:
    """The path a caller pressing ``keys`` takes through ``flow``, as lines."""
    outcome = asyncio.run(
        simulate_async(flow, keys, at=at, ring=ring, extensions=extensions, resolve=resolve)
    )
    return [str(step) for step in outcome.steps]
