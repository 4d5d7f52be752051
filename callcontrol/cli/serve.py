"""``callcontrol serve``: the call-control app (ARI) in the foreground, until SIGTERM/Ctrl-C.

With the setting ``workers`` = N > 1 it is worker 1 and starts workers 2..N itself
(workers.py) as ``callcontrol [--config F] [--set K=V ...] serve --worker K``; the
option is for that only (hidden from ``--help``).
"""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand, run_server
from callcontrol.config import Settings
from callcontrol.errors import CallControlError, InvalidInput
from callcontrol.services import open_services

__all__ = ["register"]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.app import App
    from callcontrol.workers import Workers

    worker: int = args.worker or 1
    if not 1 <= worker <= settings.workers:
        raise InvalidInput(f"--worker {worker}: the setting workers is {settings.workers}")
    workers = None
    if worker == 1 and settings.workers > 1:
        cli_args = [f"--config={args.config}"] if args.config else []
        cli_args += [f"--set={item}" for item in args.set or []]
        workers = Workers(settings.workers, cli_args)

    async def go() -> None:
        async with open_services(settings, worker) as services:
            await App(services, workers).run()

    try:
        run_server(settings, go)
    except* CallControlError as group:
        raise group.exceptions[0] from None
    return 0


def register(sub: Any, add: AddCommand) -> None:
    p = add(sub, "serve", cmd_serve, "run the call-control app (ARI) in the foreground")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
