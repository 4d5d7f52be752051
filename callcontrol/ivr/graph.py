"""A flow as a picture: DOT text, drawn by graphviz's ``dot``.

``to_dot(flow)`` renders the flow (menus as boxes, time switches as diamonds,
rings, plays, hangups and flow jumps as their own shapes, edges labelled with the
key or the reason: ``on_failure``, ``open``, ``closed``, ``not answered``,
``then``). ``draw(flow, path)`` writes an SVG or PNG with ``dot`` (Debian package
graphviz); no Python graphviz package is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from callcontrol.ivr.errors import GraphError
from callcontrol.ivr.model import (
    Action,
    Dial,
    Flow,
    GotoFlow,
    GotoMenu,
    Hangup,
    Menu,
    Play,
    Repeat,
    Ring,
    TimeSwitch,
)

__all__ = ["FORMATS", "draw", "to_dot"]

FORMATS = ("svg", "png")
DOT = "dot"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _q(text: str) -> str:
    """A DOT string literal; ``\\n`` in ``text`` becomes a line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Dot:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.lines: list[str] = []
        self.counter = 0

    def node_id(self, name: str) -> str:
        return _q("n:" + name)

    def fresh(self, label: str, shape: str, extra: str = "") -> str:
        self.counter += 1
        ident = _q(f"a{self.counter}")
        self.lines.append(f"  {ident} [label={_q(label)}, shape={shape}{extra}];")
        return ident

    def edge(self, source: str, target: str, label: str = "", style: str = "") -> None:
        attrs = []
        if label:
            attrs.append(f"label={_q(label)}")
        if style:
            attrs.append(f"style={style}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        self.lines.append(f"  {source} -> {target}{suffix};")

    def action(self, source: str, action: Action, label: str, here: str | None) -> None:
        """Draw ``action`` reached from ``source`` over an edge labelled ``label``."""
        match action:
            case GotoMenu(menu=name):
                self.edge(source, self.node_id(name), label)
            case Repeat():
                self.edge(source, self.node_id(here or "?"), f"{label} (repeat)", "dashed")
            case GotoFlow(flow=name):
                self.edge(source, self.fresh(f"flow {name}", "cds"), label)
            case Hangup():
                self.edge(source, self.fresh("hangup", "octagon"), label)
            case Ring(user=user, fallback=fallback):
                ring = self.fresh(f"ring {user}", "ellipse", ", style=filled, fillcolor=palegreen")
                self.edge(source, ring, label)
                if fallback is not None:
                    self.action(ring, fallback, "not answered", here)
            case Dial(max_digits=n, fallback=fallback):
                dial = self.fresh(
                    f"dial an extension\n(up to {n} digits, # ends)",
                    "ellipse",
                    ", style=filled, fillcolor=palegreen",
                )
                self.edge(source, dial, label)
                if fallback is not None:
                    self.action(dial, fallback, "not answered", here)
                if here is not None:
                    self.edge(dial, self.node_id(here), "unknown extension", "dotted")
            case Play(prompts=prompts, then=then):
                text = "\n".join(_short(str(p)) for p in prompts)
                play = self.fresh(f"play\n{text}", "note")
                self.edge(source, play, label)
                self.action(play, then or Hangup(), "then", here)

    def menu(self, menu: Menu) -> None:
        prompts = "\n".join(_short(str(p)) for p in menu.prompts)
        label = f"menu {menu.name}\n{prompts}\nwait {menu.timeout:g}s, {menu.retries} retries" + (
            "" if menu.interruptible else ", no barge-in"
        )
        self.lines.append(
            f"  {self.node_id(menu.name)} [label={_q(label)}, shape=box, style=rounded];"
        )
        me = self.node_id(menu.name)
        for key, action in menu.options.items():
            self.action(me, action, f"key {key}", menu.name)
        self.action(me, menu.on_failure, "on_failure", menu.name)

    def switch(self, node: TimeSwitch) -> None:
        hours: dict[int, list[str]] = {}
        for r in node.ranges:
            end = "24:00" if r.end is None else f"{r.end:%H:%M}"
            hours.setdefault(r.weekday, []).append(f"{r.start:%H:%M}-{end}")
        lines = [f"{_WEEKDAYS[d]} {', '.join(v)}" for d, v in sorted(hours.items())]
        if node.holidays:
            lines.append(f"closed on {len(node.holidays)} holidays")
        label = f"time switch {node.name}\n({self.flow.timezone})\n" + "\n".join(lines)
        me = self.node_id(node.name)
        self.lines.append(f"  {me} [label={_q(label)}, shape=diamond];")
        self.action(me, node.open, "open", None)
        self.action(me, node.closed, "closed", None)


def to_dot(flow: Flow) -> str:
    """The DOT source of ``flow``'s picture."""
    dot = _Dot(flow)
    title = f"flow {flow.name}" + (f": {flow.description}" if flow.description else "")
    head = [
        f"digraph {_q(flow.name)} {{",
        "  rankdir=LR;",
        f"  label={_q(title)}; labelloc=t;",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  "start" [shape=circle, label="start", style=filled, fillcolor=lightgrey];',
        f'  "start" -> {dot.node_id(flow.start)};',
    ]
    for node in flow.nodes.values():
        if isinstance(node, Menu):
            dot.menu(node)
        else:
            dot.switch(node)
    return "\n".join([*head, *dot.lines, "}"]) + "\n"


def draw(flow: Flow, out: str | Path, *, fmt: str | None = None, dot: str = DOT) -> Path:
    """Write ``flow``'s picture to ``out`` (format from ``fmt`` or the suffix)."""
    out = Path(out)
    kind = (fmt or out.suffix.lstrip(".")).lower()
    if kind not in FORMATS:
        raise GraphError(f"cannot draw {out}: choose a .svg or .png file")
    exe = shutil.which(dot)
    if exe is None:
        raise GraphError(f"{dot} is not installed: apt-get install graphviz")
    try:
        done = subprocess.run(
            [exe, f"-T{kind}", "-o", str(out)],
            input=to_dot(flow),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GraphError(f"{dot} failed: {exc}") from exc
    if done.returncode != 0:
        raise GraphError(f"{dot} failed: {done.stderr.strip()[:300]}")
    return out
