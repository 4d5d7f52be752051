"""The metrics module: label values bounded, one registry per app, read-at-scrape sources."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callcontrol import metrics as metrics_module
from callcontrol.domain.call_records import Disposition
from callcontrol.metrics import MAX_ROUTES, REFUSAL_CAUSES, Metrics, route_template


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back as Prometheus would read it."""
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[name, tuple(sorted(labels.items()))]


def test_route_templates_replace_ids_and_keep_ari_words() -> None:
    assert route_template("/channels/1716.42/play") == "/channels/{id}/play"
    assert route_template("/channels/abc-callee-1") == "/channels/{id}"
    assert route_template("/channels") == "/channels"
    assert route_template("/channels/create") == "/channels/create"
    assert route_template("/bridges/f00d/addChannel") == "/bridges/{id}/addChannel"
    assert route_template("/playbacks/x-ringback-1/control") == "/playbacks/{id}/control"
    assert (
        route_template("/asterisk/config/dynamic/res_pjsip/endpoint/1001")
        == "/asterisk/config/dynamic/res_pjsip/endpoint/{id}"
    )
    assert route_template("/endpoints/PJSIP/1001") == "/endpoints/PJSIP/{id}"
    assert route_template("/channels/c%2F1/variable?x=1") == "/channels/{id}/variable"


def test_ari_latency_is_a_histogram_by_method_and_route_with_bounded_labels() -> None:
    metrics = Metrics()
    for n in range(3):
        metrics.ari_request("POST", f"/channels/chan-{n}/answer", 0.002)
    metrics.ari_request("GET", "/sounds", 0.3)
    name = "callcontrol_ari_request_duration_seconds"
    assert value(metrics, name + "_count", method="POST", route="/channels/{id}/answer") == 3
    assert value(metrics, name + "_sum", method="GET", route="/sounds") == 0.3
    # Ids never make new routes; and however many odd paths of ARI's words come, the
    # route label takes at most MAX_ROUTES + 1 values.
    for n in range(MAX_ROUTES + 50):
        metrics.ari_request("GET", f"/x{n}", 0.001)
        metrics.ari_request("GET", "/channels" * (n + 1), 0.001)
    routes = {
        dict(labels)["route"] for (sample, labels) in samples(metrics) if sample == name + "_count"
    }
    assert len(routes) == MAX_ROUTES + 1
    assert {"/{id}", "other"} <= routes


def test_setups_refusals_and_charging_count_by_their_labels() -> None:
    metrics = Metrics()
    metrics.call_setup("inbound")
    metrics.call_setup("inbound")
    metrics.call_setup("outbound")
    metrics.call_refused("overload")
    metrics.call_refused_as(Disposition.REFUSED_NO_CREDIT)
    metrics.call_refused_as(Disposition.REFUSED_UNKNOWN_NUMBER)
    metrics.call_refused_as(Disposition.BUSY)  # the callee's answer: not a refusal
    metrics.charging("authorize", "ok")
    metrics.charging("authorize", "no_credit")
    metrics.charging("settle", "database")
    assert value(metrics, "callcontrol_call_setups_total", direction="inbound") == 2
    assert value(metrics, "callcontrol_call_setups_total", direction="outbound") == 1
    refusals = "callcontrol_call_refusals_total"
    assert value(metrics, refusals, cause="overload") == 1
    assert value(metrics, refusals, cause="no_credit") == 1
    assert value(metrics, refusals, cause="unknown_number") == 1
    assert value(metrics, refusals, cause="no_routing") == 0  # every cause is exposed
    assert sum(v for (name, _), v in samples(metrics).items() if name == refusals) == 3
    ops = "callcontrol_charging_operations_total"
    assert value(metrics, ops, operation="authorize", outcome="ok") == 1
    assert value(metrics, ops, operation="authorize", outcome="no_credit") == 1
    assert value(metrics, ops, operation="settle", outcome="database") == 1
    assert value(metrics, ops, operation="slice", outcome="ok") == 0


def test_every_refused_disposition_has_a_cause() -> None:
    refused = {d for d in Disposition if d.value.startswith("refused_")}
    assert refused <= set(REFUSAL_CAUSES)


def test_two_apps_have_registries_of_their_own() -> None:
    one, two = Metrics(), Metrics()
    one.call_setup("inbound")
    assert value(one, "callcontrol_call_setups_total", direction="inbound") == 1
    assert value(two, "callcontrol_call_setups_total", direction="inbound") == 0


def test_what_is_read_when_scraped() -> None:
    metrics = Metrics()
    live = {"inbound": 2}
    metrics.watch_calls(lambda: live)
    state = {"connected": False, "in_setup": 3, "overloaded": True}
    metrics.watch_ari(lambda: bool(state["connected"]))
    metrics.watch_admission(lambda: int(state["in_setup"]), lambda: bool(state["overloaded"]))
    name = "callcontrol_calls_in_progress"
    assert value(metrics, name, direction="inbound") == 2
    assert value(metrics, name, direction="outbound") == 0  # every direction, always
    assert value(metrics, "callcontrol_ari_connected") == 0
    assert value(metrics, "callcontrol_calls_in_setup") == 3
    assert value(metrics, "callcontrol_overloaded") == 1
    live.clear()
    state["connected"] = True
    assert value(metrics, name, direction="inbound") == 0
    assert value(metrics, "callcontrol_ari_connected") == 1


def test_reconnects_count_the_connections_after_the_first() -> None:
    metrics = Metrics()
    metrics.ari_connected()
    assert value(metrics, "callcontrol_ari_reconnects_total") == 0
    metrics.ari_connected()
    metrics.ari_connected()
    assert value(metrics, "callcontrol_ari_reconnects_total") == 2


def test_loop_lag_is_a_histogram() -> None:
    metrics = Metrics()
    metrics.observe_loop_lag(0.0004)
    metrics.observe_loop_lag(0.2)
    name = "callcontrol_event_loop_lag_seconds"
    assert value(metrics, name + "_count") == 2
    assert value(metrics, name + "_bucket", le="0.001") == 1
    assert value(metrics, name + "_bucket", le="0.25") == 2


async def test_the_wallet_is_read_at_each_scrape_and_a_failure_keeps_the_last_values() -> None:
    metrics = Metrics()
    answers: list[tuple[int, int] | Exception] = [(20_000_000, 1_500_000), OSError("down")]

    async def wallet() -> tuple[int, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    metrics.watch_wallet(wallet)
    await metrics.refresh()
    assert value(metrics, "callcontrol_wallet_balance_microcredits") == 20_000_000
    assert value(metrics, "callcontrol_wallet_held_microcredits") == 1_500_000
    await metrics.refresh()  # the database fails: the scrape still answers
    assert value(metrics, "callcontrol_wallet_balance_microcredits") == 20_000_000


async def test_a_slow_source_does_not_hold_the_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "REFRESH_TIMEOUT", 0.05)
    metrics = Metrics()
    never = asyncio.Event()

    async def wallet() -> tuple[int, int]:
        await never.wait()
        return 0, 0

    metrics.watch_wallet(wallet)
    async with asyncio.timeout(2):
        await metrics.refresh()
    assert value(metrics, "callcontrol_wallet_balance_microcredits") == 0
