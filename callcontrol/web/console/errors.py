"""Errors as HTTP answers: the project's error tree mapped to a status and a body.

    InvalidInput (WeakPassword, FlowValidationError, ...)   400
    NotFound                                                 404
    Conflict (InsufficientCredits, ...)                      409
    StoreError, ConfigError, AriError, TtsError, GraphError  503 (the service cannot now)
    anything else                                            500, logged with its traceback

Under /api the body is always JSON, ``{"error": {"id", "message", "details"?}}``;
``id`` is the class's ``error_id`` (callcontrol/errors.py), and a flow's errors
are listed with their line and column. Pages get the same as an HTML fragment
(htmx swaps it in place of the form's result).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from callcontrol.errors import (
    AriError,
    CallControlError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    StoreError,
)
from callcontrol.ivr.errors import FlowValidationError, GraphError, TtsError

__all__ = ["ApiError", "error_middleware", "error_response", "status_of"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[CallControlError], int]] = [
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (StoreError, 503),
    (ConfigError, 503),
    (AriError, 503),
    (TtsError, 503),
    (GraphError, 503),
]


class ApiError(Exception):
    """An HTTP-level refusal with its own id: unauthenticated, csrf_failed, rate_limited."""

    def __init__(
        self, status: int, error_id: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.headers = headers or {}


def status_of(exc: CallControlError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _details(exc: Exception) -> dict[str, Any] | None:
    if isinstance(exc, FlowValidationError):
        return {
            "errors": [
                {"line": e.line, "column": e.column, "message": e.message} for e in exc.errors
            ]
        }
    return None


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def error_response(
    request: web.Request,
    status: int,
    error_id: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """The error as JSON under /api, as an HTML fragment for htmx, else as a page."""
    if is_api(request):
        body: dict[str, Any] = {"id": error_id, "message": message}
        if details:
            body["details"] = details
        return web.json_response({"error": body}, status=status, headers=headers)
    template = "_error.html" if request.headers.get("HX-Request") else "error.html"
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {"status": status, "error_id": error_id, "message": message, "details": details},
        status=status,
    )
    response.headers.update(headers or {})
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.status, exc.error_id, str(exc), headers=exc.headers)
    except CallControlError as exc:
        status = status_of(exc)
        if status == 500:
            log.exception("console: %s %s failed", request.method, request.path)
        return error_response(request, status, exc.error_id, str(exc), details=_details(exc))
    except web.HTTPException as exc:
        if not is_api(request) or exc.status < 400:
            raise
        error_id = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        return error_response(request, exc.status, error_id, exc.reason)
    except Exception:
        log.exception("console: %s %s failed", request.method, request.path)
        return error_response(request, 500, "internal_error", "internal error (logged)")
