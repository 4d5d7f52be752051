"""CallManager: detaching at shutdown, re-adopting after a restart, stray channels."""

from __future__ import annotations

import logging

import pytest
from calls_harness import (
    ABROAD,
    INBOUND_FEE,
    INBOUND_PER_SECOND,
    OUTBOUND_FEE,
    OUTBOUND_PER_SECOND,
    ROUTED,
    App,
    StartApp,
)
from fake_ari import FakeAri

from callcontrol.calls.adopted import AdoptedCall
from callcontrol.calls.call import Call
from callcontrol.domain.call_records import CallRecord, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState


async def connected_inbound(app: App, carrier: str) -> tuple[Call, str]:
    """A carrier call to alice that she answered: the call and her channel."""
    call = await app.carrier_call(carrier, ROUTED)
    callee = await app.answer(call)
    await app.connected(call, callee)
    return call, callee


async def connected_outbound(app: App, phone: str) -> tuple[Call, str]:
    """Alice calls abroad and the far end answered: the call and the carrier's channel."""
    call = await app.phone_call(phone, "1001", ABROAD)
    callee = await app.answer(call)
    await app.connected(call, callee)
    return call, callee


async def test_shutdown_detaches_calls_their_channels_stay_up_and_records_open(
    app: App,
) -> None:
    call, callee = await connected_inbound(app, "1715000000.1")
    held = await app.wallet.hold_of(call.call_id)
    asked = len(app.fake.requests)

    await app.manager.shutdown(detach=True)

    assert not app.manager.tasks
    assert [r for r in app.fake.requests[asked:] if r.method == "DELETE"] == []
    assert {"1715000000.1", callee} <= set(app.fake.channels)
    assert call.call_id in app.fake.bridges
    assert await app.store.is_open(call.call_id)
    assert await app.wallet.hold_of(call.call_id) == held > 0  # still paying for it


async def test_a_call_arriving_while_the_app_stops_goes_back_to_the_dialplan(
    app: App,
) -> None:
    await app.manager.shutdown(detach=True)
    channel = app.fake.add_channel("1715000000.9", exten=ROUTED)
    await app.send("StasisStart", channel=channel, args=["inbound", ROUTED])

    resume = await app.request("POST", "/ari/channels/1715000000.9/continue")
    assert resume.query == {"context": "callcontrol-unavailable", "extension": "s", "priority": "1"}
    assert app.manager.calls == {}
    assert await app.store.open_records() == []


async def test_a_channel_no_call_owns_is_hung_up(app: App) -> None:
    app.fake.add_channel("1715000000.9")
    await app.send("StasisStart", channel=app.fake.channel("1715000000.9"), args=["dialed", "gone"])
    await app.request("DELETE", "/ari/channels/1715000000.9")
    assert app.manager.calls == {}
    assert app.router.subscribers == 0


