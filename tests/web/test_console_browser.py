"""The console in headless Chromium (Debian's ``chromium``, driven by Playwright).

The console runs in-process on a free port over real services (no PBX needed);
live calls come from a stand-in for the CallManager. Each page is saved as a
screenshot under the test's temporary folder (``screenshots/``).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from console_harness import ADMIN, PASSWORD, FakeLiveCalls

from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.live_calls import LiveCall
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.services import Services

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
expect = playwright_api.expect


@pytest.fixture
async def page(client: TestClient, tmp_path: Path) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(
            base_url=str(client.make_url("/")).rstrip("/"), viewport={"width": 1400, "height": 900}
        )
        tab = await context.new_page()
        try:
            yield tab
        finally:
            await context.close()
            await browser.close()


async def shot(page: Any, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def sign_in(page: Any) -> None:
    p = page
    await p.goto("/login")
    await p.fill("input[name=name]", ADMIN)
    await p.fill("input[name=password]", PASSWORD)
    await p.click("button[type=submit]")
    await p.wait_for_url("**/numbers")


async def _settled_call(services: Services) -> None:
    at = datetime.now(UTC) - timedelta(minutes=10)
    rate_id = (await services.charging.load_rates())[0].id
    assert rate_id is not None
    await services.store.start(
        call_id="cdr-1",
        direction=CallDirection.INBOUND,
        caller="+4930123456",
        callee="+442079460000",
        channel_id="ch-1",
        started_at=at,
        number_e164="+442079460000",
        user_name="alice",
    )
    await services.store.mark_answered("cdr-1", at + timedelta(seconds=4))
    await services.store.finish(
        "cdr-1", at + timedelta(seconds=94), Disposition.ANSWERED, 16, EndedBy.CALLER
    )
    await services.store.settle("cdr-1", rate_id, 90, 37_500)


async def test_console_in_a_browser(
    page: Any, services: Services, live_calls: FakeLiveCalls, tmp_path: Path
) -> None:
    p = page
    await sign_in(p)
    balance = p.get_by_test_id("balance")
    await expect(balance).to_contain_text("20.00")
    await shot(p, tmp_path, "numbers")

    # Credits added meanwhile appear in the header through SSE, without a reload.
    await services.charging.wallet.credit(5 * MICRO, LedgerKind.PURCHASE, None, "b-1", "top-up")
    await expect(balance).to_contain_text("25.00")

    # Route the number that has none to a user.
    row = p.locator("tr[data-number='+442079460001']")
    await expect(row).to_contain_text("needs routing")
    await row.locator("select").select_option("user:bob")
    await row.get_by_role("button", name="Save").click()
    await expect(p.locator("tr[data-number='+442079460001']")).to_contain_text("rings user bob")
    routed = await services.directory.get_number("+442079460001")
    assert routed.route is not None and routed.route.user_name == "bob"
    await shot(p, tmp_path, "numbers-routed")

    await p.goto("/users")
    await expect(p.locator("tr[data-user=alice]")).to_contain_text("1001")
    await shot(p, tmp_path, "users")

    # Break a flow in the editor: the error is shown at its line; nothing is written.
    flow_file = services.settings.flows_dir / "main.yaml"
    before = flow_file.read_text()
    await p.goto("/flows/main")
    await expect(p.locator("img.graph")).to_be_visible()
    await shot(p, tmp_path, "flow")
    editor = p.locator("textarea#yaml")
    await editor.fill(before.replace("start: office_hours", "start: nowhere"))
    await p.get_by_role("button", name="Save").click()
    line = before.splitlines().index("start: office_hours") + 1
    marked = p.locator(f"ol.listing li.bad[data-line='{line}']")
    await expect(marked).to_contain_text("nowhere")
    await expect(p.locator(".flow-errors")).to_contain_text(f"line {line}")
    assert flow_file.read_text() == before
    await shot(p, tmp_path, "flow-error")

    await p.goto("/flows")
    await expect(p.locator("main")).to_contain_text("valid")
    await shot(p, tmp_path, "flows")

    # Call history with a cost.
    await _settled_call(services)
    await p.goto("/calls")
    history = p.locator("tr[data-call=cdr-1]")
    await expect(history.locator("td.cost")).to_have_text("0.0375")
    await expect(history).to_contain_text("alice")
    await shot(p, tmp_path, "history")

    # Live calls, fed from a CallManager-like snapshot, update by themselves.
    await p.goto("/calls/live")
    await expect(p.locator("#live")).to_contain_text("No calls in progress")
    now = datetime.now(UTC)
    await services.store.start(
        call_id="live-1",
        direction=CallDirection.INBOUND,
        caller="+4930999888",
        callee="+442079460000",
        channel_id="ch-live",
        started_at=now,
        number_e164="+442079460000",
        user_name="alice",
    )
    live_calls.calls.append(
        LiveCall("live-1", "inbound", "+4930999888", "+442079460000", now, now, 75, 41_000, "UK")
    )
    live_row = p.locator("tr[data-call=live-1]")
    await expect(live_row).to_contain_text("1:15")
    await expect(live_row).to_contain_text("0.041")
    await shot(p, tmp_path, "live")

    await p.goto("/ledger")
    await expect(p.locator("#ledger")).to_contain_text("top-up")
    await shot(p, tmp_path, "ledger")
    await p.goto("/audit")
    await expect(p.locator("#audit")).to_contain_text("number.route")
    await shot(p, tmp_path, "audit")


async def test_funding_in_a_browser(page: Any, services: Services, tmp_path: Path) -> None:
    p = page
    await sign_in(p)
    balance = p.get_by_test_id("balance")
    await expect(balance).to_contain_text("20.00")

    # Buy credits with a new test card: the header's balance follows over SSE.
    buy_panel = p.get_by_test_id("buy-panel")
    await buy_panel.locator("summary").click()
    await p.get_by_test_id("buy-amount").fill("10")
    await p.get_by_test_id("buy-method").select_option("test:visa")
    await shot(p, tmp_path, "buy-form")
    await buy_panel.get_by_role("button", name="Buy").click()
    outcome = p.get_by_test_id("buy-outcome")
    await expect(outcome).to_have_attribute("data-outcome", "succeeded")
    await expect(balance).to_contain_text("30.00")
    await shot(p, tmp_path, "buy-succeeded")

    # A declined card says why; nothing is credited.
    await p.get_by_test_id("buy-method").select_option("test:declined")
    await buy_panel.get_by_role("button", name="Buy").click()
    await expect(outcome).to_have_attribute("data-outcome", "declined")
    await expect(outcome).to_contain_text("card_declined")
    await shot(p, tmp_path, "buy-declined")
    assert (await services.charging.wallet.balance()).balance == 30 * MICRO
    await buy_panel.locator("summary").click()

    # Auto-recharge on, with the card saved above.
    auto_panel = p.get_by_test_id("auto-panel")
    await auto_panel.locator("summary").click()
    await p.get_by_test_id("auto-enabled").check()
    await p.get_by_test_id("auto-amount").fill("10")
    await auto_panel.get_by_role("button", name="Save").click()
    await expect(p.get_by_test_id("auto-saved")).to_be_visible()
    state = auto_panel.get_by_test_id("auto-state")
    await expect(state).to_have_attribute("data-enabled", "on")
    await expect(state).to_contain_text("visa")
    await shot(p, tmp_path, "auto-recharge-on")
    status = await services.funding.status()
    assert status.auto_recharge.enabled and status.auto_recharge.amount_micro == 10 * MICRO

    await p.goto("/payments")
    await expect(p.get_by_test_id("methods")).to_contain_text("****4242")
    await expect(p.get_by_test_id("attempts")).to_contain_text("card_declined")
    await shot(p, tmp_path, "payments")
