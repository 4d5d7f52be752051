"""The console's aiohttp application and the server that runs it in ``callcontrol serve``.

``console_app(services, live_calls=...)`` wires everything on the services every
entry point shares (services.py): the pages (pages.py, flowpages.py,
callpages.py), the JSON API (api.py), live updates (events.py, live.py), the gate
(auth.py) and error mapping (errors.py). Tests build the same app on a real
database, with a stand-in for the live calls.

Middlewares, outermost first: security headers, errors -> status and body, auth
(session or bearer, CSRF). The live-update hub runs as the app's background task
(``cleanup_ctx``), cancelled and awaited when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from callcontrol.domain.live_calls import LiveCallSource
from callcontrol.errors import ConfigError
from callcontrol.ivr.sounds import sounds_in_dir, system_sounds_dir
from callcontrol.services import Services
from callcontrol.store.history import CallHistory, LedgerPage
from callcontrol.web.console import (
    api,
    auth,
    callpages,
    events,
    flowpages,
    fundingapi,
    fundingpages,
    pages,
)
from callcontrol.web.console.context import CONSOLE, Console
from callcontrol.web.console.errors import error_middleware
from callcontrol.web.console.flowfiles import FlowFiles
from callcontrol.web.console.live import Hub
from callcontrol.web.console.ops import ConsoleOps
from callcontrol.web.console.render import setup_templates
from callcontrol.web.console.throttle import LoginThrottle
from callcontrol.web.health import HEALTH, Health
from callcontrol.web.health import routes as health_routes

__all__ = ["ConsoleServer", "console_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        # Stripe.js (the card form) must be loaded from js.stripe.com and frames its fields
        "script-src 'self' https://js.stripe.com; connect-src 'self' https://api.stripe.com; "
        "frame-src https://js.stripe.com https://hooks.stripe.com; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc, request)
        raise
    _secure(response, request)
    return response


def _secure(response: web.StreamResponse, request: web.Request) -> None:
    if response.prepared:
        return  # streamed (SSE, CSV): headers were set before the body
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def console_app(
    services: Services,
    *,
    live_calls: LiveCallSource | None = None,
    refresh_interval: float = 1.0,
    throttle: LoginThrottle | None = None,
    health: Health | None = None,
) -> web.Application:
    """The console on ``services``; ``live_calls`` knows the calls in progress;
    ``health`` answers /readyz and /metrics (default: the database alone, no metrics)."""
    settings = services.settings
    sounds_dir = system_sounds_dir(settings.pbx_root)
    flows = FlowFiles(
        settings.flows_dir.resolve(),
        timezone=settings.timezone,
        sound_exists=sounds_in_dir(sounds_dir).__contains__ if sounds_dir else None,
    )
    console = Console(
        services=services,
        ops=ConsoleOps(services, flows),
        hub=Hub(
            services.charging.wallet.balance,
            services.store.open_records,
            live_calls,
            interval=refresh_interval,
        ),
        history=CallHistory(services.db),
        ledger=LedgerPage(services.db),
        throttle=throttle or LoginThrottle(),
        live_calls=live_calls,
        started_at=datetime.now(UTC),
    )
    app = web.Application(
        middlewares=[security_headers, error_middleware, auth.auth_middleware],
        client_max_size=1024 * 1024,
    )
    app[CONSOLE] = console
    setup_templates(app, settings.timezone)
    for table in (auth.routes, pages.routes, flowpages.routes, callpages.routes, events.routes):
        app.add_routes(table)
    app.add_routes(fundingpages.routes)
    app.add_routes(api.routes)
    app.add_routes(fundingapi.routes)
    app.router.add_static("/static/", STATIC, append_version=False)
    app[HEALTH] = health or Health(services.db.ping)
    app.add_routes(health_routes)
    app.cleanup_ctx.append(_run_hub)
    return app


async def _run_hub(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[CONSOLE].hub.run(), name="console-hub")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class ConsoleServer:
    """The console on its own aiohttp runner; started and stopped by the serving app.
    With ``ssl_context`` it speaks HTTPS only (the session cookie is then Secure)."""

    def __init__(
        self, listen: str, app: web.Application, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.app = app
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (address, port) the server listens on, once started."""
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses] if self._runner else []

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"cannot serve the console on {self.host}:{self.port}: {exc.strerror or exc} "
                "(another instance? change the setting console_listen)"
            ) from exc
        log.info("admin console on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
