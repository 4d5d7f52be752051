"""InboundCall over the fake ARI server: refusals, ringing a user, bridging, charging."""

from __future__ import annotations

import asyncio
from pathlib import Path

from calls_harness import (
    CALLER,
    INBOUND_FEE,
    INBOUND_PER_SECOND,
    ROUTED,
    UNROUTED,
    App,
    StartApp,
    make_org,
)

from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.domain.money import MICRO

CARRIER = "1715000000.1"


async def test_an_unrouted_number_is_refused_as_early_media_and_recorded(app: App) -> None:
    call = await app.carrier_call(CARRIER, UNROUTED)
    await app.request("POST", f"/ari/channels/{CARRIER}/progress")  # 183, never answered
    play = await app.finish_playback(CARRIER)
    assert play.query["media"] == "sound:ss-noservice"

    record = await app.ended(call)
    hangup = app.requests("DELETE", f"/ari/channels/{CARRIER}")
    assert [r.query for r in hangup] == [{"reason": "unallocated"}]  # cause 1, SIP 404
    assert app.requests("POST", f"/ari/channels/{CARRIER}/answer") == []
    assert app.requests("POST", "/ari/channels") == []  # nothing rang
    assert record.disposition == Disposition.REFUSED_NO_ROUTE
    assert record.ended_by is EndedBy.SYSTEM
    assert record.number_e164 == UNROUTED
    assert record.caller == CALLER
    assert record.answered_at is None and record.rate_id is None
    assert record.channel_id == CARRIER  # how a restarted app finds the caller's channel
    assert app.requests("POST", f"/ari/channels/{CARRIER}/variable") == []  # no tag
    assert app.router.subscribers == 0


async def test_a_caller_the_dialplan_rang_already_is_not_rung_again(app: App) -> None:
    call = await app.carrier_call(CARRIER, ROUTED, ringing=True)
    await app.originated(call)
    await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    assert app.requests("POST", f"/ari/channels/{CARRIER}/ring") == []  # the 180 went out
    assert app.requests("POST", f"/ari/channels/{CARRIER}/answer")


async def test_a_routed_number_rings_the_user_bridges_and_charges_the_talk_time(
    app: App,
) -> None:
    before = await app.wallet.balance()
    call = await app.carrier_call(CARRIER, ROUTED)

    originate = await app.originated(call)
    assert originate.query["endpoint"] == "PJSIP/1001"
    assert originate.query["appArgs"] == f"dialed,{call.call_id}"
    assert originate.query["callerId"] == CALLER
    assert originate.query["originator"] == CARRIER
    assert originate.json == {
        "variables": {"CALLCONTROL_CALL_ID": call.call_id, "CALLCONTROL_ROLE": "callee"}
    }
    assert app.requests("POST", f"/ari/channels/{CARRIER}/ring")  # the caller hears 180
    assert app.requests("POST", f"/ari/channels/{CARRIER}/answer") == []  # not yet

    callee = await app.answer(call)
    add = await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    assert add.query["channel"] == f"{CARRIER},{callee}"
    assert app.requests("POST", f"/ari/channels/{CARRIER}/answer")
    bridge = app.requests("POST", "/ari/bridges")
    assert [r.query["type"] for r in bridge] == ["mixing"]
    await app.request("POST", f"/ari/channels/{callee}/variable", count=1)  # paid time: once
    assert app.variables_set(CARRIER, "TIMEOUT(absolute)")
    assert app.variables_set(callee, "TIMEOUT(absolute)")
    assert (await app.wallet.hold_of(call.call_id)) > 0

    app.clock.advance(42)  # talk time
    await app.hang_up(CARRIER)
    record = await app.ended(call)

    assert [r.query for r in app.requests("DELETE", f"/ari/channels/{callee}")] == [
        {"reason": "normal"}
    ]
    assert app.requests("DELETE", f"/ari/channels/{CARRIER}") == []  # it hung up itself
    assert app.requests("DELETE", f"/ari/bridges/{call.call_id}")
    assert record.direction is CallDirection.INBOUND
    assert record.disposition == Disposition.ANSWERED
    assert record.ended_by is EndedBy.CALLER
    assert record.hangup_cause == 16
    assert record.user_name == "alice"
    assert record.charge_state == ChargeState.SETTLED
    assert record.billable_seconds == 42
    assert record.cost_micro == INBOUND_FEE + 42 * INBOUND_PER_SECOND
    after = await app.wallet.balance()
    assert after.balance == before.balance - record.cost_micro
    assert after.held == 0
    assert await app.wallet.open_holds() == []
    assert await app.wallet.audit() == []
    assert app.router.subscribers == 0


