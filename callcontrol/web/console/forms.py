"""Reading what a client sent: query parameters, form fields and JSON bodies.

Every problem is an ``InvalidInput`` naming the field, so the answer is a 400 with
a clear message, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiMapping

from callcontrol.domain.call_records import CallDirection, Disposition
from callcontrol.errors import InvalidInput
from callcontrol.store.history import CallFilter

__all__ = [
    "call_filter",
    "json_body",
    "optional_int",
    "text_field",
]


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object."""
    if request.content_type != "application/json":
        raise InvalidInput("send a JSON object with Content-Type: application/json")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def text_field(
    data: Mapping[str, Any], name: str, *, required: bool = True, limit: int = 1024
) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


def optional_int(
    query: MultiMapping[str], name: str, *, default: int | None, low: int, high: int
) -> int | None:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _when(raw: str, name: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` (a whole day in the organisation's zone; an end date includes
    its day) or an ISO date and time (naive: in that zone)."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(0), tzinfo=zone)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date (2026-11-27) or a date and time, got {raw[:40]!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=zone)).astimezone(UTC)


def call_filter(query: MultiMapping[str], timezone: str) -> CallFilter:
    zone = ZoneInfo(timezone)
    since = query.get("since", "").strip()
    until = query.get("until", "").strip()
    direction = query.get("direction", "").strip()
    disposition = query.get("disposition", "").strip()
    if direction and direction not in {d.value for d in CallDirection}:
        choices = ", ".join(d.value for d in CallDirection)
        raise InvalidInput(f"direction must be one of {choices}")
    if disposition and disposition not in {d.value for d in Disposition}:
        raise InvalidInput(f"unknown disposition {disposition[:40]!r}")
    number = query.get("number", "").strip().replace(" ", "")
    return CallFilter(
        since=_when(since, "since", zone, end=False) if since else None,
        until=_when(until, "until", zone, end=True) if until else None,
        user=query.get("user", "").strip()[:64] or None,
        number=number[:32] or None,
        direction=direction or None,
        disposition=disposition or None,
    )
