"""The IVR flow pages: the list with validation status, the editor (errors marked at
their line and column), the graph as SVG and the simulator."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from callcontrol.errors import InvalidInput, NotFound
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.simulate import parse_ring
from callcontrol.web.console.context import CONSOLE, admin_of
from callcontrol.web.console.render import page, partial

__all__ = ["routes"]

routes = web.RouteTableDef()

NEW_FLOW = """\
# A new flow: see ivr_flows/README.md for the format.
start: main
menus:
  main:
    prompts:
      - say: "Hello. Goodbye."
    options: {}
    on_failure: hangup
"""


def listing(text: str, errors: list[FlowError]) -> list[dict[str, object]]:
    """The text's lines, each with the errors reported on it."""
    by_line: dict[int, list[FlowError]] = {}
    for error in errors:
        by_line.setdefault(error.line, []).append(error)
    lines = text.replace("\r\n", "\n").split("\n")
    return [
        {"number": i, "text": line, "errors": by_line.get(i, [])}
        for i, line in enumerate(lines, start=1)
    ]


async def _users(request: web.Request) -> set[str]:
    return {u.name for u in await request.app[CONSOLE].services.directory.list_users()}


@routes.get("/flows")
async def flows_page(request: web.Request) -> web.StreamResponse:
    flows = request.app[CONSOLE].ops.flows
    new = request.query.get("name", "").strip()
    if new:  # the "new flow" form
        flows.path(new)  # checks the name
        raise web.HTTPSeeOther(f"/flows/{quote(new)}")
    statuses = await flows.statuses(await _users(request))
    return await page(request, "flows.html", {"title": "IVR flows", "flows": statuses})


@routes.get("/flows/{name}")
async def flow_page(request: web.Request) -> web.StreamResponse:
    flows = request.app[CONSOLE].ops.flows
    name = request.match_info["name"]
    flows.path(name)  # checks the name
    try:
        text = await flows.read(name)
        exists = True
    except NotFound:
        text, exists = NEW_FLOW, False
    errors: list[FlowError] = []
    if exists:
        _flow, errors = await flows.check(name, text, known_users=await _users(request))
    return await page(
        request,
        "flow.html",
        {
            "title": f"Flow {name}",
            "name": name,
            "text": text,
            "exists": exists,
            "errors": errors,
            "listing": listing(text, errors) if errors else [],
        },
    )


@routes.post("/flows/{name}")
async def save_flow(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    name = request.match_info["name"]
    form = await request.post()
    text = str(form.get("yaml", ""))
    try:
        flow = await console.ops.save_flow(admin_of(request), name, text)
    except FlowValidationError as exc:
        return partial(
            request,
            "_flow_check.html",
            {"name": name, "errors": exc.errors, "listing": listing(text, exc.errors)},
            status=400,
        )
    return partial(
        request,
        "_flow_check.html",
        {"name": name, "errors": [], "listing": [], "version": flow.version},
    )


@routes.get("/flows/{name}/graph.svg")
async def flow_graph(request: web.Request) -> web.StreamResponse:
    svg = await request.app[CONSOLE].ops.flows.graph_svg(request.match_info["name"])
    return web.Response(
        body=svg,
        content_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@routes.post("/flows/{name}/simulate")
async def simulate_flow(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    ring_text = str(form.get("ring", ""))
    ring = parse_ring([item for item in ring_text.split(",") if item.strip()])
    users = await console.services.directory.list_users()
    try:
        lines = await console.ops.flows.simulate(
            request.match_info["name"],
            str(form.get("keys", "")),
            at=str(form.get("at", "")).strip() or None,
            ring=ring,
            extensions={u.extension: u.name for u in users},
        )
    except FlowValidationError as exc:
        raise InvalidInput(f"the flow is invalid: fix it first ({len(exc.errors)} errors)") from exc
    return partial(request, "_simulation.html", {"lines": lines})
