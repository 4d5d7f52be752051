"""What the console tests share, by a name of its own (``from conftest import`` picks
whichever conftest pytest loaded last when several directories have one)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp.test_utils import TestClient

from callcontrol.domain.live_calls import LiveCall

ADMIN = "admin"
PASSWORD = "correct-horse-battery-9"
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class FakeLiveCalls:
    """A CallManager-like source of live calls, filled by the test."""

    calls: list[LiveCall] = field(default_factory=list)

    def snapshot(self) -> list[LiveCall]:
        return list(self.calls)


async def sign_in(client: TestClient, name: str = ADMIN, password: str = PASSWORD) -> str:
    """Sign in through the login form; the session's CSRF token."""
    form = await client.get("/login")
    token = _LOGIN_CSRF.search(await form.text())
    assert token is not None
    response = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token.group(1), "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await client.get("/numbers")
    found = _META_CSRF.search(await page.text())
    assert found is not None
    return found.group(1)
