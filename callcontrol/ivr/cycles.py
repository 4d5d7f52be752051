"""Cycles of a directed graph, in time linear in its size (for the loop checks).

``find_cycles(order, following)`` finds the strongly connected groups of nodes
(Tarjan's algorithm, iterative: no recursion however long a chain) and returns, for
each group that holds a cycle, the shortest cycle from its first node in ``order``,
as the list of its edges. Groups come in the order of their first node. Nodes are
names; ``following[n]`` is the list of ``(target, edge)`` leaving ``n``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

__all__ = ["find_cycles"]

E = TypeVar("E")


def find_cycles(
    order: Iterable[str], following: Mapping[str, Sequence[tuple[str, E]]]
) -> list[list[E]]:
    """One cycle (its edges, from the group's first node) per group holding one."""
    rank = {name: i for i, name in enumerate(order)}
    group_of = _groups(rank, following)
    members: dict[int, list[str]] = {}
    for name, group in group_of.items():
        members.setdefault(group, []).append(name)
    firsts = []
    for group, names in members.items():
        first = min(names, key=lambda n: rank.get(n, len(rank)))
        looped = len(names) > 1 or any(t == first for t, _ in following.get(first, ()))
        if looped:
            firsts.append((rank.get(first, len(rank)), first, group))
    return [
        _shortest_cycle(first, group, group_of, following) for _, first, group in sorted(firsts)
    ]


def _groups(
    rank: Mapping[str, int], following: Mapping[str, Sequence[tuple[str, E]]]
) -> dict[str, int]:
    """Strongly connected groups: node -> group number (Tarjan, with an explicit stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    group_of: dict[str, int] = {}
    groups = 0

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in rank:
        if root in index:
            continue
        visit(root)
        work = [(root, iter(following.get(root, ())))]
        while work:
            node, edges = work[-1]
            for target, _edge in edges:
                if target not in index:
                    visit(target)
                    work.append((target, iter(following.get(target, ()))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group_of[member] = groups
                        if member == node:
                            break
                    groups += 1
    return group_of


def _shortest_cycle(
    start: str,
    group: int,
    group_of: Mapping[str, int],
    following: Mapping[str, Sequence[tuple[str, E]]],
) -> list[E]:
    """Breadth first from ``start`` inside its group, back to ``start``."""
    came_from: dict[str, tuple[str, E]] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for target, edge in following.get(node, ()):
                if target == start:
                    path = [edge]
                    back = node
                    while back != start:
                        back, step = came_from[back]
                        path.append(step)
                    return path[::-1]
                if group_of.get(target) == group and target not in came_from:
                    came_from[target] = (node, edge)
                    nxt.append(target)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover
