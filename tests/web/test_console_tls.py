"""The console over HTTPS (console_tls_cert/key) with a self-signed certificate: the real
app factory on the ConsoleServer `serve` uses, a sign-in whose session cookie is Secure,
and the same in headless Chromium told to accept the self-signed certificate."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar, TCPConnector
from console_harness import ADMIN, PASSWORD, FakeLiveCalls

from callcontrol.services import Services
from callcontrol.tls import server_context, write_self_signed
from callcontrol.web.console.app import ConsoleServer, console_app

_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def https_console(
    services: Services, live_calls: FakeLiveCalls, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """The console served over HTTPS; its URL and the certificate to trust."""
    cert, key = tmp_path / "tls" / "console.crt", tmp_path / "tls" / "console.key"
    write_self_signed(cert, key, ["127.0.0.1", "localhost"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ConsoleServer(
        f"127.0.0.1:{port}",
        console_app(services, live_calls=live_calls, refresh_interval=0.05),
        ssl_context=server_context(cert, key, "test"),
    )
    await server.start()
    try:
        yield server.url.rstrip("/"), cert
    finally:
        await server.stop()


async def test_sign_in_over_https_sets_a_secure_cookie(https_console: tuple[str, Path]) -> None:
    url, cert = https_console
    assert url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=cert)  # verified, not ignored
    jar = CookieJar(unsafe=True)  # keep cookies of an IP address host
    async with ClientSession(connector=TCPConnector(ssl=trust), cookie_jar=jar) as http:
        async with http.get(f"{url}/login") as form:
            assert form.status == 200
            token = _LOGIN_CSRF.search(await form.text())
        assert token is not None
        async with http.post(
            f"{url}/login",
            data={"name": ADMIN, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
            allow_redirects=False,
        ) as signed_in:
            assert signed_in.status == 303
            cookies = signed_in.headers.getall("Set-Cookie")
        session = [c for c in cookies if c.startswith("cc_session=")]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0]
        async with http.get(f"{url}/numbers") as page:
            assert page.status == 200
            assert "+442079460000" in await page.text()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
async def test_the_console_in_a_browser_over_https(
    https_console: tuple[str, Path], tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    url, _ = https_console
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context: Any = await browser.new_context(base_url=url, ignore_https_errors=True)
        try:
            page = await context.new_page()
            await page.goto("/login")
            await page.fill("input[name=name]", ADMIN)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/numbers")
            await playwright_api.expect(page.locator("body")).to_contain_text("+442079460000")
            cookies = {c["name"]: c for c in await context.cookies()}
            assert cookies["cc_session"]["secure"] is True
            await page.screenshot(path=str(tmp_path / "console-https.png"))
        finally:
            await context.close()
            await browser.close()
