"""OutboundCall over the fake ARI server: out through the carrier, internal, refused."""

from __future__ import annotations

from calls_harness import ABROAD, OUTBOUND_FEE, OUTBOUND_PER_SECOND, ROUTED, App

from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState

PHONE = "1715000000.7"


async def test_a_user_calls_out_presenting_their_number_and_pays_by_the_destination(
    app: App,
) -> None:
    before = await app.wallet.balance()
    call = await app.phone_call(PHONE, "1001", ABROAD)
    originate = await app.originated(call)
    assert originate.query["endpoint"] == f"PJSIP/{ABROAD}@carrier"
    assert originate.query["callerId"] == ROUTED  # alice's own number
    assert originate.json == {
        "variables": {"CALLCONTROL_CALL_ID": call.call_id, "CALLCONTROL_ROLE": "callee"}
    }

    far_end = await app.answer(call)
    await app.connected(call, far_end)
    assert app.requests("POST", f"/ari/channels/{PHONE}/answer")
    app.clock.advance(20)
    await app.hang_up(far_end)
    record = await app.ended(call)

    assert app.requests("DELETE", f"/ari/channels/{PHONE}")  # alice's phone is released
    assert record.direction is CallDirection.OUTBOUND
    assert (record.caller, record.callee) == ("1001", ABROAD)
    assert record.user_name == "alice"  # who placed it, not the number dialled
    assert record.disposition == Disposition.ANSWERED
    assert record.ended_by is EndedBy.CALLEE
    assert record.charge_state == ChargeState.SETTLED
    assert record.cost_micro == OUTBOUND_FEE + 20 * OUTBOUND_PER_SECOND
    after = await app.wallet.balance()
    assert (after.balance, after.held) == (before.balance - record.cost_micro, 0)
    assert await app.wallet.audit() == []


async def test_a_call_to_another_users_extension_is_free(app: App) -> None:
    before = await app.wallet.balance()
    call = await app.phone_call(PHONE, "1001", "1002")
    originate = await app.originated(call)
    assert originate.query["endpoint"] == "PJSIP/1002"
    assert originate.query["callerId"] == '"alice" <1001>'

    bob = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    app.clock.advance(30)
    await app.hang_up(PHONE)
    record = await app.ended(call)

    assert app.requests("DELETE", f"/ari/channels/{bob}")
    assert record.direction is CallDirection.INTERNAL
    assert record.user_name == "bob"
    assert record.ended_by is EndedBy.CALLER
    assert record.rate_id is None and record.cost_micro is None
    assert await app.wallet.balance() == before


async def test_a_user_without_a_number_of_their_own_cannot_call_out(app: App) -> None:
    call = await app.phone_call(PHONE, "1002", ABROAD)  # bob: no number rings him
    play = await app.finish_playback(PHONE)
    assert play.query["media"] == "sound:cannot-complete-as-dialed"
    record = await app.ended(call)

    assert app.requests("POST", "/ari/channels") == []
    assert [r.query for r in app.requests("DELETE", f"/ari/channels/{PHONE}")] == [
        {"reason": "unallocated"}
    ]
    assert record.disposition == Disposition.NOT_ALLOWED
    assert await app.wallet.open_holds() == []


async def test_digits_that_are_no_number_are_refused_as_dialed(app: App) -> None:
    call = await app.phone_call(PHONE, "1001", "4930123456789")  # no + or 00
    await app.finish_playback(PHONE)
    record = await app.ended(call)

    assert app.requests("POST", "/ari/channels") == []
    assert record.disposition == Disposition.INVALID_NUMBER
