"""The IVR flow model: what a flow file means, as frozen values.

A ``Flow`` is a named set of nodes (``Menu`` and ``TimeSwitch``) with a ``start``
node. Menus play prompts, wait for a key and follow the key's ``Action``; time
switches choose between two actions by the local time. Every node, action and
prompt keeps the ``Pos`` (file, line, column) it came from, so messages can point at
the flow file. No I/O here: ``loader.py`` builds these from YAML, ``interpreter.py``
runs them.

A Flow is immutable: a call that obtained one keeps exactly that version, whatever
the admin edits afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = [
    "DIGIT_KEYS",
    "OPTION_KEYS",
    "Action",
    "Dial",
    "File",
    "Flow",
    "GotoFlow",
    "GotoMenu",
    "Hangup",
    "Menu",
    "Node",
    "OpenRange",
    "Play",
    "Pos",
    "Prompt",
    "Repeat",
    "Ring",
    "Say",
    "Sound",
    "TimeSwitch",
]

DIGIT_KEYS = "0123456789"
OPTION_KEYS = DIGIT_KEYS + "*#"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Pos:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NOWHERE = Pos("<none>", 0, 0)

# ---- prompts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sound:
    """An Asterisk sound by name, e.g. ``tt-monkeys`` or ``digits/1``."""

    name: str
    pos: Pos = field(default=NOWHERE, compare=False)

    def __str__(self) -> str:
        return f"sound:{self.name}"


@dataclass(frozen=True, slots=True)
class File:
    """The organisation's recording: ``path`` is absolute, ``relative`` as written."""

    path: Path
    relative: str
    pos: Pos = field(default=NOWHERE, compare=False)

    def __str__(self) -> str:
        return f"file:{self.relative}"


@dataclass(frozen=True, slots=True)
class Say:
    """Text spoken by the TTS engine; ``voice`` None means the engine's default."""

    text: str
    voice: str | None = None
    pos: Pos = field(default=NOWHERE, compare=False)

    def __str__(self) -> str:
        voice = f"[{self.voice}]" if self.voice else ""
        return f"say{voice}:{self.text!r}"


Prompt = Sound | File | Say

# ---- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ring:
    """Ring a user; ``fallback`` runs when busy, not answered or unavailable."""

    user: str
    fallback: Action | None = None
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Dial:
    """Direct dial: collect an extension (``#`` ends it) and ring its user.

    The first digit is awaited for the menu's timeout, the next ones for
    ``digit_timeout`` each; entry ends at ``max_digits``. An empty entry counts as
    a timeout of the menu, an unknown extension as an invalid key.
    """

    prompts: tuple[Prompt, ...] = ()
    max_digits: int = 4
    digit_timeout: float = 3.0
    fallback: Action | None = None
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class GotoMenu:
    """Go to another node (menu or time switch) of the same flow."""

    menu: str
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class GotoFlow:
    """Go to the start of another flow (its version at that moment)."""

    flow: str
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Repeat:
    """Play the current menu again, from a fresh start (retries reset)."""

    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Play:
    """Play prompts (not interruptible), then ``then`` (default: hang up)."""

    prompts: tuple[Prompt, ...]
    then: Action | None = None
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call."""

    pos: Pos = field(default=NOWHERE, compare=False)


Action = Ring | Dial | GotoMenu | GotoFlow | Repeat | Play | Hangup

# ---- nodes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Menu:
    """Prompts, then a key; ``retries`` more attempts after a timeout or invalid key."""

    name: str
    prompts: tuple[Prompt, ...]
    options: Mapping[str, Action]
    on_failure: Action
    timeout: float = 5.0
    retries: int = 2
    timeout_prompts: tuple[Prompt, ...] = ()
    invalid_prompts: tuple[Prompt, ...] = ()
    interruptible: bool = True
    pos: Pos = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class OpenRange:
    """Open on ``weekday`` (0 = Monday) from ``start`` to ``end``.

    ``end`` <= ``start`` means the range runs past midnight into the next day;
    ``end`` None means until midnight (written ``24:00``).
    """

    weekday: int
    start: time
    end: time | None

    def contains(self, local: datetime) -> bool:
        day = local.weekday()
        clock = local.time().replace(tzinfo=None)
        if self.end is None:
            return day == self.weekday and clock >= self.start
        if self.start < self.end:
            return day == self.weekday and self.start <= clock < self.end
        # past midnight: the evening of `weekday` and the small hours of the next day
        return (day == self.weekday and clock >= self.start) or (
            day == (self.weekday + 1) % 7 and clock < self.end
        )


@dataclass(frozen=True, slots=True)
class TimeSwitch:
    """Chooses ``open`` or ``closed`` by the flow's local time; a holiday is closed all day."""

    name: str
    ranges: tuple[OpenRange, ...]
    open: Action
    closed: Action
    holidays: frozenset[date] = frozenset()
    pos: Pos = field(default=NOWHERE, compare=False)

    def is_open(self, now: datetime, timezone: str) -> bool:
        """Whether ``now`` (tz-aware) falls in the open hours, in ``timezone``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        local = now.astimezone(ZoneInfo(timezone))
        if local.date() in self.holidays:
            return False
        return any(r.contains(local) for r in self.ranges)


Node = Menu | TimeSwitch


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow file: its nodes, the start node, time zone and content version."""

    name: str
    start: str
    nodes: Mapping[str, Node]
    timezone: str = "UTC"
    description: str = ""
    path: Path | None = None
    version: str = ""
    pos: Pos = field(default=NOWHERE, compare=False)

    @property
    def menus(self) -> dict[str, Menu]:
        return {k: v for k, v in self.nodes.items() if isinstance(v, Menu)}

    @property
    def time_switches(self) -> dict[str, TimeSwitch]:
        return {k: v for k, v in self.nodes.items() if isinstance(v, TimeSwitch)}


def action_targets(action: Action) -> list[Action]:
    """The action and every action nested in it (fallbacks, ``then``), depth first."""
    out: list[Action] = [action]
    nested: Action | None = None
    if isinstance(action, Ring | Dial):
        nested = action.fallback
    elif isinstance(action, Play):
        nested = action.then
    if nested is not None:
        out.extend(action_targets(nested))
    return out


def describe_action(action: Action) -> str:
    """A short human text for an action, as in flow files."""
    match action:
        case Ring(user=user):
            return f"ring {user}"
        case Dial(max_digits=n):
            return f"dial an extension (up to {n} digits)"
        case GotoMenu(menu=menu):
            return f"menu {menu}"
        case GotoFlow(flow=flow):
            return f"flow {flow}"
        case Repeat():
            return "repeat"
        case Play(prompts=prompts):
            return "play " + ", ".join(str(p) for p in prompts)
        case Hangup():
            return "hangup"
    raise AssertionError(action)  # pragma: no cover
