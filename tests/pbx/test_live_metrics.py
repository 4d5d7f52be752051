"""Metrics, readiness and JSON logs of a real app process serving real calls."""

from __future__ import annotations

import json

import aiohttp
import pytest
from pbx_harness import ROUTED, UNROUTED, AppProcess, Carrier, Org, Phones
from prometheus_client.parser import text_string_to_metric_families

from callcontrol.metrics import ARI_WORDS

pytestmark = pytest.mark.pbx

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def console(app: AppProcess) -> str:
    return "http://" + app.env["CALLCONTROL_CONSOLE_LISTEN"]


async def scrape(app: AppProcess) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(console(app) + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def test_metrics_show_the_calls_served(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    await phones.answering("alice")
    answered = await (await carrier.call(ROUTED, hang_up_after_ms=1500)).wait(30)
    assert answered.ok, answered.explain()
    refused = await (await carrier.call(UNROUTED, refused=True)).wait(30)
    assert refused.ok, refused.explain()
    await app.calls_released(2)

    after = await scrape(app)
    assert get(after, "callcontrol_ari_connected") == 1
    assert get(after, "callcontrol_ari_reconnects_total") == 0
    assert get(after, "callcontrol_call_setups_total", direction="inbound") == 2
    assert get(after, "callcontrol_call_refusals_total", cause="no_routing") == 1
    assert get(after, "callcontrol_call_refusals_total", cause="overload") == 0
    ops = "callcontrol_charging_operations_total"
    assert get(after, ops, operation="authorize", outcome="ok") == 1
    assert get(after, ops, operation="slice", outcome="ok") >= 1
    assert get(after, ops, operation="settle", outcome="ok") == 1
    for direction in ("inbound", "outbound", "internal"):
        assert get(after, "callcontrol_calls_in_progress", direction=direction) == 0
    answers = "callcontrol_ari_request_duration_seconds_count"
    assert get(after, answers, method="POST", route="/channels/{id}/answer") >= 1
    routes = {dict(labels)["route"] for (name, labels) in after if name == answers}
    for route in routes:  # no channel, bridge or playback id made a label value
        assert all(part in ARI_WORDS | {"{id}"} for part in route.strip("/").split("/")), route
    assert get(after, "callcontrol_event_loop_lag_seconds_count") > 0
    balance, held, problems = await org.wallet_state()
    assert problems == []
    assert get(after, "callcontrol_wallet_balance_microcredits") == balance
    assert get(after, "callcontrol_wallet_held_microcredits") == held == 0

    async with aiohttp.ClientSession() as http, http.get(console(app) + "/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"ready": True, "checks": {"ari": "ok", "database": "ok"}}


async def test_json_logs_parse_line_by_line_with_the_call_id(
    org: Org, phones: Phones, carrier: Carrier
) -> None:
    app = await AppProcess(org, env={"CALLCONTROL_LOG_FORMAT": "json"}).start()
    try:
        await phones.answering("alice")
        call = await (await carrier.call(ROUTED, hang_up_after_ms=1000)).wait(30)
        assert call.ok, call.explain()
        [call_id] = await app.calls_released(1)
    finally:
        assert await app.stop() == 0
    lines = [json.loads(line) for line in app.lines]  # every line is one JSON object
    assert all(set(line) >= {"time", "level", "logger", "call_id", "message"} for line in lines)
    of_call = [line["message"] for line in lines if line["call_id"] == call_id]
    assert any(message.startswith("connected ") for message in of_call)
    assert any(message.startswith("settled: ") for message in of_call)
    assert any(message.startswith("call ended: answered") for message in of_call)
    assert any(line["call_id"] is None for line in lines)  # start-up is no call's
    assert org.env["CALLCONTROL_ARI_PASSWORD"] not in "\n".join(app.lines)
