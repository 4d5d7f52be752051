"""The JSON API under /api/v1: what the pages do, for scripts (bearer tokens).

Lists are paginated: ``limit`` and a cursor, answered as ``{"items": [...], "next":
CURSOR or null}``; pass ``next`` back as ``after`` (numbers, users), ``cursor``
(calls) or ``before`` (ledger, audit). Errors: see errors.py. The OpenAPI document
is ``GET /api/v1/openapi.json`` (openapi.py); a test checks that it lists every
route registered here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callcontrol.carrier.port import Offer
from callcontrol.directory.service import EndpointUpdate
from callcontrol.domain.admins import AuditEntry
from callcontrol.domain.directory import Number, User
from callcontrol.domain.money import LedgerEntry
from callcontrol.errors import InvalidInput
from callcontrol.ivr.errors import FlowValidationError
from callcontrol.ivr.simulate import parse_ring
from callcontrol.store.history import CallRow
from callcontrol.web.console.callpages import stream_csv
from callcontrol.web.console.context import CONSOLE, admin_of
from callcontrol.web.console.events import balance_json, live_json
from callcontrol.web.console.forms import call_filter, json_body, optional_int, text_field
from callcontrol.web.console.openapi import openapi_document
from callcontrol.web.console.ops import RouteTarget, UserChange

__all__ = ["routes"]

routes = web.RouteTableDef()
API = "/api/v1"
MAX_LIMIT = 500


# ---- shapes ----------------------------------------------------------------------------


def number_json(n: Number) -> dict[str, Any]:
    route: dict[str, Any] | None = None
    if n.route is not None:
        route = {"kind": str(n.route.kind)}
        route["name"] = n.route.user_name if n.route.user_name else n.route.flow_name
    return {
        "number": n.e164,
        "country": n.country,
        "type": str(n.number_type),
        "route": route,
        "needs_routing": route is None,
        "state": str(n.state),
        "monthly_micro": n.monthly,
        "paid_until": None if n.paid_until is None else n.paid_until.isoformat(),
        "assigned": [{"user": a.user_name, "default": a.default} for a in n.assigned],
    }


def offer_json(o: Offer) -> dict[str, Any]:
    return {
        "number": o.e164,
        "country": o.country,
        "type": str(o.number_type),
        "setup_micro": o.setup,
        "monthly_micro": o.monthly,
    }


def user_json(u: User, states: dict[str, str] | None = None) -> dict[str, Any]:
    """The user; ``states`` from Asterisk (None: it cannot be asked, so unknown)."""
    registration = "unknown" if states is None else states.get(u.extension, "offline")
    return {"name": u.name, "extension": u.extension, "registration": registration}


def endpoint_json(update: EndpointUpdate | None) -> dict[str, Any] | None:
    if update is None:
        return None
    return {"applied": update.applied, "error": update.error}


def change_json(change: UserChange) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user": user_json(change.user, None),
        "endpoint": endpoint_json(change.endpoint),
    }
    if change.password is not None:
        body["password"] = change.password  # generated: shown this once
    return body


def call_json(row: CallRow) -> dict[str, Any]:
    r = row.record

    def iso(value: Any) -> str | None:
        return None if value is None else str(value.isoformat())

    return {
        "call_id": r.call_id,
        "direction": str(r.direction),
        "caller": r.caller,
        "callee": r.callee,
        "number": r.number_e164,
        "user": r.user_name,
        "started_at": iso(r.started_at),
        "answered_at": iso(r.answered_at),
        "ended_at": iso(r.ended_at),
        "disposition": None if r.disposition is None else str(r.disposition),
        "ended_by": None if r.ended_by is None else str(r.ended_by),
        "rate": None
        if row.rate_description is None
        else {
            "description": row.rate_description,
            "per_minute_micro": row.rate_per_minute,
            "increments": row.rate_increments,
        },
        "billable_seconds": r.billable_seconds,
        "cost_micro": r.cost_micro,
    }


def ledger_json(e: LedgerEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "created_at": e.created_at.isoformat(),
        "kind": str(e.kind),
        "amount_micro": e.amount,
        "balance_after_micro": e.balance_after,
        "reference": e.reference,
        "description": e.description,
    }


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "admin": e.admin,
        "action": e.action,
        "target": e.target,
        "details": e.details,
    }


def _limit(request: web.Request, default: int = 100) -> int:
    value = optional_int(request.query, "limit", default=default, low=1, high=MAX_LIMIT)
    return default if value is None else value


def _page_by_key(items: list[Any], key: str, request: web.Request) -> dict[str, Any]:
    after = request.query.get("after", "")
    limit = _limit(request)
    rest = [i for i in items if getattr(i, key) > after] if after else items
    page = rest[:limit]
    more = len(rest) > limit
    return {"items": page, "next": getattr(page[-1], key) if more and page else None}


# ---- wallet, numbers, users ------------------------------------------------------------


@routes.get(f"{API}/wallet")
async def wallet(request: web.Request) -> web.Response:
    state = await request.app[CONSOLE].services.charging.wallet.balance()
    return web.json_response(balance_json(state))


@routes.get(f"{API}/numbers")
async def list_numbers(request: web.Request) -> web.Response:
    numbers = await request.app[CONSOLE].services.directory.list_numbers()
    page = _page_by_key(numbers, "e164", request)
    return web.json_response({**page, "items": [number_json(n) for n in page["items"]]})


@routes.get(API + "/numbers/{number}")
async def get_number(request: web.Request) -> web.Response:
    number = await request.app[CONSOLE].services.directory.get_number(request.match_info["number"])
    return web.json_response(number_json(number))


@routes.put(API + "/numbers/{number}/route")
async def put_route(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = text_field(body, "kind", limit=8)
    if kind not in ("user", "flow", "none"):
        raise InvalidInput("kind must be user, flow or none")
    name = text_field(body, "name", required=kind != "none", limit=128)
    target = RouteTarget.parse("none" if kind == "none" else f"{kind}:{name}")
    number = await request.app[CONSOLE].ops.route_number(
        admin_of(request), request.match_info["number"], target
    )
    return web.json_response(number_json(number))


@routes.delete(API + "/numbers/{number}/route")
async def delete_route(request: web.Request) -> web.Response:
    number = await request.app[CONSOLE].ops.route_number(
        admin_of(request), request.match_info["number"], RouteTarget("none")
    )
    return web.json_response(number_json(number))


@routes.get(f"{API}/catalogue")
async def catalogue_coverage(request: web.Request) -> web.Response:
    rows = await request.app[CONSOLE].services.numbers.coverage()
    items = [
        {
            "country": c.country,
            "type": str(c.number_type),
            "available": c.available,
            "lowest_setup_micro": c.lowest_setup,
            "lowest_monthly_micro": c.lowest_monthly,
        }
        for c in rows
    ]
    return web.json_response({"items": items, "next": None})


@routes.get(f"{API}/catalogue/search")
async def catalogue_search(request: web.Request) -> web.Response:
    q = request.query
    offers = await request.app[CONSOLE].services.numbers.search(
        text_field(q, "country", limit=8),
        text_field(q, "type", limit=16),
        prefix=text_field(q, "prefix", required=False, limit=16),
        contains=text_field(q, "contains", required=False, limit=16),
        limit=_limit(request, 20),
    )
    return web.json_response({"items": [offer_json(o) for o in offers], "next": None})


@routes.post(f"{API}/numbers")
async def buy_number(request: web.Request) -> web.Response:
    body = await json_body(request)
    bought = await request.app[CONSOLE].ops.buy_number(
        admin_of(request), text_field(body, "number", limit=32)
    )
    return web.json_response(
        {
            **number_json(bought.number),
            "charged_micro": bought.offer.setup + bought.offer.monthly,
            "ledger_entry": None if bought.entry is None else bought.entry.id,
        },
        status=201,
    )


@routes.delete(API + "/numbers/{number}")
async def release_number(request: web.Request) -> web.Response:
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise InvalidInput("force must be true or false")
    done = await request.app[CONSOLE].ops.release_number(
        admin_of(request), request.match_info["number"], force=force == "true"
    )
    return web.json_response(
        {
            "released": done.e164,
            "route_removed": done.route,
            "unassigned": done.users,
            "to_catalogue": done.to_catalogue,
        }
    )


@routes.put(API + "/numbers/{number}/assignments/{name}")
async def assign_number(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    default = body.get("default", False)
    if not isinstance(default, bool):
        raise InvalidInput("default must be true or false")
    number = await request.app[CONSOLE].ops.assign_number(
        admin_of(request),
        request.match_info["number"],
        request.match_info["name"],
        default=default,
    )
    return web.json_response(number_json(number))


@routes.delete(API + "/numbers/{number}/assignments/{name}")
async def unassign_number(request: web.Request) -> web.Response:
    number = await request.app[CONSOLE].ops.unassign_number(
        admin_of(request), request.match_info["number"], request.match_info["name"]
    )
    return web.json_response(number_json(number))


@routes.get(f"{API}/users")
async def list_users(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    users = await console.services.directory.list_users()
    states = await console.ops.registrations()
    page = _page_by_key(users, "name", request)
    items = [user_json(u, dict(states) if states is not None else None) for u in page["items"]]
    return web.json_response({**page, "items": items})


@routes.post(f"{API}/users")
async def add_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    change = await request.app[CONSOLE].ops.add_user(
        admin_of(request),
        text_field(body, "name", limit=64),
        text_field(body, "extension", limit=16),
        text_field(body, "password", required=False) or None,
    )
    return web.json_response(change_json(change), status=201)


@routes.get(API + "/users/{name}")
async def get_user(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    user = await console.services.directory.get_user(request.match_info["name"])
    states = await console.ops.registrations()
    return web.json_response(user_json(user, dict(states) if states is not None else None))


@routes.post(API + "/users/{name}/password")
async def reset_password(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    change = await request.app[CONSOLE].ops.reset_sip_password(
        admin_of(request),
        request.match_info["name"],
        text_field(body, "password", required=False) or None,
    )
    return web.json_response(change_json(change))


@routes.delete(API + "/users/{name}")
async def remove_user(request: web.Request) -> web.Response:
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise InvalidInput("force must be true or false")
    update = await request.app[CONSOLE].ops.remove_user(
        admin_of(request), request.match_info["name"], force=force == "true"
    )
    return web.json_response(
        {"removed": request.match_info["name"], "endpoint": endpoint_json(update)}
    )


# ---- flows -----------------------------------------------------------------------------


def _errors_json(errors: list[Any]) -> list[dict[str, Any]]:
    return [{"line": e.line, "column": e.column, "message": e.message} for e in errors]


@routes.get(f"{API}/flows")
async def list_flows(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    users = {u.name for u in await console.services.directory.list_users()}
    statuses = await console.ops.flows.statuses(users)
    return web.json_response(
        {
            "items": [
                {"name": s.name, "valid": s.valid, "errors": _errors_json(s.errors)}
                for s in statuses
            ],
            "next": None,
        }
    )


@routes.get(API + "/flows/{name}")
async def get_flow(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    name = request.match_info["name"]
    text = await console.ops.flows.read(name)
    users = {u.name for u in await console.services.directory.list_users()}
    _flow, errors = await console.ops.flows.check(name, text, known_users=users)
    return web.json_response(
        {"name": name, "yaml": text, "valid": not errors, "errors": _errors_json(errors)}
    )


@routes.put(API + "/flows/{name}")
async def put_flow(request: web.Request) -> web.Response:
    body = await json_body(request)
    text = text_field(body, "yaml", limit=600_000)
    name = request.match_info["name"]
    existed = request.app[CONSOLE].ops.flows.path(name).exists()
    flow = await request.app[CONSOLE].ops.save_flow(admin_of(request), name, text)
    return web.json_response(
        {"name": name, "version": flow.version, "created": not existed},
        status=200 if existed else 201,
    )


@routes.get(API + "/flows/{name}/graph.svg")
async def flow_graph(request: web.Request) -> web.Response:
    svg = await request.app[CONSOLE].ops.flows.graph_svg(request.match_info["name"])
    return web.Response(body=svg, content_type="image/svg+xml")


@routes.post(API + "/flows/{name}/simulate")
async def simulate(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    body = await json_body(request)
    ring_map = body.get("ring") or {}
    if not isinstance(ring_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ring_map.items()
    ):
        raise InvalidInput('ring must be an object like {"alice": "busy"}')
    users = await console.services.directory.list_users()
    try:
        steps = await console.ops.flows.simulate(
            request.match_info["name"],
            text_field(body, "keys", required=False),
            at=text_field(body, "at", required=False, limit=64) or None,
            ring=parse_ring([f"{k}={v}" for k, v in ring_map.items()]),
            extensions={u.extension: u.name for u in users},
        )
    except FlowValidationError as exc:
        raise InvalidInput(f"the flow is invalid: fix it first ({len(exc.errors)} errors)") from exc
    return web.json_response({"steps": steps})


# ---- calls, ledger, audit --------------------------------------------------------------


@routes.get(f"{API}/calls/live")
async def live_calls(request: web.Request) -> web.Response:
    hub = request.app[CONSOLE].hub
    await hub.refresh_records()
    return web.json_response({"items": live_json(hub.live_rows()), "next": None})


@routes.get(f"{API}/calls")
async def calls(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    where = call_filter(request.query, console.services.settings.timezone)
    rows, cursor = await console.history.page(
        where, limit=_limit(request, 50), cursor=request.query.get("cursor") or None
    )
    return web.json_response({"items": [call_json(r) for r in rows], "next": cursor})


@routes.get(f"{API}/calls.csv")
async def calls_csv(request: web.Request) -> web.StreamResponse:
    where = call_filter(request.query, request.app[CONSOLE].services.settings.timezone)
    return await stream_csv(request, where)


@routes.get(f"{API}/ledger")
async def ledger(request: web.Request) -> web.Response:
    before = optional_int(request.query, "before", default=None, low=1, high=2**62)
    entries, next_before = await request.app[CONSOLE].ledger.page(
        limit=_limit(request, 50), before_id=before
    )
    return web.json_response({"items": [ledger_json(e) for e in entries], "next": next_before})


@routes.get(f"{API}/audit")
async def audit(request: web.Request) -> web.Response:
    limit = _limit(request, 50)
    before = optional_int(request.query, "before", default=None, low=1, high=2**62)
    entries = await request.app[CONSOLE].services.admins.audit_log(limit + 1, before)
    more = len(entries) > limit
    entries = entries[:limit]
    return web.json_response(
        {"items": [audit_json(e) for e in entries], "next": entries[-1].id if more else None}
    )


@routes.get(f"{API}/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
