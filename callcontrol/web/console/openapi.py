"""The OpenAPI 3.1 document of /api/v1, built from one table of operations."""

from __future__ import annotations

from typing import Any

from callcontrol.web.console.fundingdoc import FUNDING_OPERATIONS, FUNDING_SCHEMAS

__all__ = ["OPERATIONS", "openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["id", "message"],
            "properties": {
                "id": {
                    "type": "string",
                    "description": "stable error id: invalid_input, weak_password, flow_invalid, "
                    "not_found, conflict, insufficient_credits, unauthenticated, csrf_failed, "
                    "rate_limited, store_error, ari_unavailable, ...",
                },
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_S = {"type": "string"}
_I = {"type": "integer"}
_B = {"type": "boolean"}
_NULL_S = {"type": ["string", "null"]}
_NULL_I = {"type": ["integer", "null"]}


def _page(item: str) -> dict[str, Any]:
    return _obj(
        items={"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        next={"description": "the cursor of the next page, null on the last"},
    )


SCHEMAS: dict[str, Any] = {
    "Error": _ERROR,
    "Wallet": _obj(balance_micro=_I, held_micro=_I, available_micro=_I),
    "Number": _obj(
        number=_S,
        country=_S,
        type=_S,
        needs_routing=_B,
        route=_obj(kind=_S, name=_S),
        state={"enum": ["active", "suspended"]},
        monthly_micro=_I,
        paid_until=_NULL_S,
        assigned={"type": "array", "items": _obj(user=_S, default=_B)},
    ),
    "Offer": _obj(number=_S, country=_S, type=_S, setup_micro=_I, monthly_micro=_I),
    "Coverage": _obj(
        country=_S, type=_S, available=_I, lowest_setup_micro=_I, lowest_monthly_micro=_I
    ),
    "Purchase": {"type": "object", "required": ["number"], "properties": {"number": _S}},
    "AssignOptions": _obj(default=_B),
    "RouteTarget": {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": ["user", "flow", "none"]}, "name": _S},
    },
    "User": _obj(name=_S, extension=_S, registration={"enum": ["online", "offline", "unknown"]}),
    "NewUser": {
        "type": "object",
        "required": ["name", "extension"],
        "properties": {"name": _S, "extension": _S, "password": _S},
    },
    "UserChange": _obj(
        user={"$ref": "#/components/schemas/User"},
        password={"type": "string", "description": "generated SIP password, shown once"},
        endpoint=_obj(applied=_B, error=_NULL_S),
    ),
    "FlowStatus": _obj(
        name=_S, valid=_B, errors={"type": "array", "items": _obj(line=_I, column=_I, message=_S)}
    ),
    "Flow": _obj(name=_S, yaml=_S, valid=_B, errors={"type": "array"}),
    "FlowText": {"type": "object", "required": ["yaml"], "properties": {"yaml": _S}},
    "Simulation": _obj(keys=_S, at=_S, ring={"type": "object"}),
    "LiveCall": _obj(
        call_id=_S,
        direction=_S,
        caller=_S,
        callee=_S,
        number=_NULL_S,
        user=_NULL_S,
        started_at=_S,
        answered_at=_NULL_S,
        talk_seconds=_I,
        cost_micro=_NULL_I,
        rate=_NULL_S,
    ),
    "Call": _obj(
        call_id=_S,
        direction=_S,
        caller=_S,
        callee=_S,
        number=_NULL_S,
        user=_NULL_S,
        started_at=_S,
        answered_at=_NULL_S,
        ended_at=_NULL_S,
        disposition=_NULL_S,
        ended_by=_NULL_S,
        rate={"type": ["object", "null"]},
        billable_seconds=_NULL_I,
        cost_micro=_NULL_I,
    ),
    "LedgerEntry": _obj(
        id=_I,
        created_at=_S,
        kind=_S,
        amount_micro=_I,
        balance_after_micro=_I,
        reference=_NULL_S,
        description=_S,
    ),
    "AuditEntry": _obj(id=_I, at=_S, admin=_S, action=_S, target=_S, details=_S),
    **FUNDING_SCHEMAS,
}

_LIMIT = {"name": "limit", "in": "query", "schema": _I}
_FILTERS = [
    {"name": n, "in": "query", "schema": _S, "description": d}
    for n, d in (
        ("since", "a date (whole day, the organisation's time zone) or ISO date-time"),
        ("until", "a date (included) or ISO date-time (excluded)"),
        ("user", "user name"),
        ("number", "E.164 number: the organisation's, the caller's or the callee's"),
        ("direction", "inbound, outbound or internal"),
        ("disposition", "answered, busy, no_answer, ..."),
        ("cursor", "the `next` of the previous page"),
    )
]


def _p(name: str, where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": _S}


# (method, path, summary, parameters, request schema, response schema or media type)
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], str | None, str]] = [
    ("get", "/wallet", "Balance, held and available credits (micro-credits)", [], None, "Wallet"),
    (
        "get",
        "/numbers",
        "The numbers with their routing",
        [_LIMIT, _p("after", "query")],
        None,
        "page:Number",
    ),
    ("get", "/numbers/{number}", "One number", [_p("number")], None, "Number"),
    (
        "put",
        "/numbers/{number}/route",
        "Route a number to a user, a flow, or nothing",
        [_p("number")],
        "RouteTarget",
        "Number",
    ),
    (
        "delete",
        "/numbers/{number}/route",
        "Remove a number's routing (it refuses calls)",
        [_p("number")],
        None,
        "Number",
    ),
    (
        "post",
        "/numbers",
        "Buy a number from the catalogue: setup fee and first month from the wallet "
        "(409 insufficient_credits: nothing reserved or charged)",
        [],
        "Purchase",
        "Number",
    ),
    (
        "delete",
        "/numbers/{number}",
        "Release a number: routing and assignments removed, it refuses calls at once "
        "(force=true also when it runs an IVR flow)",
        [_p("number"), _p("force", "query")],
        None,
        "object",
    ),
    (
        "put",
        "/numbers/{number}/assignments/{name}",
        "Assign a number to a user (default: their presented number)",
        [_p("number"), _p("name")],
        "AssignOptions",
        "Number",
    ),
    (
        "delete",
        "/numbers/{number}/assignments/{name}",
        "Take a number from a user",
        [_p("number"), _p("name")],
        None,
        "Number",
    ),
    ("get", "/catalogue", "Countries and number types on offer", [], None, "page:Coverage"),
    (
        "get",
        "/catalogue/search",
        "Numbers on offer by country and type",
        [
            _p("country", "query"),
            _p("type", "query"),
            _p("prefix", "query"),
            _p("contains", "query"),
            _LIMIT,
        ],
        None,
        "page:Offer",
    ),
    (
        "get",
        "/users",
        "Users with their phones' registration",
        [_LIMIT, _p("after", "query")],
        None,
        "page:User",
    ),
    (
        "post",
        "/users",
        "Add a user (no password: one is generated and returned once)",
        [],
        "NewUser",
        "UserChange",
    ),
    ("get", "/users/{name}", "One user", [_p("name")], None, "User"),
    (
        "post",
        "/users/{name}/password",
        "Reset a user's SIP password (generated when not given)",
        [_p("name")],
        None,
        "UserChange",
    ),
    (
        "delete",
        "/users/{name}",
        "Remove a user (force=true also clears routes to them)",
        [_p("name"), _p("force", "query")],
        None,
        "object",
    ),
    ("get", "/flows", "Flow files with their validation status", [], None, "page:FlowStatus"),
    ("get", "/flows/{name}", "A flow's YAML and its errors", [_p("name")], None, "Flow"),
    (
        "put",
        "/flows/{name}",
        "Save a flow; only a flow that validates is written",
        [_p("name")],
        "FlowText",
        "object",
    ),
    (
        "get",
        "/flows/{name}/graph.svg",
        "The flow as a picture",
        [_p("name")],
        None,
        "image/svg+xml",
    ),
    (
        "post",
        "/flows/{name}/simulate",
        "The path a caller pressing keys takes",
        [_p("name")],
        "Simulation",
        "object",
    ),
    ("get", "/calls/live", "The calls in progress", [], None, "page:LiveCall"),
    ("get", "/calls", "Call history, newest first", [_LIMIT, *_FILTERS], None, "page:Call"),
    ("get", "/calls.csv", "Call history as CSV (streamed)", _FILTERS[:-1], None, "text/csv"),
    (
        "get",
        "/ledger",
        "Ledger entries, newest first",
        [_LIMIT, _p("before", "query")],
        None,
        "page:LedgerEntry",
    ),
    (
        "get",
        "/audit",
        "What admins changed, newest first",
        [_LIMIT, _p("before", "query")],
        None,
        "page:AuditEntry",
    ),
    (
        "get",
        "/events",
        "Server-Sent Events: balance and calls, as JSON",
        [],
        None,
        "text/event-stream",
    ),
    ("get", "/openapi.json", "This document", [], None, "object"),
    *FUNDING_OPERATIONS,
]

_STATUSES = {
    "400": "invalid input (error id invalid_input, weak_password, flow_invalid, ...)",
    "401": "unauthenticated",
    "403": "csrf_failed (cookie sessions only)",
    "404": "not_found",
    "409": "conflict",
    "503": "the database or Asterisk cannot answer now",
}


def _response(kind: str) -> dict[str, Any]:
    if "/" in kind:
        return {"description": "OK", "content": {kind: {}}}
    if kind.startswith("page:"):
        schema = _page(kind.removeprefix("page:"))
    elif kind == "object":
        schema = {"type": "object"}
    else:
        schema = {"$ref": f"#/components/schemas/{kind}"}
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for method, path, summary, params, body, answer in OPERATIONS:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": _response(answer),
                **{code: {"description": d, "content": error} for code, d in _STATUSES.items()},
            },
        }
        if body:
            ref = {"$ref": f"#/components/schemas/{body}"}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        paths.setdefault("/api/v1" + path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "callcontrol console API", "version": "1"},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cc_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
