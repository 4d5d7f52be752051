"""Composing YAML that admins write, within limits (IVR flows and rate files).

``compose(text)`` is ``yaml.compose`` with libyaml when it is installed (a syntax
error is worded by PyYAML, which says more), after a
first pass over the parser's events (iterative, no recursion) that refuses, with the
position, text nested more than ``max_depth`` mappings and lists deep and, when
``max_values`` is given, text with more values than that. Aliases count as what
they repeat, in values and in depth, so ``&a [*b, *b]`` chains cannot grow a small
file into a huge tree. Without this, deep nesting overflows the recursion of the
composer (and of any code that walks the tree) and ends the process.

A limit is reported as ``YamlLimitError``, a ``yaml.MarkedYAMLError``: callers that
already turn YAML errors into ``file:line:col: problem`` report it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "YamlLimitError", "compose"]

MAX_DEPTH = 32

_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


class YamlLimitError(yaml.MarkedYAMLError):
    """Valid YAML beyond a limit; ``problem`` says which, ``problem_mark`` where."""

    def __init__(self, problem: str, mark: Any) -> None:  # a PyYAML or a libyaml Mark
        super().__init__(problem=problem, problem_mark=mark)


@dataclass(slots=True)
class _Open:
    """A mapping or list being read: its anchor, value count at its start, height."""

    anchor: str | None
    start: int
    height: int = 0


def compose(
    text: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_values: int | None = None,
    loader: type[yaml.SafeLoader] | None = None,
) -> yaml.Node | None:
    """The node tree of ``text`` (None if empty); YAML errors and limits raise.

    ``loader`` composes once the limits passed (a SafeLoader subclass; default the
    fastest safe loader there is)."""
    try:
        _check_limits(text, max_depth, max_values)
    except YamlLimitError:
        raise
    except yaml.MarkedYAMLError:
        if _LOADER is not yaml.SafeLoader:  # PyYAML words syntax errors better than libyaml
            for _event in yaml.parse(text, Loader=yaml.SafeLoader):
                pass
        raise
    return yaml.compose(text, Loader=loader or _LOADER)


def _check_limits(text: str, max_depth: int, max_values: int | None) -> None:
    stack: list[_Open] = []
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, height)
    values = 0
    for event in yaml.parse(text, Loader=_LOADER):
        height = -1  # the height this event adds below the innermost open collection
        if isinstance(event, yaml.AliasEvent):
            size, height = anchored.get(str(event.anchor), (1, 0))
            values += size
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            height = 0
            if event.anchor is not None:
                anchored[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            values += 1
            stack.append(_Open(event.anchor, values))
        elif isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            height = done.height + 1
            if done.anchor is not None:
                anchored[done.anchor] = (values - done.start + 1, height)
        if len(stack) > max_depth or (
            isinstance(event, yaml.AliasEvent) and len(stack) + height > max_depth
        ):
            raise YamlLimitError(
                f"nested too deeply: more than {max_depth} levels of mappings and lists",
                event.start_mark,
            )
        if max_values is not None and values > max_values:
            raise YamlLimitError(
                f"too many values: more than {max_values} (an alias counts as what it repeats)",
                event.start_mark,
            )
        if stack and height >= 0:
            stack[-1].height = max(stack[-1].height, height)
