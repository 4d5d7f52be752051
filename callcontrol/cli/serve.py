"""``callcontrol serve``: the call-control app (ARI) in the foreground, until SIGTERM/Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from callcontrol.cli.common import AddCommand
from callcontrol.config import Settings
from callcontrol.errors import CallControlError
from callcontrol.services import open_services

__all__ = ["register"]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.app import App

    async def go() -> None:
        async with open_services(settings) as services:
            await App(services).run()

    try:
        asyncio.run(go())
    except* CallControlError as group:
        raise group.exceptions[0] from None
    return 0


def register(sub: Any, add: AddCommand) -> None:
    add(sub, "serve", cmd_serve, "run the call-control app (ARI) in the foreground")
