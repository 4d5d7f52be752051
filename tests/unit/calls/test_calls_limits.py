"""PbxLimits: the paid time goes to the PBX, which ends the call at the paid second."""

from __future__ import annotations

from pathlib import Path

from calls_harness import INBOUND_FEE, INBOUND_PER_SECOND, ROUTED, App, StartApp, make_org

from callcontrol.calls.call import Call
from callcontrol.calls.limits import PbxLimits
from callcontrol.domain.call_records import Disposition, EndedBy

CARRIER = "1715000000.1"


async def test_the_paid_time_is_set_on_the_live_channels_only(app: App) -> None:
    call = Call("c0ffee", app.ctx, recorded=False)
    app.fake.add_channel("caller-1")
    call.channels = {"caller": "caller-1", "callee": "callee-1", "other": "hung-up-1"}
    call.gone = {"callee"}
    limits = PbxLimits(call, app.ari, app.ctx.media, "callee")

    await limits.set_paid_time(12.5)  # "hung-up-1" answers 404: it hung up meanwhile

    assert app.variables_set("caller-1", "TIMEOUT(absolute)") == ["12.500"]
    assert app.requests("POST", "/ari/channels/callee-1/variable") == []
    app.fake.fail_next(500)
    await limits.set_paid_time(3.0, "caller-1")  # logged, never raised into the call
    assert app.variables_set("caller-1", "TIMEOUT(absolute)") == ["12.500", "3.000"]


async def test_a_call_ends_at_the_second_its_credits_pay_for(
    start_app: StartApp, migrated: Path, tmp_path: Path
) -> None:
    org = tmp_path / "org"
    org.mkdir()
    credits = INBOUND_FEE + 30 * INBOUND_PER_SECOND  # the fee and 30 s of talk
    app = await start_app(await make_org(migrated, org, credits=credits))
    call = await app.carrier_call(CARRIER, ROUTED)
    callee = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.request("POST", f"/ari/channels/{callee}/variable", count=1)
    assert app.variables_set(CARRIER, "TIMEOUT(absolute)") == ["30.000"]
    assert app.variables_set(callee, "TIMEOUT(absolute)") == ["30.000"]  # once

    app.clock.advance(30)
    await app.hang_up(CARRIER)  # Asterisk enforces TIMEOUT(absolute)
    record = await app.ended(call)

    assert record.disposition == Disposition.ANSWERED
    assert record.ended_by is EndedBy.SYSTEM  # not the caller: the credits ran out
    assert record.billable_seconds == 30
    assert record.cost_micro == credits
    wallet = await app.wallet.balance()
    assert (wallet.balance, wallet.held) == (0, 0)
    assert await app.wallet.audit() == []
