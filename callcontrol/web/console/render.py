"""Templates: the Jinja2 environment, its filters, and the page helper.

``page`` renders a full page: the header's balance (read fresh), the navigation,
the admin and their CSRF token. Fragments (htmx answers, live updates) are
rendered without any of that, and live updates without a request at all
(``fragment``), so a live update costs no database query per client.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from callcontrol.domain.money import format_credits
from callcontrol.web.console.context import CONSOLE, NAV, admin_of, csrf_of

__all__ = ["credits", "duration", "fragment", "page", "partial", "setup_templates"]

TEMPLATES = Path(__file__).parent / "templates"


def credits(micro: int | None) -> str:
    """Micro-credits shown exactly, with at least 2 decimals: 20.00, 0.0125, -1.50."""
    if micro is None:
        return "-"
    whole, _, fraction = format_credits(micro).partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def setup_templates(app: web.Application, timezone: str) -> jinja2.Environment:
    zone = ZoneInfo(timezone)

    def local(when: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return "-" if when is None else when.astimezone(zone).strftime(fmt)

    filters: dict[str, Callable[..., str]] = {
        "credits": credits,
        "duration": duration,
        "local": local,
    }
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters=filters,
    )
    env.globals["timezone"] = timezone
    return env


async def page(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """A full page with the header (balance, held, available) and the navigation."""
    console = request.app[CONSOLE]
    balance = await console.services.charging.wallet.balance()
    full = {
        "admin": admin_of(request),
        "csrf_token": csrf_of(request),
        "nav": NAV,
        "active": request.path,
        "balance": balance,
        "events_url": "/events",
        "now": datetime.now(UTC),
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def partial(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """An htmx answer: a fragment, with the CSRF token for any form inside it."""
    full = {"csrf_token": csrf_of(request), **context}
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def fragment(app: web.Application, template: str, context: dict[str, Any]) -> str:
    """A fragment rendered without a request (for live updates)."""
    env = aiohttp_jinja2.get_env(app)
    return env.get_template(template).render(**context)
