"""Readiness and metrics for orchestrators and Prometheus, on the console's server.

    GET /healthz   200 while the process serves HTTP (auth.py: liveness only)
    GET /readyz    200 when ARI's events WebSocket is connected and the database
                   answers a ``SELECT 1`` within ``DB_TIMEOUT``; else 503. The body
                   names each check: {"ready": false, "checks": {"ari": "not
                   connected", "database": "ok"}}
    GET /metrics   Prometheus text format (callcontrol/metrics.py)

All three are public (auth.py): the console listens on loopback unless
``console_listen`` says otherwise, and none of them shows more than counts and the
wallet's totals. A failing check is logged at DEBUG only: probes run every few
seconds, and the reason is in the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from callcontrol.metrics import CONTENT_TYPE, Metrics

__all__ = ["HEALTH", "Health", "routes"]

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0  # seconds the readiness probe waits for the database


@dataclass(frozen=True, slots=True)
class Health:
    """What the probes ask: the database, ARI (None: this app has no ARI), the metrics."""

    ping_db: Callable[[], Awaitable[None]]
    ari_connected: Callable[[], bool] | None = None
    metrics: Metrics | None = None

    async def checks(self) -> dict[str, str]:
        """Each check's result: ``ok`` or why not."""
        out: dict[str, str] = {}
        if self.ari_connected is not None:
            out["ari"] = "ok" if self.ari_connected() else "not connected"
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                await self.ping_db()
            out["database"] = "ok"
        except TimeoutError:
            out["database"] = f"no answer within {DB_TIMEOUT:g} s"
        except Exception as exc:  # a probe answers whatever the database raised
            log.debug("readiness: the database failed: %s", exc)
            out["database"] = "unavailable"
        return out


HEALTH = web.AppKey("health", Health)
routes = web.RouteTableDef()


@routes.get("/readyz")
async def ready(request: web.Request) -> web.Response:
    checks = await request.app[HEALTH].checks()
    ok = all(result == "ok" for result in checks.values())
    return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[HEALTH].metrics
    if registry is None:
        raise web.HTTPNotFound(text="no metrics in this process")
    await registry.refresh()
    body = registry.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
