"""Loading flow files: YAML with positions -> the model, every error at once.

``load_flow`` reads one ``<name>.yaml`` (flow name = file stem) and returns a
``Flow`` or raises ``FlowValidationError`` with every ``FlowError`` of the file:
YAML syntax, unknown/duplicate/missing keys, wrong types, values out of range,
missing sounds and recordings, bad time zones and hours (here), and the checks on
the whole flow - unknown users, menus and flows, unreachable menus, loops with no
bound (``validate.py``). ``load_directory`` loads every flow of a directory and
returns the good ones with the errors of the others. The format is documented in
``ivr_flows/README.md``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from pathlib import Path

import yaml

from callcontrol.ivr import validate
from callcontrol.ivr.build import (
    ACTION_KINDS,
    FLOW_NAME,
    MENU_KEYS,
    PROMPT_KINDS,
    SWITCH_KEYS,
    TOP_KEYS,
    FlowBuilder,
)
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.model import Flow, Pos
from callcontrol.ivr.yamlnodes import NodeReader

__all__ = [
    "ACTION_KINDS",
    "FLOW_NAME",
    "MENU_KEYS",
    "PROMPT_KINDS",
    "SWITCH_KEYS",
    "TOP_KEYS",
    "load_directory",
    "load_flow",
    "parse_flow",
]

_HASH_KEY = re.compile(r"^\s*#\s*:")


def load_flow(
    path: str | Path,
    *,
    known_users: Collection[str] | None = None,
    known_flows: Collection[str] | None = None,
    sound_exists: Callable[[str], bool] | None = None,
    default_timezone: str = "UTC",
) -> Flow:
    """Load and validate one flow file; raises ``FlowValidationError`` (all errors)."""
    path = Path(path)
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlowValidationError(
            [FlowError(file, 1, 1, f"cannot read the flow file: {exc.strerror or exc}")]
        ) from exc
    flow, errors = parse_flow(
        data,
        file=file,
        name=path.stem,
        base_dir=path.parent,
        known_users=known_users,
        known_flows=known_flows,
        sound_exists=sound_exists,
        default_timezone=default_timezone,
    )
    if errors or flow is None:
        raise FlowValidationError(errors)
    return flow


def load_directory(
    directory: str | Path,
    *,
    known_users: Collection[str] | None = None,
    known_flows: Collection[str] | None = None,
    sound_exists: Callable[[str], bool] | None = None,
    default_timezone: str = "UTC",
) -> tuple[dict[str, Flow], list[FlowError]]:
    """Every ``*.yaml`` flow of ``directory``: the valid flows and all errors, sorted.

    ``known_flows`` None means the flow names of the directory itself.
    """
    directory = Path(directory)
    try:
        paths = sorted(p for p in directory.glob("*.yaml") if p.is_file())
    except OSError as exc:
        return {}, [FlowError(str(directory), 1, 1, f"cannot list flows: {exc}")]
    if known_flows is None:
        known_flows = {p.stem for p in paths}
    flows: dict[str, Flow] = {}
    errors: list[FlowError] = []
    for path in paths:
        try:
            flows[path.stem] = load_flow(
                path,
                known_users=known_users,
                known_flows=known_flows,
                sound_exists=sound_exists,
                default_timezone=default_timezone,
            )
        except FlowValidationError as exc:
            errors.extend(exc.errors)
    return flows, sorted(errors)


def parse_flow(
    data: bytes | str,
    *,
    file: str,
    name: str,
    base_dir: Path,
    known_users: Collection[str] | None = None,
    known_flows: Collection[str] | None = None,
    sound_exists: Callable[[str], bool] | None = None,
    default_timezone: str = "UTC",
) -> tuple[Flow | None, list[FlowError]]:
    """Parse flow text; returns the flow (None if unusable) and every error, sorted."""
    reader = NodeReader(file)
    if not FLOW_NAME.fullmatch(name):
        reader.error(
            Pos(file, 1, 1),
            f"flow name {name!r} (the file name) must be letters, digits, . _ - "
            "and start with a letter or digit",
        )
    if isinstance(data, bytes):
        version = hashlib.sha256(data).hexdigest()[:16]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            reader.error(Pos(file, 1, 1), f"the file is not UTF-8 text: {exc.reason}")
            return None, sorted(reader.errors)
    else:
        text = data
        version = hashlib.sha256(text.encode()).hexdigest()[:16]
    for number, line in enumerate(text.splitlines(), 1):
        if _HASH_KEY.match(line):
            col = line.index("#") + 1
            reader.error(
                Pos(file, number, col),
                "'#' starts a comment in YAML: write the key in quotes, \"#\":",
            )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        hint = ""
        if "alias" in problem or "anchor" in problem or "alphabetic" in problem:
            hint = ' (write the keys * and # in quotes: "*": and "#":)'
        reader.error(where, f"YAML syntax error: {problem}{hint}")
        return None, sorted(reader.errors)
    except yaml.YAMLError as exc:
        reader.error(Pos(file, 1, 1), f"YAML error: {exc}")
        return None, sorted(reader.errors)
    if root is None:
        reader.error(Pos(file, 1, 1), "the flow file is empty")
        return None, sorted(reader.errors)
    builder = FlowBuilder(reader, base_dir, sound_exists)
    flow = builder.flow(root, name, version, default_timezone, base_dir / f"{name}.yaml")
    if flow is not None:
        validate.check_flow(
            flow,
            builder.start_pos,
            reader,
            known_users=known_users,
            known_flows=known_flows,
            check_reachable=builder.broken_actions == 0,
        )
    errors = sorted(set(reader.errors))
    return (flow if not errors else None), errors
