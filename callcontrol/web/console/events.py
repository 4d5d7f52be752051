"""Server-Sent Events: the header's balance and the live calls, as they change.

``GET /events`` (pages; ``?calls=1`` adds the live calls) sends HTML fragments that
htmx's SSE extension swaps in (``sse-swap="balance"``, ``sse-swap="calls"``);
``GET /api/v1/events`` sends the same events as JSON. Both come from the one
``Hub`` (live.py): no database query per client. A comment line every
``KEEPALIVE`` seconds finds dead connections; a client that falls behind is
dropped (the browser reconnects by itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from callcontrol.domain.money import WalletState
from callcontrol.web.console.context import CONSOLE
from callcontrol.web.console.live import LiveRow
from callcontrol.web.console.render import fragment

__all__ = ["balance_json", "live_json", "routes"]

routes = web.RouteTableDef()

KEEPALIVE = 15.0


def balance_json(state: WalletState) -> dict[str, Any]:
    return {
        "balance_micro": state.balance,
        "held_micro": state.held,
        "available_micro": state.available,
    }


def live_json(rows: list[LiveRow]) -> list[dict[str, Any]]:
    return [
        {
            "call_id": r.call.call_id,
            "direction": r.call.direction,
            "caller": r.call.caller,
            "callee": r.call.callee,
            "number": r.number,
            "user": r.user,
            "started_at": r.call.started_at.isoformat(),
            "answered_at": r.call.answered_at.isoformat() if r.call.answered_at else None,
            "talk_seconds": r.call.talk_seconds,
            "cost_micro": r.call.cost_micro,
            "rate": r.call.rate,
        }
        for r in rows
    ]


def _sse(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


async def _stream(
    request: web.Request, render: Callable[[str, Any], str | None], *, calls: bool
) -> web.StreamResponse:
    hub = request.app[CONSOLE].hub
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        async with hub.subscribe() as sub:
            await response.write(b": connected\n\n")
            while True:
                event = await sub.next(KEEPALIVE)
                if event is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                name, payload = event
                if name == "calls" and not calls:
                    continue
                data = render(name, payload)
                if data is not None:
                    await response.write(_sse(name, data))
    except (ConnectionResetError, ConnectionError):
        pass  # the client left, or fell behind and was dropped
    return response


@routes.get("/events")
async def page_events(request: web.Request) -> web.StreamResponse:
    app = request.app

    def render(name: str, payload: Any) -> str | None:
        if name == "balance":
            return fragment(app, "_balance.html", {"balance": payload})
        return fragment(app, "_live_rows.html", {"calls": payload})

    return await _stream(request, render, calls=request.query.get("calls") == "1")


@routes.get("/api/v1/events")
async def api_events(request: web.Request) -> web.StreamResponse:
    def render(name: str, payload: Any) -> str:
        body = balance_json(payload) if name == "balance" else live_json(payload)
        return json.dumps(body)

    return await _stream(request, render, calls=True)
