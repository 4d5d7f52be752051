"""Reading composed YAML nodes with positions, collecting every problem.

``yaml.compose`` keeps each node's ``start_mark`` (0-based line/column), and keeps
duplicate keys that ``safe_load`` would silently merge. ``NodeReader`` checks types
and keys on those nodes and records a ``FlowError`` (1-based) for each problem, so
the loader can report every error of a file at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from callcontrol.ivr.errors import FlowError
from callcontrol.ivr.model import Pos

__all__ = ["MAX_SUGGESTIONS", "Entry", "NodeReader", "kind_of", "suggest"]

MAX_SUGGESTIONS = 20  # "did you mean" hints per file

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"

_SCALAR_KIND = {
    STR: "text",
    INT: "a whole number",
    FLOAT: "a number",
    BOOL: "true/false",
    NULL: "nothing",
    TIMESTAMP: "a date",
}


def kind_of(node: yaml.Node) -> str:
    """What a node is, in words for an admin."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping (key: value)"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _SCALAR_KIND.get(node.tag, "a value")


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Entry:
    """One ``key: value`` of a mapping, with the key's text and both nodes."""

    __slots__ = ("key", "key_node", "value")

    def __init__(self, key: str, key_node: yaml.Node, value: yaml.Node) -> None:
        self.key = key
        self.key_node = key_node
        self.value = value


class NodeReader:
    """Type and key checks on YAML nodes of one file; problems go to ``errors``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[FlowError] = []
        self._constructor = SafeConstructor()
        self._suggestions_left = MAX_SUGGESTIONS

    def suggest(self, word: str, *choices: Iterable[str]) -> str:
        """``suggest`` for the first ``MAX_SUGGESTIONS`` calls of a file, then nothing.

        Each suggestion compares the word with every choice: without a budget, a file
        with thousands of unknown names would take quadratic time.
        """
        if self._suggestions_left <= 0:
            return ""
        self._suggestions_left -= 1
        return suggest(word, (c for group in choices for c in group))

    # ---- positions and errors --------------------------------------------------------

    def pos(self, node: yaml.Node) -> Pos:
        mark = node.start_mark
        return Pos(self.file, mark.line + 1, mark.column + 1)

    def error(self, where: yaml.Node | Pos, message: str) -> None:
        pos = where if isinstance(where, Pos) else self.pos(where)
        self.errors.append(FlowError(pos.file, pos.line, pos.column, message))

    # ---- structure -------------------------------------------------------------------

    def mapping(self, node: yaml.Node, what: str) -> dict[str, Entry] | None:
        """The entries of a mapping node; reports wrong type and duplicate keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping (key: value), not {kind_of(node)}")
            return None
        entries: dict[str, Entry] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == NULL:
                self.error(key_node, f"a key in {what} must be a plain word")
                continue
            key = str(key_node.value)
            first = entries.get(key)
            if first is not None:
                line = first.key_node.start_mark.line + 1
                self.error(key_node, f"duplicate key {key!r} in {what} (first on line {line})")
                continue
            entries[key] = Entry(key, key_node, value)
        return entries

    def check_keys(
        self,
        entries: dict[str, Entry],
        allowed: Collection[str],
        required: Collection[str],
        what: str,
        owner: yaml.Node,
    ) -> None:
        """Report unknown keys (with the close match) and missing required keys."""
        for entry in entries.values():
            if entry.key not in allowed:
                hint = self.suggest(entry.key, allowed)
                if not hint:
                    hint = f" (allowed: {', '.join(sorted(allowed))})"
                self.error(entry.key_node, f"unknown key {entry.key!r} in {what}{hint}")
        for key in required:
            if key not in entries:
                self.error(owner, f"{what} is missing the required key {key!r}")

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what} must be a list, not {kind_of(node)}")
            return None
        return list(node.value)

    # ---- scalars ---------------------------------------------------------------------

    def text(self, node: yaml.Node, what: str, *, any_scalar: bool = False) -> str | None:
        """A string; with ``any_scalar``, numbers, dates and booleans as written."""
        ok = isinstance(node, yaml.ScalarNode) and (
            node.tag == STR or (any_scalar and node.tag != NULL)
        )
        if not ok:
            self.error(node, f"{what} must be text, not {kind_of(node)}")
            return None
        value = str(node.value)
        if not value.strip():
            self.error(node, f"{what} must not be empty")
            return None
        return value

    def integer(self, node: yaml.Node, what: str, low: int, high: int) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == INT):
            self.error(node, f"{what} must be a whole number, not {kind_of(node)}")
            return None
        try:
            value = int(self._constructor.construct_yaml_int(node))
        except (ConstructorError, ValueError):
            self.error(node, f"{what} must be a whole number")
            return None
        if not low <= value <= high:
            self.error(node, f"{what} must be between {low} and {high}, not {value}")
            return None
        return value

    def number(self, node: yaml.Node, what: str, low: float, high: float) -> float | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag in (INT, FLOAT)):
            self.error(node, f"{what} must be a number of seconds, not {kind_of(node)}")
            return None
        try:
            if node.tag == INT:
                value = float(self._constructor.construct_yaml_int(node))
            else:
                value = float(self._constructor.construct_yaml_float(node))
        except (ConstructorError, ValueError):
            self.error(node, f"{what} must be a number")
            return None
        if not low <= value <= high:
            self.error(node, f"{what} must be between {low:g} and {high:g}, not {value:g}")
            return None
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == BOOL):
            self.error(node, f"{what} must be true or false, not {kind_of(node)}")
            return None
        return bool(self._constructor.construct_yaml_bool(node))
