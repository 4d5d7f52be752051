"""Building the flow model from composed YAML nodes (used by ``loader.py``).

``FlowBuilder`` walks the nodes of one file: the flow's keys, menus, time switches,
actions and prompts, checking types, keys, ranges, names, time zones, hours, sounds
and recordings as it goes. Every problem goes to the ``NodeReader``; what could not
be read is left out (or defaulted) so that the rest is still checked and every error
of the file is reported at once.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Callable
from datetime import date, time
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml

from callcontrol.ivr.model import (
    OPTION_KEYS,
    WEEKDAYS,
    Action,
    Dial,
    File,
    Flow,
    GotoFlow,
    GotoMenu,
    Hangup,
    Menu,
    Node,
    OpenRange,
    Play,
    Pos,
    Prompt,
    Repeat,
    Ring,
    Say,
    Sound,
    TimeSwitch,
)
from callcontrol.ivr.yamlnodes import NULL, STR, TIMESTAMP, Entry, NodeReader, kind_of

__all__ = ["FLOW_NAME", "MAX_NODES", "FlowBuilder"]

FLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
SOUND_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")
VOICE_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)?")
RECORDING_EXTENSIONS = (".wav", ".gsm", ".ulaw")
RESERVED_NAMES = frozenset({"hangup", "repeat"})

TOP_KEYS = ("description", "timezone", "start", "menus", "time_switches")
MENU_KEYS = (
    "description",
    "prompts",
    "options",
    "timeout",
    "retries",
    "timeout_prompts",
    "invalid_prompts",
    "on_failure",
    "interruptible",
)
SWITCH_KEYS = ("description", "hours", "holidays", "open", "closed")
ACTION_KINDS = ("ring", "dial", "menu", "flow", "play")
ACTION_EXTRAS = {"ring": ("fallback",), "dial": ("fallback",), "play": ("then",)}
DIAL_KEYS = ("prompts", "max_digits", "digit_timeout")
PROMPT_KINDS = ("sound", "file", "say")

MAX_NODES = 1000  # menus and time switches of one flow
MAX_RETRIES = 10
TIMEOUT_RANGE = (1.0, 60.0)
DIGIT_TIMEOUT_RANGE = (1.0, 30.0)
MAX_DIGITS_RANGE = (1, 10)

_TIME_RANGE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


class FlowBuilder:
    """Builds model objects from nodes; problems go to the reader."""

    def __init__(
        self,
        reader: NodeReader,
        base_dir: Path,
        sound_exists: Callable[[str], bool] | None,
    ) -> None:
        self.r = reader
        self.base_dir = base_dir
        self.sound_exists = sound_exists
        self.node_positions: dict[str, yaml.Node] = {}
        self.start_pos = Pos(reader.file, 1, 1)
        self.broken_actions = 0  # actions that did not parse: their targets are unknown

    # ---- the flow --------------------------------------------------------------------

    def flow(
        self, root: yaml.Node, name: str, version: str, default_tz: str, path: Path
    ) -> Flow | None:
        r = self.r
        top = r.mapping(root, "the flow")
        if top is None:
            return None
        r.check_keys(top, TOP_KEYS, ("start", "menus"), "the flow", root)
        description = ""
        if "description" in top:
            description = r.text(top["description"].value, "description", any_scalar=True) or ""
        timezone = default_tz
        if "timezone" in top:
            timezone = self.timezone(top["timezone"].value) or default_tz
        start = ""
        if "start" in top:
            start = r.text(top["start"].value, "start") or ""
            self.start_pos = r.pos(top["start"].value)

        nodes: dict[str, Node] = {}
        sections = (("menus", "menu", self.menu), ("time_switches", "time switch", self.switch))
        for section, what, build in sections:
            if section not in top:
                continue
            entries = r.mapping(top[section].value, section)
            if entries is None:
                continue
            if section == "menus" and not entries:
                r.error(top[section].value, "menus must name at least one menu")
            if len(self.node_positions) + len(entries) > MAX_NODES:
                r.error(
                    top[section].key_node,
                    f"too many menus and time switches: more than {MAX_NODES} in one flow "
                    "(the limit; split it into flows)",
                )
                return None
            for entry in entries.values():
                if not self.node_name(entry, what):
                    continue
                node = build(entry)
                if node is not None:
                    nodes[entry.key] = node
        return Flow(
            name=name,
            start=start,
            nodes=MappingProxyType(nodes),
            timezone=timezone,
            description=description,
            path=path,
            version=version,
            pos=r.pos(root),
        )

    def node_name(self, entry: Entry, what: str) -> bool:
        r = self.r
        if entry.key in self.node_positions:
            line = self.node_positions[entry.key].start_mark.line + 1
            r.error(entry.key_node, f"the name {entry.key!r} is already used on line {line}")
            return False
        self.node_positions[entry.key] = entry.key_node
        if entry.key in RESERVED_NAMES:
            r.error(entry.key_node, f"{entry.key!r} is a reserved word; name the {what} otherwise")
            return False
        if not NODE_NAME.fullmatch(entry.key):
            r.error(
                entry.key_node,
                f"{what} name {entry.key!r} must start with a letter and contain only "
                "letters, digits, _ and -",
            )
            return False
        return True

    def timezone(self, node: yaml.Node) -> str | None:
        name = self.r.text(node, "timezone")
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.r.error(
                node,
                f"unknown time zone {name!r}{self.r.suggest(name, available_timezones())} "
                "(use an IANA name such as Europe/London)",
            )
            return None
        return name

    # ---- menus -----------------------------------------------------------------------

    def menu(self, entry: Entry) -> Menu | None:
        r = self.r
        what = f"menu {entry.key!r}"
        keys = r.mapping(entry.value, what)
        if keys is None:
            return None
        r.check_keys(keys, MENU_KEYS, ("prompts", "options", "on_failure"), what, entry.key_node)
        prompts: tuple[Prompt, ...] = ()
        if "prompts" in keys:
            prompts = self.prompts(keys["prompts"].value, "prompts", allow_empty=False)
        options: dict[str, Action] = {}
        if "options" in keys:
            options = self.options(keys["options"].value, what)
        timeout, retries, interruptible = 5.0, 2, True
        if "timeout" in keys:
            timeout = r.number(keys["timeout"].value, "timeout", *TIMEOUT_RANGE) or timeout
        if "retries" in keys:
            value = r.integer(keys["retries"].value, "retries", 0, MAX_RETRIES)
            retries = retries if value is None else value
        if "interruptible" in keys:
            flag = r.boolean(keys["interruptible"].value, "interruptible")
            interruptible = interruptible if flag is None else flag
        timeout_prompts: tuple[Prompt, ...] = ()
        invalid_prompts: tuple[Prompt, ...] = ()
        if "timeout_prompts" in keys:
            timeout_prompts = self.prompts(keys["timeout_prompts"].value, "timeout_prompts")
        if "invalid_prompts" in keys:
            invalid_prompts = self.prompts(keys["invalid_prompts"].value, "invalid_prompts")
        on_failure: Action | None = None
        if "on_failure" in keys:
            on_failure = self.action(keys["on_failure"].value, "on_failure", in_menu=True)
        return Menu(
            name=entry.key,
            prompts=prompts,
            options=MappingProxyType(options),
            on_failure=on_failure or Hangup(),
            timeout=timeout,
            retries=retries,
            timeout_prompts=timeout_prompts,
            invalid_prompts=invalid_prompts,
            interruptible=interruptible,
            pos=r.pos(entry.key_node),
        )

    def options(self, node: yaml.Node, what: str) -> dict[str, Action]:
        r = self.r
        entries = r.mapping(node, f"options of {what}")
        if entries is None:
            return {}
        if not entries:
            r.error(node, f"{what} needs at least one option")
        options: dict[str, Action] = {}
        for entry in entries.values():
            if len(entry.key) != 1 or entry.key not in OPTION_KEYS:
                r.error(
                    entry.key_node,
                    f'option key {entry.key!r} must be one key: 0-9, "*" or "#"',
                )
                continue
            action = self.action(entry.value, f"option {entry.key}", in_menu=True, option=True)
            if action is not None:
                options[entry.key] = action
        return options

    # ---- time switches ---------------------------------------------------------------

    def switch(self, entry: Entry) -> TimeSwitch | None:
        r = self.r
        what = f"time switch {entry.key!r}"
        keys = r.mapping(entry.value, what)
        if keys is None:
            return None
        r.check_keys(keys, SWITCH_KEYS, ("hours", "open", "closed"), what, entry.key_node)
        ranges: list[OpenRange] = []
        if "hours" in keys:
            ranges = self.hours(keys["hours"].value)
        holidays: set[date] = set()
        if "holidays" in keys:
            holidays = self.holidays(keys["holidays"].value)
        open_ = self.action(keys["open"].value, "open") if "open" in keys else None
        closed = self.action(keys["closed"].value, "closed") if "closed" in keys else None
        return TimeSwitch(
            name=entry.key,
            ranges=tuple(ranges),
            open=open_ or Hangup(),
            closed=closed or Hangup(),
            holidays=frozenset(holidays),
            pos=r.pos(entry.key_node),
        )

    def hours(self, node: yaml.Node) -> list[OpenRange]:
        r = self.r
        entries = r.mapping(node, "hours")
        if entries is None:
            return []
        out: list[OpenRange] = []
        for entry in entries.values():
            days = self.days(entry)
            if days is None:
                continue
            value = entry.value
            items = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for item in items:
                parsed = self.time_range(item)
                if parsed is not None:
                    out.extend(OpenRange(day, parsed[0], parsed[1]) for day in days)
        return out

    def days(self, entry: Entry) -> list[int] | None:
        text = entry.key.strip().lower()
        first, sep, last = text.partition("-")
        names = [first, last] if sep else [first]
        if any(n not in WEEKDAYS for n in names):
            bad = next(n for n in names if n not in WEEKDAYS)
            self.r.error(
                entry.key_node,
                f"unknown day {bad!r}{self.r.suggest(bad, WEEKDAYS)} in hours: use mon, tue, wed, "
                "thu, fri, sat, sun or a range such as mon-fri",
            )
            return None
        a = WEEKDAYS.index(names[0])
        b = WEEKDAYS.index(names[-1])
        return [(a + i) % 7 for i in range((b - a) % 7 + 1)]

    def time_range(self, node: yaml.Node) -> tuple[time, time | None] | None:
        r = self.r
        if not isinstance(node, yaml.ScalarNode) or node.tag == NULL:
            r.error(node, f'opening hours must be text like "09:00-17:30", not {kind_of(node)}')
            return None
        text = str(node.value)
        m = _TIME_RANGE.fullmatch(text)
        if m is None:
            r.error(node, f'bad time range {text!r}: write HH:MM-HH:MM, e.g. "09:00-17:30"')
            return None
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            r.error(
                node, f"bad time range {text!r}: hours 00-23 (24:00 for midnight), minutes 00-59"
            )
            return None
        start = time(h1, m1)
        end = None if h2 == 24 else time(h2, m2)
        if end == start:
            r.error(node, f"bad time range {text!r}: it starts and ends at the same time")
            return None
        return start, end

    def holidays(self, node: yaml.Node) -> set[date]:
        r = self.r
        items = r.sequence(node, "holidays")
        out: set[date] = set()
        for item in items or []:
            ok = isinstance(item, yaml.ScalarNode) and item.tag in (STR, TIMESTAMP)
            try:
                day = date.fromisoformat(str(item.value).strip()) if ok else None
            except ValueError:
                day = None
            if day is None:
                r.error(item, f"holiday {_show(item)} must be a date YYYY-MM-DD")
            elif day in out:
                r.error(item, f"holiday {day} is listed twice")
            else:
                out.add(day)
        return out

    # ---- actions ---------------------------------------------------------------------

    def action(
        self, node: yaml.Node, what: str, *, in_menu: bool = False, option: bool = False
    ) -> Action | None:
        action = self._action(node, what, in_menu=in_menu, option=option)
        if action is None:
            self.broken_actions += 1
        return action

    def _action(
        self, node: yaml.Node, what: str, *, in_menu: bool = False, option: bool = False
    ) -> Action | None:
        r = self.r
        pos = r.pos(node)
        if isinstance(node, yaml.ScalarNode) and node.tag == STR:
            word = str(node.value).strip()
            if word == "hangup":
                return Hangup(pos)
            if word == "repeat":
                if not in_menu:
                    r.error(node, f"repeat in {what}: only a menu can be repeated")
                    return None
                return Repeat(pos)
            if not word:
                r.error(node, f"{what} must not be empty")
                return None
            return GotoMenu(word, pos)
        if not isinstance(node, yaml.MappingNode):
            r.error(
                node,
                f"{what} must be an action (hangup, repeat, a menu name, or ring:, dial:, "
                f"menu:, flow:, play:), not {kind_of(node)}",
            )
            return None
        keys = r.mapping(node, what)
        if keys is None:
            return None
        kinds = [k for k in keys if k in ACTION_KINDS]  # in file order
        if not kinds:
            r.check_keys(keys, ACTION_KINDS, (), what, node)
            if not keys:
                r.error(node, f"{what} needs one of: {', '.join(ACTION_KINDS)}")
            return None
        if len(kinds) > 1:
            r.error(keys[kinds[1]].key_node, f"{what} does one thing: {' and '.join(kinds)} given")
            return None
        kind = kinds[0]
        extras = ACTION_EXTRAS.get(kind, ())
        r.check_keys(keys, (kind, *extras), (), f"{what} ({kind})", node)
        value = keys[kind].value
        if kind == "ring":
            user = r.text(value, "ring (a user name)")
            fallback = self._nested(keys, "fallback", what, in_menu)
            return Ring(user, fallback, r.pos(value)) if user else None
        if kind == "dial":
            if not option:
                r.error(keys[kind].key_node, f"dial in {what}: direct dial is only a menu option")
                return None
            fallback = self._nested(keys, "fallback", what, in_menu)
            return self.dial(value, fallback, pos)
        if kind == "menu":
            target = r.text(value, "menu (a menu name)")
            return GotoMenu(target, r.pos(value)) if target else None
        if kind == "flow":
            target = r.text(value, "flow (a flow name)")
            return GotoFlow(target, r.pos(value)) if target else None
        prompts = self.prompts(value, "play", allow_empty=False)
        then = self._nested(keys, "then", what, in_menu)
        return Play(prompts, then, pos)

    def _nested(self, keys: dict[str, Entry], key: str, what: str, in_menu: bool) -> Action | None:
        if key not in keys:
            return None
        return self.action(keys[key].value, f"{key} of {what}", in_menu=in_menu)

    def dial(self, node: yaml.Node, fallback: Action | None, pos: Pos) -> Dial | None:
        r = self.r
        prompts: tuple[Prompt, ...] = ()
        max_digits, digit_timeout = 4, 3.0
        if not (isinstance(node, yaml.ScalarNode) and node.tag == NULL):
            keys = r.mapping(node, "dial")
            if keys is None:
                return None
            r.check_keys(keys, DIAL_KEYS, (), "dial", node)
            if "prompts" in keys:
                prompts = self.prompts(keys["prompts"].value, "prompts of dial")
            if "max_digits" in keys:
                n = r.integer(keys["max_digits"].value, "max_digits", *MAX_DIGITS_RANGE)
                max_digits = max_digits if n is None else n
            if "digit_timeout" in keys:
                t = r.number(keys["digit_timeout"].value, "digit_timeout", *DIGIT_TIMEOUT_RANGE)
                digit_timeout = digit_timeout if t is None else t
        return Dial(prompts, max_digits, digit_timeout, fallback, pos)

    # ---- prompts ---------------------------------------------------------------------

    def prompts(
        self, node: yaml.Node, what: str, *, allow_empty: bool = True
    ) -> tuple[Prompt, ...]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items and not allow_empty:
            self.r.error(node, f"{what} needs at least one prompt")
        out: list[Prompt] = []
        for item in items:
            prompt = self.prompt(item, what)
            if prompt is not None:
                out.append(prompt)
        return tuple(out)

    def prompt(self, node: yaml.Node, what: str) -> Prompt | None:
        r = self.r
        if isinstance(node, yaml.ScalarNode) and node.tag == STR:
            return self.sound(node)
        if not isinstance(node, yaml.MappingNode):
            r.error(
                node,
                f"a prompt in {what} must be a sound name or one of sound:, file:, say:, "
                f"not {kind_of(node)}",
            )
            return None
        keys = r.mapping(node, "a prompt")
        if keys is None:
            return None
        kinds = [k for k in keys if k in PROMPT_KINDS]  # in file order
        if len(kinds) != 1:
            if kinds:
                r.error(
                    keys[kinds[1]].key_node,
                    f"a prompt is one of sound, file, say: {' and '.join(kinds)} given",
                )
            else:
                r.check_keys(keys, PROMPT_KINDS, (), "a prompt", node)
                if not keys:
                    r.error(node, "a prompt needs one of sound:, file:, say:")
            return None
        kind = kinds[0]
        allowed = ("say", "voice") if kind == "say" else (kind,)
        r.check_keys(keys, allowed, (), f"a {kind} prompt", node)
        value = keys[kind].value
        if kind == "sound":
            return self.sound(value)
        if kind == "file":
            return self.recording(value)
        text = r.text(value, "say", any_scalar=True)
        voice: str | None = None
        if "voice" in keys:
            voice = r.text(keys["voice"].value, "voice")
            if voice is not None and not VOICE_NAME.fullmatch(voice):
                r.error(keys["voice"].value, f"voice {voice!r} is not a voice name (e.g. en-gb)")
                voice = None
        return Say(" ".join(text.split()), voice, r.pos(value)) if text else None

    def sound(self, node: yaml.Node) -> Sound | None:
        r = self.r
        name = r.text(node, "sound")
        if name is None:
            return None
        name = name.strip()
        if not SOUND_NAME.fullmatch(name) or ".." in name:
            r.error(node, f"{name!r} is not a sound name (e.g. tt-monkeys or digits/1)")
            return None
        if self.sound_exists is not None and not self.sound_exists(name):
            r.error(node, f"sound {name!r} does not exist on the PBX")
        return Sound(name, r.pos(node))

    def recording(self, node: yaml.Node) -> File | None:
        r = self.r
        rel = r.text(node, "file")
        if rel is None:
            return None
        rel = rel.strip()
        suffix = Path(rel).suffix.lower()
        if suffix not in RECORDING_EXTENSIONS:
            r.error(
                node,
                f"recording {rel!r}: unsupported file type {suffix or '(none)'}; "
                f"use {', '.join(RECORDING_EXTENSIONS)}",
            )
            return None
        base = self.base_dir.resolve()
        path = (base / rel).resolve()
        if Path(rel).is_absolute() or not path.is_relative_to(base):
            r.error(node, f"recording {rel!r} must be a path inside the flows directory")
            return None
        if not path.is_file():
            r.error(node, f"recording {rel!r} does not exist (in {base})")
            return None
        if suffix == ".wav":
            problem = _wav_problem(path)
            if problem:
                r.error(node, f"recording {rel!r}: {problem}")
                return None
        return File(path, rel, r.pos(node))


def _wav_problem(path: Path) -> str | None:
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    except (wave.Error, EOFError, OSError) as exc:
        return f"not a readable WAV file ({exc})"
    if (rate, channels, width) != (8000, 1, 2):
        return (
            f"is {rate} Hz, {channels} channel(s), {8 * width}-bit; Asterisk needs "
            "8000 Hz mono 16-bit WAV"
        )
    return None


def _show(node: yaml.Node) -> str:
    return repr(str(node.value)) if isinstance(node, yaml.ScalarNode) else kind_of(node)
