"""The ``callcontrol ivr`` commands: validate, simulate, graph.

- ``ivr validate [FILE...]``: every error as ``file:line:col: message``; exit 1 on
  any, else ``N flows OK``. Users come from the database (skipped with a warning
  when it cannot be read), sounds from the PBX's sounds directory (skipped with a
  warning when there is none).
- ``ivr simulate FLOW --keys 1,#,2 [--at ISO] [--ring alice=busy]``: the path a
  caller takes, without a PBX.
- ``ivr graph FLOW -o flow.svg|png``: the flow as a picture (graphviz).

FLOW is a flow name in ``flows_dir`` or a path to a flow file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.text import shown
from callcontrol.errors import CallControlError, InvalidInput, NotFound
from callcontrol.ivr import loops
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.graph import draw
from callcontrol.ivr.loader import load_directory, load_flow
from callcontrol.ivr.model import Flow
from callcontrol.ivr.simulate import parse_keys, parse_ring, simulate
from callcontrol.ivr.sounds import sounds_in_dir, system_sounds_dir
from callcontrol.services import Services

__all__ = ["register"]


def register(sub: Any, add: AddCommand) -> None:
    """Add ``ivr validate|simulate|graph`` to the ``callcontrol`` subparsers."""
    ivr = sub.add_parser("ivr", help="IVR flow files").add_subparsers(required=True)
    p = add(ivr, "validate", cmd_validate, "check flow files; every error with file:line:col")
    p.add_argument("files", nargs="*", metavar="FILE", help="default: every flow in flows_dir")
    p = add(ivr, "simulate", cmd_simulate, "print the path a caller pressing keys takes")
    p.add_argument("flow", help="flow name (in flows_dir) or a flow file")
    p.add_argument(
        "--keys",
        default="",
        help="comma-separated: 0-9 * # a key; _ no key (time out); ^K key K during the "
        "prompts; hangup the caller hangs up; 1002 several keys",
    )
    p.add_argument("--at", help="the time of the call, e.g. 2026-11-27T10:00 (flow's zone)")
    p.add_argument(
        "--ring",
        action="append",
        default=[],
        metavar="NAME=OUTCOME",
        help="how ringing a user or extension ends: answered, busy, no_answer, "
        "unavailable, unknown (repeatable; default answered)",
    )
    p = add(ivr, "graph", cmd_graph, "draw a flow as an SVG or PNG picture (graphviz)")
    p.add_argument("flow", help="flow name (in flows_dir) or a flow file")
    p.add_argument("-o", "--output", help="output file, .svg or .png (default FLOW.svg)")


# ---- context: users, sounds -----------------------------------------------------------


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _directory_users(settings: Settings) -> dict[str, str] | None:
    """User name -> extension from the database; None (warned) if it cannot be read."""

    async def go(services: Services) -> dict[str, str]:
        users = await services.directory.list_users()
        return {u.name: u.extension for u in users}

    try:  # a missing database is not created (open_services refuses it)
        return with_services(settings, go)
    except (CallControlError, OSError) as exc:
        _warn(f"users not checked: the database cannot be read ({exc})")
        return None


def _sound_exists(settings: Settings) -> Callable[[str], bool] | None:
    directory = system_sounds_dir(settings.pbx_root)
    if directory is None:
        _warn("sounds not checked: no Asterisk sounds directory found")
        return None
    return sounds_in_dir(directory).__contains__


def _print_errors(errors: list[FlowError]) -> None:
    for error in errors:
        print(error)


# ---- validate ------------------------------------------------------------------------


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    users = _directory_users(settings)
    known_users = None if users is None else set(users)
    sound_exists = _sound_exists(settings)
    errors: list[FlowError] = []
    count = 0
    if not args.files:
        flows, errors = load_directory(
            settings.flows_dir,
            known_users=known_users,
            sound_exists=sound_exists,
            default_timezone=settings.timezone,
        )
        count = len(flows) + len({e.file for e in errors})
        if count == 0:
            raise NotFound(f"no flow files (*.yaml) in {settings.flows_dir}")
    given: dict[str, Flow] = {}
    for name in args.files:
        path = Path(name)
        count += 1
        known_flows = {p.stem for p in path.parent.glob("*.yaml")} | {path.stem}
        try:
            given[path.stem] = load_flow(
                path,
                known_users=known_users,
                known_flows=known_flows,
                sound_exists=sound_exists,
                default_timezone=settings.timezone,
            )
        except FlowValidationError as exc:
            errors.extend(exc.errors)
    errors.extend(loops.check_directory(given))  # loops across the files given together
    _print_errors(sorted(errors))
    if errors:
        bad = len({e.file for e in errors})
        print(f"{len(errors)} errors in {bad} of {count} flows", file=sys.stderr)
        return 1
    print(f"{count} flows OK")
    return 0


# ---- simulate and graph ----------------------------------------------------------------


def _load_for_use(settings: Settings, name: str) -> tuple[Flow, dict[str, Flow]]:
    """The flow named (or the file given) and the flows of its directory."""
    is_path = name.endswith((".yaml", ".yml")) or "/" in name
    directory = Path(name).parent if is_path else settings.flows_dir
    stem = Path(name).stem if is_path else name
    flows, errors = load_directory(directory, default_timezone=settings.timezone)
    mine = [e for e in errors if Path(e.file).stem == stem]
    if mine:
        raise FlowValidationError(mine)
    flow = flows.get(stem)
    if flow is None:
        raise NotFound(f"no flow {stem!r} in {directory}")
    return flow, flows


def _check_local_time(text: str | None, timezone: str) -> None:
    """Refuse a local ``--at`` time that does not exist in ``timezone`` (the gap when
    the clocks go forward); other mistakes are ``parse_at``'s to report."""
    if text is None:
        return
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return
    if when.tzinfo is not None:
        return
    zone = ZoneInfo(timezone)
    if when.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when:
        raise InvalidInput(
            f"--at {shown(text)} does not exist in {timezone}: the clocks go forward "
            "then; give a time before or after the change"
        )


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    flow, flows = _load_for_use(settings, args.flow)
    _check_local_time(args.at, flow.timezone)
    keys = parse_keys(args.keys)
    ring = parse_ring(args.ring)
    users = _directory_users(settings)
    extensions = None if users is None else {ext: name for name, ext in users.items()}
    for line in simulate(
        flow, keys, at=args.at, ring=ring, extensions=extensions, resolve=flows.get
    ):
        print(line)
    return 0


def cmd_graph(settings: Settings, args: argparse.Namespace) -> int:
    if args.output is not None and not args.output.strip():
        raise InvalidInput("-o is empty: give the picture's file name, ending in .svg or .png")
    flow, _flows = _load_for_use(settings, args.flow)
    out = Path(args.output or f"{flow.name}.svg")
    if out.suffix.lower() not in (".svg", ".png"):
        raise InvalidInput(f"-o {out}: the picture is .svg or .png")
    draw(flow, out)
    print(f"wrote {out}")
    return 0
