"""The gate: sign-in, sessions, CSRF, rate limiting, bearer tokens stored hashed."""

from __future__ import annotations

import hashlib
import re

from aiohttp.test_utils import TestClient
from console_harness import ADMIN, PASSWORD, sign_in
from sqlalchemy import text

from callcontrol.services import Services

ROUTE = "/numbers/%2B442079460001/route"


async def _route_of(services: Services) -> object:
    return (await services.directory.get_number("+442079460001")).route


async def test_only_login_static_and_health_are_public(client: TestClient) -> None:
    for path in ("/login", "/healthz", "/static/console.css", "/static/htmx-2.0.11.min.js"):
        assert (await client.get(path)).status == 200, path
    for path in ("/", "/numbers", "/users", "/flows/main", "/calls", "/ledger", "/events"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/login?next=")
    response = await client.get("/numbers", headers={"HX-Request": "true"})
    assert response.status == 401 and response.headers["HX-Redirect"] == "/login"


async def test_without_a_session_nothing_changes(client: TestClient, services: Services) -> None:
    response = await client.post(ROUTE, data={"target": "user:bob"}, allow_redirects=False)
    assert response.status == 303
    assert await _route_of(services) is None
    response = await client.put(f"/api/v1{ROUTE}", json={"kind": "user", "name": "bob"})
    assert response.status == 401
    assert await _route_of(services) is None


async def test_a_missing_or_wrong_csrf_token_changes_nothing(
    client: TestClient, csrf: str, services: Services
) -> None:
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        response = await client.post(ROUTE, data={"target": "user:bob"}, headers=headers)
        assert response.status == 403
        assert await _route_of(services) is None
    response = await client.post(ROUTE, data={"target": "user:bob", "csrf_token": "forged"})
    assert response.status == 403
    response = await client.put(f"/api/v1{ROUTE}", json={"kind": "user", "name": "bob"})
    assert response.status == 403
    assert (await response.json())["error"]["id"] == "csrf_failed"
    assert await _route_of(services) is None

    response = await client.post(ROUTE, data={"target": "user:bob"}, headers={"X-CSRF-Token": csrf})
    assert response.status == 200
    assert "rings user" in await response.text()
    route = await services.directory.get_number("+442079460001")
    assert route.route is not None and route.route.user_name == "bob"
    response = await client.post(ROUTE, data={"target": "none", "csrf_token": csrf})
    assert response.status == 200


async def test_the_session_cookie_is_httponly_and_lax(client: TestClient) -> None:
    form = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
    assert token is not None
    response = await client.post(
        "/login",
        data={"name": ADMIN, "password": PASSWORD, "csrf_token": token.group(1)},
        allow_redirects=False,
    )
    cookie = response.cookies["cc_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; TLS sets Secure


async def test_login_needs_its_form_token(client: TestClient) -> None:
    response = await client.post("/login", data={"name": ADMIN, "password": PASSWORD})
    assert response.status == 403
    assert "cc_session" not in response.cookies


async def test_failed_logins_are_rate_limited(client: TestClient) -> None:
    form = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
    assert token is not None
    attempt = {"name": ADMIN, "csrf_token": token.group(1)}
    for _ in range(3):  # the test app allows 3 failures a minute
        response = await client.post("/login", data={**attempt, "password": "wrong-guess-123"})
        assert response.status == 401
    response = await client.post("/login", data={**attempt, "password": PASSWORD})
    assert response.status == 429 and int(response.headers["Retry-After"]) > 0
    assert "cc_session" not in response.cookies


async def test_logout_ends_the_session(client: TestClient, csrf: str) -> None:
    assert (await client.get("/numbers")).status == 200
    response = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/numbers", allow_redirects=False)).status == 303


async def test_next_after_login_stays_on_the_console(client: TestClient) -> None:
    form = await client.get("/login?next=//evil.example/x")
    page = await form.text()
    assert 'name="next" value="/"' in page


async def test_passwords_and_tokens_are_stored_hashed(
    client: TestClient, services: Services
) -> None:
    token = await services.admins.issue_token(ADMIN)
    response = await client.get("/api/v1/wallet", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    async with services.db.session() as session:
        stored = list(await session.scalars(text("SELECT token_hash FROM admin_tokens")))
        password_hash = await session.scalar(text("SELECT password_hash FROM admins"))
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in stored
    assert str(password_hash).startswith("$argon2id$") and PASSWORD not in str(password_hash)

    await services.admins.revoke_tokens(ADMIN)
    response = await client.get("/api/v1/wallet", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401


async def test_bad_bearer_tokens_are_refused(client: TestClient) -> None:
    for value in ("Bearer nope", "Bearer cc_nope", "Basic YWRtaW46eA==", "Bearer"):
        response = await client.get("/api/v1/wallet", headers={"Authorization": value})
        assert response.status == 401, value
        assert (await response.json())["error"]["id"] == "unauthenticated"


async def test_bearer_requests_need_no_csrf_token(client: TestClient, services: Services) -> None:
    token = await services.admins.issue_token(ADMIN)
    response = await client.put(
        f"/api/v1{ROUTE}",
        json={"kind": "user", "name": "bob"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200


async def test_pages_send_security_headers(client: TestClient) -> None:
    await sign_in(client)
    response = await client.get("/numbers")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
