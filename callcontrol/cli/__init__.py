"""The `callcontrol` command.

Every sub-command reads the same settings (config.py): ``--config FILE`` and
``--set KEY=VALUE`` on the command line, ``CALLCONTROL_<SETTING>`` in the
environment. Errors print ``error: <message>`` and exit 1 (2 for usage), never a
traceback; control characters in messages are escaped (``domain.text.printable``),
as in everything the commands print from the database. A closed output pipe
(``callcontrol rates list | head -1``) ends the command quietly, with status 141
like a Unix tool killed by SIGPIPE.

One module per command group (agi, config, db, pbx, users, numbers, calls, serve, demo,
rates, credits, payments, ivr, admins), each with ``register(sub, add)``; the commands get their
objects from ``open_services`` (services.py), the one composition root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callcontrol.cli import (
    admins,
    agi,
    calls,
    config,
    credits,
    db,
    demo,
    ivr,
    numbers,
    payments,
    pbx,
    rates,
    serve,
    tls,
    users,
)
from callcontrol.cli.common import Command
from callcontrol.config import Settings, load_settings
from callcontrol.domain.text import printable
from callcontrol.errors import CallControlError, InvalidInput
from callcontrol.logs import setup_logging

__all__ = ["build_parser", "main"]

# The order of the groups in ``callcontrol --help``.
GROUPS = (
    serve,
    agi,
    config,
    db,
    pbx,
    users,
    numbers,
    calls,
    ivr,
    rates,
    credits,
    payments,
    admins,
    demo,
    tls,
)

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    return load_settings(Path(args.config) if args.config else None, overrides=overrides)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own: usage + exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _add(group: Any, name: str, fn: Command, help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
    p.set_defaults(fn=fn)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="callcontrol", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TOML config file (default: ./callcontrol.toml)")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group.register(sub, _add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        serving = args.command == "serve" and settings.workers > 1
        setup_logging(
            settings.log_level if args.command in ("serve", "agi") else "WARNING",
            settings.log_format,
            worker=(args.worker or 1) if serving else None,
        )
        code: int = args.fn(settings, args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except CallControlError as exc:
        lines = str(exc).split("\n")  # some errors list several problems, one a line
        print("error: " + "\n".join(printable(line) for line in lines), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it again at exit does not fail."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (tests): nothing to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
