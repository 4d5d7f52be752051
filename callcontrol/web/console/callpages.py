"""The pages of calls and money: live calls, call history (filters, keyset pages, CSV),
the ledger and the audit log of admin actions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from aiohttp import web

from callcontrol.domain.call_records import CallDirection, Disposition
from callcontrol.domain.money import format_credits
from callcontrol.store.history import CallFilter, CallRow
from callcontrol.web.console.context import CONSOLE
from callcontrol.web.console.forms import call_filter, optional_int
from callcontrol.web.console.render import page

__all__ = ["CSV_COLUMNS", "csv_line", "routes", "stream_csv"]

routes = web.RouteTableDef()

PAGE_SIZE = 50
CSV_COLUMNS = (
    "call_id",
    "started_at",
    "answered_at",
    "ended_at",
    "direction",
    "caller",
    "callee",
    "number",
    "user",
    "disposition",
    "ended_by",
    "rate",
    "rate_per_minute",
    "increments",
    "billable_seconds",
    "cost",
)


def csv_line(values: Iterable[object]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else str(v) for v in values])
    return out.getvalue()


def _csv_values(row: CallRow) -> list[object]:
    r = row.record

    def iso(value: object) -> object:
        return value.isoformat() if hasattr(value, "isoformat") else value

    return [
        r.call_id,
        iso(r.started_at),
        iso(r.answered_at),
        iso(r.ended_at),
        r.direction,
        r.caller,
        r.callee,
        r.number_e164,
        r.user_name,
        r.disposition,
        r.ended_by,
        row.rate_description,
        None if row.rate_per_minute is None else format_credits(row.rate_per_minute),
        row.rate_increments,
        r.billable_seconds,
        None if r.cost_micro is None else format_credits(r.cost_micro),
    ]


async def stream_csv(request: web.Request, where: CallFilter) -> web.StreamResponse:
    """Every matching call as CSV, written as it is read (constant memory)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="calls.csv"',
        }
    )
    await response.prepare(request)
    await response.write(csv_line(CSV_COLUMNS).encode())
    chunk: list[str] = []
    async for row in request.app[CONSOLE].history.export(where):
        chunk.append(csv_line(_csv_values(row)))
        if len(chunk) >= 500:
            await response.write("".join(chunk).encode())
            chunk.clear()
    if chunk:
        await response.write("".join(chunk).encode())
    await response.write_eof()
    return response


@routes.get("/calls/live")
async def live_page(request: web.Request) -> web.StreamResponse:
    hub = request.app[CONSOLE].hub
    await hub.refresh_records()
    return await page(
        request,
        "live.html",
        {
            "title": "Live calls",
            "calls": hub.live_rows(),
            "events_url": "/events?calls=1",
            "available": request.app[CONSOLE].live_calls is not None,
        },
    )


@routes.get("/calls")
async def history_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    timezone = console.services.settings.timezone
    where = call_filter(request.query, timezone)
    rows, cursor = await console.history.page(
        where, limit=PAGE_SIZE, cursor=request.query.get("cursor") or None
    )
    users = await console.services.directory.list_users()
    filters = {k: request.query.get(k, "") for k in ("since", "until", "user", "number")}
    filters |= {k: request.query.get(k, "") for k in ("direction", "disposition")}
    query = {k: v for k, v in filters.items() if v}
    return await page(
        request,
        "history.html",
        {
            "title": "Call history",
            "rows": rows,
            "next_query": {**query, "cursor": cursor} if cursor else None,
            "filters": filters,
            "query": query,
            "users": [u.name for u in users],
            "directions": [d.value for d in CallDirection],
            "dispositions": [d.value for d in Disposition],
        },
    )


@routes.get("/calls.csv")
async def history_csv(request: web.Request) -> web.StreamResponse:
    where = call_filter(request.query, request.app[CONSOLE].services.settings.timezone)
    return await stream_csv(request, where)


@routes.get("/ledger")
async def ledger_page(request: web.Request) -> web.StreamResponse:
    before = optional_int(request.query, "before", default=None, low=1, high=2**62)
    entries, next_before = await request.app[CONSOLE].ledger.page(limit=PAGE_SIZE, before_id=before)
    return await page(
        request, "ledger.html", {"title": "Ledger", "entries": entries, "next_before": next_before}
    )


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    before = optional_int(request.query, "before", default=None, low=1, high=2**62)
    entries = await request.app[CONSOLE].services.admins.audit_log(PAGE_SIZE + 1, before)
    next_before = entries[PAGE_SIZE - 1].id if len(entries) > PAGE_SIZE else None
    return await page(
        request,
        "audit.html",
        {"title": "Audit log", "entries": entries[:PAGE_SIZE], "next_before": next_before},
    )
