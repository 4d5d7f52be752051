"""Loops with no bound across flows: flow a's ``on_failure`` -> ``flow: b``, b's -> a.

``validate.py`` finds the loops inside one flow. A call enters another flow only at
its start, so the flows form a graph of their own: flow a *leads silently* to flow
b when a caller who presses no key can go from a's start to a ``flow: b`` (by the
silent moves of ``validate.py``: time switches, ``on_failure``, and the
``fallback`` and ``then`` inside those). A cycle of such flows is a loop with no
bound too: with ``timeout: 60, retries: 10`` a silent caller would sit for hours in
an answered, billed call.

- ``check_directory(flows)``: every such loop among ``flows``, one error in each
  file of a loop, at its ``flow:`` action (``ivr validate`` of a directory);
- ``check_added(flow, served)``: an error in ``flow`` if serving it beside the flows
  ``served`` would close a loop (the registry then refuses it and the flows served
  stay as they were).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from callcontrol.ivr.cycles import find_cycles
from callcontrol.ivr.errors import FlowError
from callcontrol.ivr.model import Flow, GotoFlow, GotoMenu, Pos, action_targets
from callcontrol.ivr.validate import node_actions

__all__ = ["Exit", "check_added", "check_directory", "silent_exits"]


@dataclass(frozen=True, slots=True)
class Exit:
    """Flow ``source`` leads silently to flow ``target`` by the ``flow:`` at ``pos``."""

    source: str
    target: str
    pos: Pos


def silent_exits(flow: Flow) -> list[Exit]:
    """The other flows reached from ``flow``'s start without a key, in path order."""
    if flow.start not in flow.nodes:
        return []
    seen = {flow.start}
    todo = [flow.start]
    exits: dict[str, Exit] = {}
    for name in todo:  # grows as it goes: breadth first
        for top, silent, _label in node_actions(flow.nodes[name]):
            if not silent:
                continue
            for action in action_targets(top):
                if isinstance(action, GotoFlow) and action.flow != flow.name:
                    exits.setdefault(action.flow, Exit(flow.name, action.flow, action.pos))
                elif (
                    isinstance(action, GotoMenu)
                    and action.menu in flow.nodes
                    and action.menu not in seen
                ):
                    seen.add(action.menu)
                    todo.append(action.menu)
    return list(exits.values())


def check_directory(flows: Mapping[str, Flow]) -> list[FlowError]:
    """An error at each ``flow:`` of each loop of flows with no key on the way."""
    following = {
        name: [(e.target, e) for e in silent_exits(flow) if e.target in flows]
        for name, flow in flows.items()
    }
    errors: list[FlowError] = []
    for cycle in find_cycles(sorted(flows), following):
        errors.extend(_error(cycle, i) for i in range(len(cycle)))
    return errors


def check_added(flow: Flow, served: Mapping[str, Flow]) -> list[FlowError]:
    """The error of ``flow`` if it closes a loop with the flows ``served``, else none."""
    flows = {**served, flow.name: flow}
    came_from: dict[str, Exit] = {}
    frontier = [flow.name]
    while frontier:
        following: list[str] = []
        for name in frontier:
            for step in silent_exits(flows[name]):
                if step.target == flow.name:
                    cycle = [step]
                    while cycle[-1].source != flow.name:
                        cycle.append(came_from[cycle[-1].source])
                    return [_error(cycle[::-1], 0)]
                if step.target in flows and step.target not in came_from:
                    came_from[step.target] = step
                    following.append(step.target)
        frontier = following
    return []


def _error(cycle: list[Exit], at: int) -> FlowError:
    """The error of the ``at``-th step of ``cycle``, at its ``flow:``, naming the others."""
    steps = cycle[at:] + cycle[:at]
    path = " -> ".join([*(s.source for s in steps), steps[0].source])
    others = ", ".join(f"flow: {s.target} at {s.pos}" for s in steps[1:])
    pos = steps[0].pos
    return FlowError(
        pos.file,
        pos.line,
        pos.column,
        f"loop with no bound across flows: {path} goes round without any key press "
        f"(flow: {steps[0].target} here, {others}); a silent caller would never leave it - "
        "end one of them with hangup or a play",
    )
