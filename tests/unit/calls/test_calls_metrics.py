"""The metrics hooks of the call engine and of charging, on calls over the fake ARI."""

from __future__ import annotations

from pathlib import Path

from calls_harness import ROUTED, UNROUTED, App, StartApp, make_org
from prometheus_client.parser import text_string_to_metric_families

from callcontrol.calls.admission import Admission, AdmissionLimits
from callcontrol.metrics import Metrics

CARRIER = "1715000000.1"


def counted(app: App) -> Metrics:
    """Count ``app``'s calls as ``callcontrol serve`` does (app.py ``_watch``)."""
    metrics = Metrics()
    app.ctx.metrics = metrics
    app.ctx.charging.metrics = metrics
    app.ari.observer = metrics.ari_request
    metrics.watch_calls(app.manager.counts_by_direction)
    return metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


async def test_a_charged_call_counts_its_setup_and_charging_and_leaves_none_in_progress(
    app: App,
) -> None:
    metrics = counted(app)
    call = await app.carrier_call(CARRIER, ROUTED)
    await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    assert value(metrics, "callcontrol_calls_in_progress", direction="inbound") == 1
    app.clock.advance(30)
    await app.hang_up(CARRIER)
    await app.ended(call)

    assert value(metrics, "callcontrol_call_setups_total", direction="inbound") == 1
    assert value(metrics, "callcontrol_calls_in_progress", direction="inbound") == 0
    ops = "callcontrol_charging_operations_total"
    assert value(metrics, ops, operation="authorize", outcome="ok") == 1
    assert value(metrics, ops, operation="slice", outcome="ok") >= 1
    assert value(metrics, ops, operation="settle", outcome="ok") == 1
    answered = "callcontrol_ari_request_duration_seconds_count"
    assert value(metrics, answered, method="POST", route="/channels/{id}/answer") == 1
    assert value(metrics, answered, method="POST", route="/bridges/{id}/addChannel") == 1


async def test_refusals_count_by_cause(app: App) -> None:
    metrics = counted(app)
    call = await app.carrier_call(CARRIER, UNROUTED)
    await app.finish_playback(CARRIER)
    await app.ended(call)
    assert value(metrics, "callcontrol_call_refusals_total", cause="no_routing") == 1
    assert value(metrics, "callcontrol_call_refusals_total", cause="no_credit") == 0


async def test_no_credit_is_a_refusal_and_an_authorization_refused(
    start_app: StartApp, migrated: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    app = await start_app(await make_org(migrated, empty, credits=0))
    metrics = counted(app)
    call = await app.carrier_call(CARRIER, ROUTED)
    await app.finish_playback(CARRIER)
    await app.ended(call)
    assert value(metrics, "callcontrol_call_refusals_total", cause="no_credit") == 1
    ops = "callcontrol_charging_operations_total"
    assert value(metrics, ops, operation="authorize", outcome="no_credit") == 1
    assert value(metrics, ops, operation="authorize", outcome="ok") == 0


async def test_an_overload_refusal_is_counted(start_app: StartApp) -> None:
    app = await start_app(
        admission=Admission(AdmissionLimits(max_in_setup=0), ari_latency=lambda: 0.0)
    )
    metrics = counted(app)
    app.fake.add_channel(CARRIER, exten=ROUTED)
    await app.send("StasisStart", channel=app.fake.channel(CARRIER), args=["inbound", ROUTED])
    await app.request("POST", f"/ari/channels/{CARRIER}/continue")
    assert value(metrics, "callcontrol_call_refusals_total", cause="overload") == 1
    assert value(metrics, "callcontrol_call_setups_total", direction="inbound") == 1
    assert value(metrics, "callcontrol_calls_in_progress", direction="inbound") == 0


async def test_a_call_between_users_is_in_progress_as_internal(app: App) -> None:
    metrics = counted(app)
    phone = "1715000000.9"
    call = await app.phone_call(phone, "1001", "1002")
    await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    assert value(metrics, "callcontrol_calls_in_progress", direction="internal") == 1
    assert value(metrics, "callcontrol_calls_in_progress", direction="outbound") == 0
    assert value(metrics, "callcontrol_call_setups_total", direction="outbound") == 1
    await app.hang_up(phone)
    await app.ended(call)
    assert value(metrics, "callcontrol_calls_in_progress", direction="internal") == 0