async def test_a_restart_re_adopts_live_calls_closes_lost_ones_and_skips_a_bad_one(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    first = await start_app()
    bad, bad_callee = await connected_inbound(first, "1715000000.1")  # the oldest record
    inbound, inbound_callee = await connected_inbound(first, "1715000000.2")
    outbound, outbound_callee = await connected_outbound(first, "1715000000.3")
    lost, lost_callee = await connected_inbound(first, "1715000000.4")
    await first.manager.shutdown(detach=True)
    await first.close()
    fake = first.fake
    await fake.wait_until(lambda: fake.open_sockets == 0)
    # While no app was connected: two calls ended, and one record names a rate that
    # does not exist (it cannot be settled).
    for channel in ("1715000000.1", bad_callee, "1715000000.4", lost_callee):
        del fake.channels[channel]
    await first.store.set_charge_state(bad.call_id, ChargeState.AUTHORIZED, rate_id=9999)
    bad_hold = await first.wallet.hold_of(bad.call_id)
    asked = len(fake.requests)

    with caplog.at_level(logging.ERROR, logger="callcontrol.calls.manager"):
        second = await start_app()  # adopt() runs before the first event is read

    live = {
        "1715000000.2": inbound_callee,
        "1715000000.3": outbound_callee,
    }
    assert fake.subscriptions == {f"channel:{cid}" for pair in live.items() for cid in pair}
    assert set(second.manager.calls) == {inbound.call_id, outbound.call_id}
    assert all(isinstance(c, AdoptedCall) for c in second.manager.calls.values())
    # Charging resumed: each adopted call's first tick sets the PBX limit again.
    await fake.wait_until(lambda: limited_since(fake, asked) == {*live, *live.values()})

    closed = await second.store.get(lost.call_id)
    assert closed is not None and not closed.is_open
    assert closed.ended_by is EndedBy.PBX
    assert closed.disposition == Disposition.ANSWERED
    assert closed.charge_state == ChargeState.SETTLED
    assert await second.wallet.hold_of(lost.call_id) == 0

    assert await second.store.is_open(bad.call_id)  # skipped: logged, left as it was
    assert await second.wallet.hold_of(bad.call_id) == bad_hold
    assert [r.getMessage() for r in caplog.records] == [
        f"could not re-adopt or close the call: call {bad.call_id}: its rate 9999 is missing"
    ]

    adopted = dict(second.manager.calls)
    second.clock.advance(10)
    await second.hang_up("1715000000.2")  # the carrier's caller
    await second.hang_up(outbound_callee)  # the far end of alice's call
    inbound_record = await second.ended(adopted[inbound.call_id])
    outbound_record = await second.ended(adopted[outbound.call_id])

    assert inbound_record.ended_by is EndedBy.CALLER
    assert outbound_record.ended_by is EndedBy.CALLEE
    assert fake.channels == {}  # the other sides were hung up
    await charged_once(second, inbound_record, INBOUND_FEE, INBOUND_PER_SECOND)
    await charged_once(second, outbound_record, OUTBOUND_FEE, OUTBOUND_PER_SECOND)
    assert [h.call_id for h in await second.wallet.open_holds()] == [bad.call_id]
    assert await second.wallet.audit() == []


def limited_since(fake: FakeAri, asked: int) -> set[str]:
    """The channels whose paid time (TIMEOUT(absolute)) was set since request ``asked``."""
    return {
        r.path.split("/")[3]
        for r in fake.requests[asked:]
        if r.path.endswith("/variable") and r.query["variable"] == "TIMEOUT(absolute)"
    }


async def charged_once(app: App, record: CallRecord, fee: int, per_second: int) -> None:
    """Settled by the rate it started with, the ledger agreeing, at least the 10 s talked
    after the restart (plus however long the restart took)."""
    assert record.disposition == Disposition.ANSWERED
    assert record.charge_state == ChargeState.SETTLED
    assert record.billable_seconds is not None and 10 <= record.billable_seconds < 60
    assert record.cost_micro == fee + per_second * record.billable_seconds
    assert await app.wallet.charged_for(record.call_id) == record.cost_micro
    assert await app.wallet.hold_of(record.call_id) == 0


async def test_a_tagged_channel_of_a_finished_call_is_hung_up_at_connect(
    start_app: StartApp,
) -> None:
    first = await start_app()
    call, callee = await connected_inbound(first, "1715000000.1")
    await first.hang_up("1715000000.1")
    await first.ended(call)
    await first.close()
    # Asterisk lost the hangup of alice's leg: her channel is still up, still tagged.
    first.fake.add_channel(callee)
    await first.fake.wait_until(lambda: first.fake.open_sockets == 0)

    second = await start_app()
    await second.request("DELETE", f"/ari/channels/{callee}")
    assert second.manager.calls == {}


async def test_a_dialplan_driven_call_is_left_to_the_agi_server(start_app: StartApp) -> None:
    """An AGI call (no channel the ARI app tags) is neither re-adopted nor closed by the
    crash rule when the app connects: the AGI server settles it."""
    from callcontrol.agi.calls import AgiCalls, CallRequest, Status, new_agi_call_id
    from callcontrol.billing.service import ChargingService
    from callcontrol.billing.session import CallCharging
    from callcontrol.domain.call_records import CallDirection

    first = await start_app()
    agi = AgiCalls(
        first.store,
        CallCharging(ChargingService(first.db), first.store),
        max_duration=60,
        country="GB",
    )
    call_id = new_agi_call_id()
    request = CallRequest(call_id, CallDirection.INBOUND, ROUTED, "+15551234567", "1.1")
    assert (await agi.authorize(request)).status is Status.OK
    held = await first.wallet.hold_of(call_id)
    await first.close()
    second = await start_app()  # adopt() runs before the first event is read
    assert second.manager.calls == {}
    assert await second.store.is_open(call_id)
    assert await second.wallet.hold_of(call_id) == held == INBOUND_FEE + 60 * INBOUND_PER_SECOND


async def test_an_app_closes_only_its_own_pbx_s_lost_calls(start_app: StartApp) -> None:
    """Two PBXes on one database: the app of PBX b, starting, does not see the channels
    of PBX a's calls and must not settle them as lost; a's own restart does. A record
    written before records named their PBX (NULL) is every node's."""
    first = await start_app(pbx_node="a")
    call, callee = await connected_inbound(first, "1715000000.1")
    await first.manager.shutdown(detach=True)
    await first.close()
    legacy_app = await start_app()  # no node: as before migration 0007
    legacy, legacy_callee = await connected_inbound(legacy_app, "1715000000.2")
    await legacy_app.manager.shutdown(detach=True)
    await legacy_app.close()
    fake = first.fake
    await fake.wait_until(lambda: fake.open_sockets == 0)
    record = await first.store.get(call.call_id)
    assert record is not None and record.pbx_node == "a"
    held = await first.wallet.hold_of(call.call_id)
    # PBX b's ARI lists none of these channels: they live on another Asterisk (a's
    # call) or are gone (the legacy one).
    for channel in ("1715000000.1", callee, "1715000000.2", legacy_callee):
        del fake.channels[channel]

    other = await start_app(pbx_node="b")
    assert other.manager.calls == {}
    assert await other.store.is_open(call.call_id)  # a's call: untouched
    assert await other.wallet.hold_of(call.call_id) == held > 0
    closed = await other.store.get(legacy.call_id)
    assert closed is not None and closed.ended_by is EndedBy.PBX  # legacy: b's as well
    await other.close()

    again = await start_app(pbx_node="a")  # a's app restarts: its call ended meanwhile
    lost = await again.store.get(call.call_id)
    assert lost is not None and lost.ended_by is EndedBy.PBX
    assert lost.charge_state == ChargeState.SETTLED
    assert await again.wallet.hold_of(call.call_id) == 0
    assert await again.wallet.open_holds() == []
    assert await again.wallet.audit() == []


async def test_a_legacy_live_call_re_adopted_takes_its_pbx_s_name(start_app: StartApp) -> None:
    """A record written before records named their PBX, whose channels the app of PBX a
    finds: a names it, so the app of PBX b (added later) does not take it for lost."""
    legacy_app = await start_app()
    call, callee = await connected_inbound(legacy_app, "1715000000.1")
    await legacy_app.manager.shutdown(detach=True)
    await legacy_app.close()
    fake = legacy_app.fake
    await fake.wait_until(lambda: fake.open_sockets == 0)

    first = await start_app(pbx_node="a")
    assert set(first.manager.calls) == {call.call_id}
    record = await first.store.get(call.call_id)
    assert record is not None and record.pbx_node == "a"
    await first.manager.shutdown(detach=True)
    await first.close()
    await fake.wait_until(lambda: fake.open_sockets == 0)
    for channel in ("1715000000.1", callee):  # b's ARI does not list a's channels
        del fake.channels[channel]

    other = await start_app(pbx_node="b")
    assert other.manager.calls == {}
    assert await other.store.is_open(call.call_id)
    assert await other.wallet.hold_of(call.call_id) > 0
