"""The pages for numbers and users (server-rendered; forms post through htmx)."""

from __future__ import annotations

from aiohttp import web

from callcontrol.domain.directory import Number
from callcontrol.domain.numbers import NumberType
from callcontrol.web.console.context import CONSOLE, admin_of
from callcontrol.web.console.ops import RouteTarget
from callcontrol.web.console.render import page, partial

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _route_choices(request: web.Request) -> dict[str, list[str]]:
    console = request.app[CONSOLE]
    users = await console.services.directory.list_users()
    return {"users": [u.name for u in users], "flows": console.ops.flows.names()}


def _routed_to(numbers: list[Number]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in numbers:
        if n.route is not None and n.route.user_name:
            out.setdefault(n.route.user_name, []).append(n.e164)
    return out


def _assigned_to(numbers: list[Number]) -> dict[str, list[str]]:
    """User -> the numbers they may present, the default marked."""
    out: dict[str, list[str]] = {}
    for n in numbers:
        for a in n.assigned:
            out.setdefault(a.user_name, []).append(n.e164 + (" (default)" if a.default else ""))
    return out


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/numbers")


# ---- numbers ---------------------------------------------------------------------------


async def _numbers_context(request: web.Request) -> dict[str, object]:
    numbers = await request.app[CONSOLE].services.directory.list_numbers()
    return {"numbers": numbers, **await _route_choices(request)}


@routes.get("/numbers")
async def numbers_page(request: web.Request) -> web.StreamResponse:
    coverage = await request.app[CONSOLE].services.numbers.coverage()
    context = await _numbers_context(request)
    countries = sorted({c.country for c in coverage})
    return await page(
        request,
        "numbers.html",
        {
            "title": "Numbers",
            "countries": countries,
            "types": [str(t) for t in NumberType],
            **context,
        },
    )


@routes.get("/numbers/search")
async def search_numbers(request: web.Request) -> web.StreamResponse:
    q = request.query
    offers = await request.app[CONSOLE].services.numbers.search(
        q.get("country", ""),
        q.get("type", ""),
        prefix=q.get("prefix", "")[:16],
        contains=q.get("contains", "")[:16],
        limit=20,
    )
    return partial(request, "_offers.html", {"offers": offers})


@routes.post("/numbers/buy")
async def buy_number(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    bought = await console.ops.buy_number(admin_of(request), str(form.get("number", "")))
    context = await _numbers_context(request)
    return partial(request, "_numbers_table.html", {**context, "bought": bought})


@routes.post("/numbers/{number}/assign")
async def assign_number(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    await console.ops.assign_number(
        admin_of(request),
        request.match_info["number"],
        str(form.get("user", "")),
        default=form.get("default") == "on",
    )
    return partial(request, "_numbers_table.html", await _numbers_context(request))


@routes.post("/numbers/{number}/unassign")
async def unassign_number(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    await console.ops.unassign_number(
        admin_of(request), request.match_info["number"], str(form.get("user", ""))
    )
    return partial(request, "_numbers_table.html", await _numbers_context(request))


@routes.post("/numbers/{number}/release")
async def release_number(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    done = await console.ops.release_number(
        admin_of(request), request.match_info["number"], force=form.get("force") == "on"
    )
    context = await _numbers_context(request)
    return partial(request, "_numbers_table.html", {**context, "released": done})


@routes.post("/numbers/{number}/route")
async def route_number(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    target = RouteTarget.parse(str(form.get("target", "")))
    number = await console.ops.route_number(admin_of(request), request.match_info["number"], target)
    choices = await _route_choices(request)
    return partial(request, "_number_row.html", {"n": number, "saved": True, **choices})


# ---- users -----------------------------------------------------------------------------


async def _users_context(request: web.Request) -> dict[str, object]:
    console = request.app[CONSOLE]
    users = await console.services.directory.list_users()
    numbers = await console.services.directory.list_numbers()
    return {
        "users": users,
        "routed": _routed_to(numbers),
        "assigned": _assigned_to(numbers),
        "registrations": await console.ops.registrations(),
    }


@routes.get("/users")
async def users_page(request: web.Request) -> web.StreamResponse:
    context = await _users_context(request)
    return await page(request, "users.html", {"title": "Users", **context})


@routes.post("/users")
async def add_user(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    change = await console.ops.add_user(
        admin_of(request),
        str(form.get("name", "")),
        str(form.get("extension", "")),
        str(form.get("password", "")) or None,
    )
    context = await _users_context(request)
    return partial(request, "_users_table.html", {**context, "change": change})


@routes.post("/users/{name}/password")
async def reset_password(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    change = await console.ops.reset_sip_password(
        admin_of(request), request.match_info["name"], str(form.get("password", "")) or None
    )
    context = await _users_context(request)
    return partial(request, "_users_table.html", {**context, "change": change})


@routes.post("/users/{name}/remove")
async def remove_user(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    name = request.match_info["name"]
    endpoint = await console.ops.remove_user(
        admin_of(request), name, force=form.get("force") == "on"
    )
    context = await _users_context(request)
    return partial(request, "_users_table.html", {**context, "removed": name, "endpoint": endpoint})
