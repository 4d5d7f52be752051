"""A running AgiServer over an organisation's database (the ``agi`` fixture makes them).

A module of its own, not conftest.py: ``from conftest import`` resolves to whichever
conftest pytest loaded last when several directories have one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from callcontrol.agi.calls import AgiCalls
from callcontrol.agi.server import AgiServer
from callcontrol.store.db import Database


class Running:
    """An AgiServer on a free port of 127.0.0.1 over the organisation's database."""

    def __init__(self, db: Database, server: AgiServer, calls: AgiCalls, port: int) -> None:
        self.db = db
        self.server = server
        self.calls = calls
        self.port = port
        self.store = calls.store
        self.wallet = calls.wallet


StartServer = Callable[..., Awaitable[Running]]


StartServer = Callable[..., Awaitable[Running]]
