"""Checks on a whole flow: references, reachability and loops with no bound.

Run by the loader after the flow parsed. Problems go to the ``NodeReader``.

- unknown start node, menu (``menu:`` or a bare name), user (``ring:``, when the
  known users are given) or flow (``flow:``, when the known flows are given);
- a menu or time switch that no path from ``start`` reaches;
- a loop with no bound. Definition: the *silent edges* of a flow are the moves
  the IVR makes without any key from the caller - a time switch to its ``open``
  and ``closed`` destinations, a menu to its ``on_failure`` destination (taken
  after the retries run out, with no key pressed), and through the ``fallback`` of
  a ``ring`` and the ``then`` of a ``play`` inside those. ``repeat`` there leads
  back to the same menu, ``flow:`` naming the flow itself to its start. A cycle of
  silent edges is an error: a caller who never presses a key (or a line left open)
  would go round it for ever. Cycles that need a key press on the way (``*`` back
  to the main menu) are fine: the caller drives them, and the interpreter's
  per-call limits end even those.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from callcontrol.ivr.cycles import find_cycles
from callcontrol.ivr.model import (
    Action,
    Flow,
    GotoFlow,
    GotoMenu,
    Menu,
    Pos,
    Repeat,
    Ring,
    TimeSwitch,
    action_targets,
)
from callcontrol.ivr.yamlnodes import NodeReader

__all__ = ["Edge", "check_flow", "edges", "node_actions"]


@dataclass(frozen=True, slots=True)
class Edge:
    """A move from node ``source`` to node ``target``; ``silent``: no key needed."""

    source: str
    target: str
    silent: bool
    pos: Pos
    label: str


def node_actions(node: Menu | TimeSwitch) -> Iterator[tuple[Action, bool, str]]:
    """Each top-level action of a node with ``silent`` and a label."""
    if isinstance(node, Menu):
        for key, action in node.options.items():
            yield action, False, key
        yield node.on_failure, True, "failure"
    else:
        yield node.open, True, "open"
        yield node.closed, True, "closed"


def edges(flow: Flow) -> list[Edge]:
    """Every move between the nodes of ``flow`` (to nodes that exist)."""
    out: list[Edge] = []
    for name, node in flow.nodes.items():
        for top, silent, label in node_actions(node):
            for action in action_targets(top):
                target: str | None = None
                if isinstance(action, GotoMenu):
                    target = action.menu
                elif isinstance(action, Repeat):
                    target = name
                elif isinstance(action, GotoFlow) and action.flow == flow.name:
                    target = flow.start
                if target is not None and target in flow.nodes:
                    out.append(Edge(name, target, silent, action.pos, label))
    return out


def check_flow(
    flow: Flow,
    start_pos: Pos,
    reader: NodeReader,
    *,
    known_users: Collection[str] | None,
    known_flows: Collection[str] | None,
    check_reachable: bool = True,
) -> None:
    """Report reference, reachability and loop problems of ``flow`` to ``reader``.

    ``check_reachable`` False (some action did not parse, so its targets are not
    known) skips the unreachable-menu check, which would only add false alarms.
    """
    nodes = flow.nodes
    if flow.start and flow.start not in nodes:
        reader.error(
            start_pos, f"unknown menu {flow.start!r} for start{reader.suggest(flow.start, nodes)}"
        )
    for node in nodes.values():
        for top, _silent, _label in node_actions(node):
            for action in action_targets(top):
                _check_reference(action, flow, reader, known_users, known_flows)
    all_edges = edges(flow)
    if flow.start in nodes and check_reachable:
        _check_reachable(flow, all_edges, reader)
    _check_silent_loops(flow, [e for e in all_edges if e.silent], reader)


def _check_reference(
    action: Action,
    flow: Flow,
    reader: NodeReader,
    known_users: Collection[str] | None,
    known_flows: Collection[str] | None,
) -> None:
    if isinstance(action, GotoMenu) and action.menu not in flow.nodes:
        hint = reader.suggest(action.menu, flow.nodes, ("hangup", "repeat"))
        reader.error(action.pos, f"unknown menu {action.menu!r}{hint}")
    elif isinstance(action, Ring) and known_users is not None and action.user not in known_users:
        hint = reader.suggest(action.user, known_users)
        reader.error(action.pos, f"unknown user {action.user!r}{hint}")
    elif (
        isinstance(action, GotoFlow)
        and known_flows is not None
        and action.flow != flow.name
        and action.flow not in known_flows
    ):
        hint = reader.suggest(action.flow, known_flows)
        reader.error(action.pos, f"unknown flow {action.flow!r}{hint}")


def _check_reachable(flow: Flow, all_edges: list[Edge], reader: NodeReader) -> None:
    following: dict[str, list[str]] = {}
    for edge in all_edges:
        following.setdefault(edge.source, []).append(edge.target)
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for target in following.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for name, node in flow.nodes.items():
        if name not in seen:
            what = "menu" if isinstance(node, Menu) else "time switch"
            reader.error(
                node.pos, f"{what} {name!r} is unreachable: no path from start {flow.start!r}"
            )


def _check_silent_loops(flow: Flow, silent: list[Edge], reader: NodeReader) -> None:
    """One error per group of nodes that silent edges connect in a cycle."""
    following: dict[str, list[tuple[str, Edge]]] = {}
    for edge in silent:
        following.setdefault(edge.source, []).append((edge.target, edge))
    order = sorted(flow.nodes, key=lambda n: (flow.nodes[n].pos.line, flow.nodes[n].pos.column))
    for cycle in find_cycles(order, following):
        path = " -> ".join([*(e.source for e in cycle), cycle[0].source])
        reader.error(
            cycle[0].pos,
            f"loop with no bound: {path} goes round without any key press "
            "(on_failure, time switch or fallback); a silent caller would never leave it - "
            "end it with hangup or a play",
        )
