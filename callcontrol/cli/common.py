"""What the command modules share: running work on the services, the ``add`` helper's type.

Each command group's module has ``register(sub, add)``, which adds its parsers to
the top parser's subparsers ``sub`` through ``add(group, name, fn, help)``; ``fn``
is called as ``fn(settings, args)`` and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from callcontrol.config import Settings
from callcontrol.services import Services, open_services

__all__ = ["AddCommand", "Command", "run_server", "with_services"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Command = Callable[[Settings, argparse.Namespace], int]
AddCommand = Callable[[Any, str, Command, str], argparse.ArgumentParser]


def with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` on the services in a new event loop; they are closed afterwards."""

    async def main() -> T:
        async with open_services(settings) as services:
            return await work(services)

    return asyncio.run(main())


def run_server(settings: Settings, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a long-running command's ``main`` on the event loop the setting ``event_loop``
    names. uvloop's loop (libuv, written in C) spends less CPU per socket event and
    callback than asyncio's, which the call path is mostly made of (bench/RESULTS.md,
    round 6); everything else is the same asyncio API."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("event_loop uvloop: uvloop is not installed; using asyncio's loop")
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
