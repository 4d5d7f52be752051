"""What the command modules share: running work on the services, the ``add`` helper's type.

Each command group's module has ``register(sub, add)``, which adds its parsers to
the top parser's subparsers ``sub`` through ``add(group, name, fn, help)``; ``fn``
is called as ``fn(settings, args)`` and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callcontrol.config import Settings
from callcontrol.services import Services, open_services

__all__ = ["AddCommand", "Command", "with_services"]

T = TypeVar("T")

Command = Callable[[Settings, argparse.Namespace], int]
AddCommand = Callable[[Any, str, Command, str], argparse.ArgumentParser]


def with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` on the services in a new event loop; they are closed afterwards."""

    async def main() -> T:
        async with open_services(settings) as services:
            return await work(services)

    return asyncio.run(main())
