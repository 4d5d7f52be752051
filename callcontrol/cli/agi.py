"""``callcontrol agi``: the FastAGI server (agi/server.py) in the foreground, until
SIGTERM/Ctrl-C: for dialplans that authorize and settle calls themselves."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from callcontrol.cli.common import AddCommand, run_server
from callcontrol.config import Settings
from callcontrol.errors import CallControlError, ConfigError
from callcontrol.services import open_services
from callcontrol.startup import freeze_startup_objects

__all__ = ["register"]


def cmd_agi(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.agi.calls import AgiCalls
    from callcontrol.agi.server import AgiServer
    from callcontrol.billing.session import CallCharging

    host, _, port = settings.agi_listen.rpartition(":")

    async def go() -> None:
        async with open_services(settings) as services:
            await services.db.ping()
            calls = AgiCalls(
                services.store,
                CallCharging(services.charging, services.store),
                max_duration=settings.agi_max_duration,
                country=settings.country,
            )
            server = AgiServer(
                calls,
                timeout=settings.agi_timeout,
                authorize_timeout=settings.agi_authorize_timeout,
            )
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            freeze_startup_objects()
            try:
                await server.run(host, int(port), stopping)
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on agi_listen {settings.agi_listen}: {exc}"
                ) from None
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    try:
        run_server(settings, go)
    except* CallControlError as group:
        raise group.exceptions[0] from None
    return 0


def register(sub: Any, add: AddCommand) -> None:
    add(
        sub,
        "agi",
        cmd_agi,
        "run the FastAGI server (authorize, settle) for dialplan-driven deployments",
    )
