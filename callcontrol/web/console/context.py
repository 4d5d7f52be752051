"""What every console handler reaches through the app: the ``Console`` and its key.

``NAV`` is the list of pages in the header's navigation. A feature adds its page by
adding an entry (and its routes in ``app.py``); nothing else lists the pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from callcontrol.domain.admins import Admin
from callcontrol.domain.live_calls import LiveCallSource
from callcontrol.services import Services
from callcontrol.store.history import CallHistory, LedgerPage
from callcontrol.web.console.live import Hub
from callcontrol.web.console.ops import ConsoleOps
from callcontrol.web.console.throttle import LoginThrottle

__all__ = ["CONSOLE", "NAV", "Console", "NavEntry", "admin_of", "csrf_of"]


@dataclass(frozen=True, slots=True)
class NavEntry:
    title: str
    path: str


NAV: list[NavEntry] = [
    NavEntry("Numbers", "/numbers"),
    NavEntry("Users", "/users"),
    NavEntry("IVR flows", "/flows"),
    NavEntry("Live calls", "/calls/live"),
    NavEntry("Call history", "/calls"),
    NavEntry("Ledger", "/ledger"),
    NavEntry("Payments", "/payments"),
    NavEntry("Audit log", "/audit"),
]


@dataclass
class Console:
    """The console's objects, built once per app by ``console_app``."""

    services: Services
    ops: ConsoleOps
    hub: Hub
    history: CallHistory
    ledger: LedgerPage
    throttle: LoginThrottle
    live_calls: LiveCallSource | None
    started_at: datetime


CONSOLE = web.AppKey("console", Console)
ADMIN = web.RequestKey("admin", Admin)  # set by the auth middleware
CSRF = web.RequestKey("csrf", str)  # the session's CSRF token (none for bearer tokens)
SECRET = web.RequestKey("session", str)  # the session cookie's secret


def admin_of(request: web.Request) -> Admin:
    """The signed-in admin (the auth middleware guarantees one on protected routes)."""
    if ADMIN not in request:
        raise web.HTTPUnauthorized()
    return request[ADMIN]


def csrf_of(request: web.Request) -> str:
    """The CSRF token of the request's cookie session ('' for bearer tokens)."""
    return str(request.get(CSRF, ""))
