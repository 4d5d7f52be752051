"""Loading flow files: YAML with positions -> the model, every error at once.

``load_flow`` reads one ``<name>.yaml`` (flow name = file stem) and returns a
``Flow`` or raises ``FlowValidationError`` with every ``FlowError`` of the file:
YAML syntax, unknown/duplicate/missing keys, wrong types, values out of range,
missing sounds and recordings, bad time zones and hours (here), and the checks on
the whole flow - unknown users, menus and flows, unreachable menus, loops with no
bound (``validate.py``). ``load_directory`` loads every flow of a directory and
returns the good ones with the errors of the others, loops across flows included
(``loops.py``). The format is documented in ``ivr_flows/README.md``.

Limits, so that no file can stall or crash what loads it (checked before the work
they bound): a flow file is a regular file of at most ``MAX_FILE_BYTES``, nested at
most ``MAX_DEPTH`` mappings and lists deep, with at most ``MAX_VALUES`` YAML values
and ``MAX_NODES`` menus and time switches. Loading takes time linear in the size.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Collection
from pathlib import Path

import yaml

from callcontrol.ivr import loops, validate
from callcontrol.ivr.build import (
    ACTION_KINDS,
    FLOW_NAME,
    MAX_NODES,
    MENU_KEYS,
    PROMPT_KINDS,
    SWITCH_KEYS,
    TOP_KEYS,
    FlowBuilder,
)
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.model import Flow, Pos
from callcontrol.ivr.yamlnodes import NodeReader
from callcontrol.yamllimits import MAX_DEPTH, YamlLimitError, compose

__all__ = [
    "ACTION_KINDS",
    "FLOW_NAME",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_VALUES",
    "MENU_KEYS",
    "PROMPT_KINDS",
    "SWITCH_KEYS",
    "TOP_KEYS",
    "load_directory",
    "load_flow",
    "parse_flow",
    "read_flow_file",
]

MAX_FILE_BYTES = 512 * 1024
MAX_VALUES = 100_000  # YAML values of one file (keys, texts, numbers, lists, mappings)

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
    data = read_flow_file(path)
    flow, errors = parse_flow(
        data,
        file=str(path),
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


def read_flow_file(path: Path) -> bytes:
    """The bytes of a flow file; refuses, before reading, what is not a regular
    file (a device, a pipe: reading would never end) or is over ``MAX_FILE_BYTES``.
    """
    file = str(path)

    def refuse(message: str) -> FlowValidationError:
        return FlowValidationError([FlowError(file, 1, 1, message)])

    data = b""
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            # O_NONBLOCK: should a pipe replace the file meanwhile, open does not wait
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read(MAX_FILE_BYTES + 1) if stat.S_ISREG(info.st_mode) else b""
    except OSError as exc:
        raise refuse(f"cannot read the flow file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise refuse("not a regular file (a flow is a .yaml text file)")
    if info.st_size > MAX_FILE_BYTES:
        raise refuse(_too_big(info.st_size))
    if len(data) > MAX_FILE_BYTES:  # it grew while we looked
        raise refuse(_too_big(len(data)))
    return data


def _too_big(size: int) -> str:
    return (
        f"the file is {size} bytes; a flow file is at most {MAX_FILE_BYTES} bytes "
        "(split it into flows)"
    )


def load_directory(
    directory: str | Path,
    *,
    known_users: Collection[str] | None = None,
    known_flows: Collection[str] | None = None,
    sound_exists: Callable[[str], bool] | None = None,
    default_timezone: str = "UTC",
) -> tuple[dict[str, Flow], list[FlowError]]:
    """Every ``*.yaml`` flow of ``directory``: the valid flows and all errors, sorted.

    ``known_flows`` None means the flow names of the directory itself. Flows that
    lead to each other in a loop with no key on the way (``loops.py``) are errors.
    """
    directory = Path(directory)
    try:
        paths = sorted(p for p in directory.glob("*.yaml") if not p.is_dir())
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
    looping = loops.check_directory(flows)
    for error in looping:
        flows.pop(Path(error.file).stem, None)
    return flows, sorted(errors + looping)


class _GcPause:
    """The cyclic garbage collector paused while flows are built (any thread, nested).

    Building a big flow makes hundreds of thousands of objects that all live until
    it is built: each full collection they trigger walks the whole heap holding the
    GIL (up to 400 ms for a flow of 800 KB), stalling the event loop even though
    the registry loads in a worker thread. Reference counting frees them all the
    same: nothing here makes cycles.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._was_enabled:
                gc.enable()


_GC_PAUSE = _GcPause()


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
    with _GC_PAUSE:
        return _parse_flow(
            data,
            file=file,
            name=name,
            base_dir=base_dir,
            known_users=known_users,
            known_flows=known_flows,
            sound_exists=sound_exists,
            default_timezone=default_timezone,
        )


def _parse_flow(
    data: bytes | str,
    *,
    file: str,
    name: str,
    base_dir: Path,
    known_users: Collection[str] | None,
    known_flows: Collection[str] | None,
    sound_exists: Callable[[str], bool] | None,
    default_timezone: str,
) -> tuple[Flow | None, list[FlowError]]:
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
        root = compose(text, max_depth=MAX_DEPTH, max_values=MAX_VALUES)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, YamlLimitError):
            reader.error(where, f"{problem} (the limit of a flow file)")
            return None, sorted(reader.errors)
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