async def test_the_user_not_answering_is_told_to_the_caller_uncharged(app: App) -> None:
    call = await app.carrier_call(CARRIER, ROUTED)
    originate = await app.originated(call)
    callee = originate.query["channelId"]
    await app.hang_up(callee, cause=19)  # no answer
    play = await app.finish_playback(CARRIER)
    assert play.query["media"] == "sound:number-not-answering"

    record = await app.ended(call)
    assert [r.query for r in app.requests("DELETE", f"/ari/channels/{CARRIER}")] == [
        {"reason": "no_answer"}
    ]
    assert record.disposition == Disposition.NO_ANSWER
    assert record.answered_at is None
    assert record.cost_micro == 0
    assert await app.wallet.open_holds() == []
    assert await app.wallet.audit() == []


async def test_the_caller_hanging_up_while_it_rings_abandons_the_call(app: App) -> None:
    call = await app.carrier_call(CARRIER, ROUTED)
    originate = await app.originated(call)
    callee = originate.query["channelId"]
    await app.hang_up(CARRIER)

    record = await app.ended(call)
    assert app.requests("DELETE", f"/ari/channels/{callee}")  # the phone stops ringing
    assert record.disposition == Disposition.ABANDONED
    assert record.ended_by is EndedBy.CALLER
    assert await app.wallet.open_holds() == []


async def test_without_enough_credits_nothing_rings_and_nothing_is_held(
    start_app: StartApp, migrated: Path, tmp_path: Path
) -> None:
    poor = tmp_path / "poor"
    poor.mkdir()
    app = await start_app(await make_org(migrated, poor, credits=MICRO // 100))  # 0.01
    call = await app.carrier_call(CARRIER, ROUTED)
    await app.request("POST", f"/ari/channels/{CARRIER}/progress")
    play = await app.finish_playback(CARRIER)
    assert play.query["media"] == "sound:all-circuits-busy-now,sound:please-try-call-later"

    record = await app.ended(call)
    assert [r.query for r in app.requests("DELETE", f"/ari/channels/{CARRIER}")] == [
        {"reason": "congestion"}  # cause 34, SIP 503
    ]
    assert app.requests("POST", "/ari/channels") == []  # no originate: nothing rang
    assert app.requests("POST", f"/ari/channels/{CARRIER}/ring") == []
    assert record.disposition == Disposition.REFUSED_NO_CREDIT
    assert record.charge_state == ChargeState.REFUSED_NO_CREDIT
    wallet = await app.wallet.balance()
    assert (wallet.balance, wallet.held) == (MICRO // 100, 0)
    assert await app.wallet.open_holds() == []
    assert await app.wallet.audit() == []


async def test_a_routed_charged_call_takes_four_database_transactions(app: App) -> None:
    """The call path's budget (issue 12): the route with the rate set in force (one
    read), the record's start with the first block's hold, the answer with the first
    charge and slice, the settlement with the record's end. Each was a transaction
    of its own before (13 per call)."""
    await app.service.load_rates()  # the first call reads the rates once
    begun = app.db.transactions
    call = await app.carrier_call(CARRIER, ROUTED)
    callee = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.request("POST", f"/ari/channels/{callee}/variable", count=1)
    app.clock.advance(2)
    await app.hang_up(CARRIER)
    task = app.manager.tasks.get(call.call_id)
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), 10)
    assert app.db.transactions - begun == 4
    record = await app.ended(call)
    assert record.charge_state == ChargeState.SETTLED
    assert record.cost_micro == INBOUND_FEE + 2 * INBOUND_PER_SECOND
    assert (await app.wallet.balance()).held == 0
