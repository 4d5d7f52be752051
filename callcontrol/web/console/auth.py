"""Signing in, sessions, bearer tokens and CSRF: the gate in front of every handler.

Reachable without signing in: ``/login``, ``/static/...``, ``/healthz``, and the
probes of health.py (``/readyz``, ``/metrics``). Any other request needs either

- ``Authorization: Bearer <token>`` (``callcontrol admins token NAME``): for the
  API and scripts; not an ambient credential, so no CSRF token is asked for; or
- the session cookie ``cc_session`` (HttpOnly, SameSite=Lax, Secure when the
  console is served over TLS), set at sign-in. Every state-changing request
  (POST, PUT, PATCH, DELETE) made with it must carry the session's CSRF token, in
  the ``X-CSRF-Token`` header (htmx sends it, see console.js) or a ``csrf_token``
  form field; without it nothing changes (403 ``csrf_failed``).

Without either: the API answers 401 ``unauthenticated``; a page redirects to
``/login?next=...`` (htmx: the ``HX-Redirect`` header). The login form carries a
CSRF token of its own (double-submit cookie ``cc_login_csrf``); failed sign-ins
are rate limited per address and per name (``throttle.py``).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from callcontrol.web.console.context import ADMIN, CONSOLE, CSRF, SECRET, admin_of
from callcontrol.web.console.errors import ApiError, is_api

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "auth_middleware", "routes"]

SESSION_COOKIE = "cc_session"
LOGIN_CSRF_COOKIE = "cc_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/readyz", "/metrics"})  # probes: health.py

routes = web.RouteTableDef()


def _is_public(request: web.Request) -> bool:
    return request.path in PUBLIC_PATHS or request.path.startswith("/static/")


async def _sent_csrf(request: web.Request) -> str:
    token = request.headers.get(CSRF_HEADER, "")
    if not token and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get("csrf_token", "")
        token = value if isinstance(value, str) else ""
    return token


def _same(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    admins = request.app[CONSOLE].services.admins
    authorization = request.headers.get("Authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        admin = await admins.by_token(token.strip()) if scheme.lower() == "bearer" else None
        if admin is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request[ADMIN] = admin
        return await handler(request)
    secret = request.cookies.get(SESSION_COOKIE, "")
    session = await admins.session(secret)
    if session is None:
        if is_api(request):
            raise ApiError(401, "unauthenticated", "sign in, or send a bearer token")
        if request.headers.get("HX-Request"):
            raise ApiError(401, "unauthenticated", "signed out", headers={"HX-Redirect": "/login"})
        raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
    if request.method not in SAFE_METHODS and not _same(
        await _sent_csrf(request), session.csrf_token
    ):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token: reload the page")
    request[ADMIN] = session.admin
    request[CSRF] = session.csrf_token
    request[SECRET] = secret
    return await handler(request)


def _local(target: str) -> str:
    """Only paths on this console (no open redirect)."""
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok else "/"


def _login_page(
    request: web.Request, *, error: str = "", status: int = 200, name: str = ""
) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "csrf_token": token,
            "error": error,
            "name": name,
            "next": _local(request.query.get("next", "/")),
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/login",
    )
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    admins = request.app[CONSOLE].services.admins
    if await admins.session(request.cookies.get(SESSION_COOKIE, "")) is not None:
        raise web.HTTPSeeOther("/")
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    name = str(form.get("name", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    if not _same(str(form.get("csrf_token", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        return _login_page(request, error="The form expired: please try again.", status=403)
    address = request.remote or "?"
    wait = console.throttle.retry_after(address, name)
    if wait:
        response = _login_page(
            request,
            error=f"Too many failed sign-ins: try again in {wait} s.",
            status=429,
            name=name,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    session = await console.services.admins.sign_in(name, password)
    if session is None:
        console.throttle.failed(address, name)
        return _login_page(request, error="Wrong name or password.", status=401, name=name)
    console.throttle.succeeded(address, name)
    await console.services.admins.record(session.admin, "admin.sign_in", session.admin.name)
    response = web.HTTPSeeOther(_local(str(form.get("next", "/"))))
    response.set_cookie(
        SESSION_COOKIE,
        session.secret,
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        path="/",
        max_age=int(console.services.admins.session_ttl.total_seconds()),
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    admins = request.app[CONSOLE].services.admins
    admin = admin_of(request)
    secret = request.get(SECRET, "")
    if secret:
        await admins.sign_out(secret)
    await admins.record(admin, "admin.sign_out", admin.name)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    if request.headers.get("HX-Request"):
        response.headers["HX-Redirect"] = "/login"
    raise response


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
