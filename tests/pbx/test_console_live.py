"""The console of a real `serve` in headless Chromium, while a real call goes through the PBX.

The carrier (sipp) calls the number routed to alice, whose phone (sipp) answers and
talks for a few seconds. The browser watches the call appear in Live calls with its
talk time ticking and its cost running (over SSE, from the serving app's CallManager),
then finds it in Call history with the cost the database has for it.

Waits: the app's documented log lines (log_contract.py: READY, CONNECTED, RELEASED)
and what the page shows; the cost is checked against the call record in the database.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pbx_harness import ROUTED, AppProcess, Carrier, Org, Phones

from callcontrol.admins import AdminService
from callcontrol.store.db import Database
from callcontrol.web.console.render import credits

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.pbx,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
expect = playwright_api.expect

ADMIN = "admin"
PASSWORD = "correct-horse-battery-9"
TALK_MS = 6000


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def console_app(org: Org) -> AsyncIterator[tuple[AppProcess, str]]:
    """`serve` with its console on a free port, and an admin in the test's database."""
    db = Database.from_url(org.db_url)
    try:
        await AdminService(db).add(ADMIN, PASSWORD)
    finally:
        await db.dispose()
    port = _free_tcp_port()
    process = AppProcess(org, env={"CALLCONTROL_CONSOLE_LISTEN": f"127.0.0.1:{port}"})
    await process.start()  # READY: the console listens before ARI connects
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        await process.stop()


@pytest.fixture
async def browser_page(console_app: tuple[AppProcess, str]) -> AsyncIterator[Any]:
    _, url = console_app
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=url, viewport={"width": 1400, "height": 900})
        tab = await context.new_page()
        try:
            yield tab
        finally:
            await context.close()
            await browser.close()


async def test_a_real_call_in_live_calls_then_in_call_history(
    console_app: tuple[AppProcess, str],
    browser_page: Any,
    phones: Phones,
    carrier: Carrier,
    org: Org,
    tmp_path: Path,
) -> None:
    app, _ = console_app
    p = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    await p.goto("/login")
    await p.fill("input[name=name]", ADMIN)
    await p.fill("input[name=password]", PASSWORD)
    await p.click("button[type=submit]")
    await p.wait_for_url("**/numbers")
    await p.goto("/calls/live")
    await expect(p.locator("#live")).to_contain_text("No calls in progress")

    phone = await phones.answering("alice", talk_ms=TALK_MS)
    call = await carrier.call(ROUTED)  # waits for the BYE of alice's hang-up
    call_id = await app.connected("alice")

    row = p.locator(f"tr[data-call='{call_id}']")
    await expect(row).to_contain_text("alice", timeout=10_000)
    await expect(row).to_contain_text(ROUTED)
    talk, cost = row.locator("td.num").nth(0), row.locator("td.num").nth(1)
    first = await talk.inner_text()
    await expect(talk).not_to_have_text(first, timeout=5_000)  # the talk time ticks
    shown_cost = (await cost.inner_text()).strip()
    assert shown_cost not in ("-", "0.00"), shown_cost  # the first increment is held
    await p.screenshot(path=str(shots / "live-call.png"), full_page=True)

    c, ph = await call.wait(40), await phone.wait(40)
    assert c.ok, c.explain()
    assert ph.ok, ph.explain()
    [released] = await app.calls_released(1)
    assert released == call_id
    await expect(p.locator("#live")).to_contain_text("No calls in progress")

    record = await org.record(call_id)
    assert record.disposition == "answered" and record.cost_micro
    await p.goto("/calls")
    history = p.locator(f"tr[data-call='{call_id}']")
    await expect(history.locator("td.cost")).to_have_text(credits(record.cost_micro))
    await expect(history).to_contain_text("alice")
    await p.screenshot(path=str(shots / "call-history.png"), full_page=True)
