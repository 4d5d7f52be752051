"""Calls from users' phones: internal (free) and out through the carrier (charged)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from pbx_harness import ROUTED, USERS, AppProcess, Org, Phones, make_org

from callcontrol.billing.service import ChargingService
from callcontrol.config import Settings
from callcontrol.domain.money import MICRO
from callcontrol.pbx.sipp import (
    CARRIER_ANSWERED,
    CARRIER_REFUSED,
    HANG_UP_AFTER,
    WAIT_FOR_BYE,
    SippProcess,
    free_port,
    render,
    run_sipp,
)
from callcontrol.store.db import Database

pytestmark = pytest.mark.pbx

DESTINATION = "+4930123456"  # Berlin
RATES_CSV = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,6,0,1/1,inbound
outbound,,DE,,6,0.1,1/1,Germany (steep for the test)
"""
CARRIER_PORT = 5070  # the carrier trunk's address in dialplan/pjsip.conf


async def outbound_org(pbx: Settings, tmp_path: Path) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    return await make_org(pbx, tmp_path, credits=10 * MICRO, rates=rates)


async def user_dials(
    tmp_path: Path, user: str, number: str, *, hang_up_after_ms: int = 0, refused: bool = False
) -> SippProcess:
    """A registered user's phone (sipp UAC, digest auth on the INVITE) dials ``number``."""
    ext, password = USERS[user]
    if refused:
        final = CARRIER_REFUSED
    else:
        final = CARRIER_ANSWERED.format(
            after_ack=HANG_UP_AFTER.format(ms=hang_up_after_ms)
            if hang_up_after_ms
            else WAIT_FOR_BYE.format(ms=30000)
        )
    xml = render("phone_call.xml", extension=ext, final=final)
    return await run_sipp(
        tmp_path / "sipp",
        f"call-{user}-{number}",
        xml,
        service=number,
        auth=(ext, password),
        local_port=free_port(),
        timeout_s=40,
    )


async def carrier_answers(tmp_path: Path) -> SippProcess:
    xml = render("phone_answer.xml", ring_ms=200, after_ack=WAIT_FOR_BYE.format(ms=30000))
    return await run_sipp(
        tmp_path / "sipp", "carrier-uas", xml, server=True, local_port=CARRIER_PORT, timeout_s=40
    )


async def test_a_user_calls_out_presenting_their_number_and_is_charged(
    pbx: Settings, tmp_path: Path
) -> None:
    org = await outbound_org(pbx, tmp_path)
    app = await AppProcess(org).start()
    try:
        far_end = await carrier_answers(tmp_path)
        call = await user_dials(tmp_path, "alice", DESTINATION, hang_up_after_ms=2000)
        c, f = await call.wait(40), await far_end.wait(40)
        assert c.ok, c.explain()
        assert f.ok, f.explain()
        invite = f.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
        assert invite.startswith(DESTINATION)
        assert ROUTED in invite  # alice presents the number that rings her
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.direction, record.disposition, record.ended_by) == (
        "outbound",
        "answered",
        "caller",
    )
    assert record.charge_state == "settled"
    seconds = record.billable_seconds
    assert seconds is not None and 1 <= seconds <= 3  # about 2 s of talk, per second
    # The DE rate: a 0.1 fee and 0.1 a second (the only outbound rate)
    assert record.cost_micro == MICRO // 10 + seconds * MICRO // 10
    assert await org.wallet_state() == (10 * MICRO - record.cost_micro, 0, [])


async def test_calls_between_users_are_free(pbx: Settings, tmp_path: Path, phones: Phones) -> None:
    org = await outbound_org(pbx, tmp_path)
    app = await AppProcess(org).start()
    try:
        bob = await phones.answering("bob")
        call = await user_dials(tmp_path, "alice", "1002", hang_up_after_ms=1000)
        c, b = await call.wait(40), await bob.wait(40)
        assert c.ok, c.explain()
        assert b.ok, b.explain()
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.direction, record.cost_micro, record.rate_id) == ("internal", None, None)
    assert (record.charge_state, record.user_name) == ("free", "bob")
    assert (record.disposition, record.ended_by) == ("answered", "caller")
    assert await org.wallet_state() == (10 * MICRO, 0, [])


async def test_a_user_without_a_number_cannot_call_out(pbx: Settings, tmp_path: Path) -> None:
    org = await outbound_org(pbx, tmp_path)
    app = await AppProcess(org).start()
    try:
        c = await (await user_dials(tmp_path, "bob", DESTINATION, refused=True)).wait(40)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)  # not_allowed: bob has no number to present
    assert (record.disposition, record.answered_at, record.cost_micro) == (
        "not_allowed",
        None,
        None,
    )
    assert await org.wallet_state() == (10 * MICRO, 0, [])


async def test_app_killed_during_an_outbound_call_restart_charges_it_once_at_its_rate(
    pbx: Settings, tmp_path: Path
) -> None:
    """The review's bug: a re-adopted outbound call was charged 0 and its hold kept.
    Here the rate table also loses the call's rate while the app is down: the call
    keeps the rate it started with."""
    org = await outbound_org(pbx, tmp_path)
    app = await AppProcess(org).start()
    far_end = await carrier_answers(tmp_path)
    call = await user_dials(tmp_path, "alice", DESTINATION, hang_up_after_ms=6000)
    call_id = await app.connected(DESTINATION)
    assert await org.paid_for(call_id) == MICRO // 10 + 60 * MICRO // 10  # paid until 60 s
    await app.stop(signal.SIGKILL)
    no_germany = tmp_path / "no_germany.csv"
    no_germany.write_text(RATES_CSV.splitlines()[0] + "\n" + RATES_CSV.splitlines()[1] + "\n")
    db = Database.from_url(org.db_url)
    try:
        await ChargingService(db).import_rates(no_germany)
    finally:
        await db.dispose()
    second = AppProcess(org, "app2")
    await second.start()
    try:
        c, f = await call.wait(40), await far_end.wait(40)
        assert c.ok, c.explain()
        assert f.ok, f.explain()
        assert await second.calls_released(1) == [call_id]  # re-adopted, run to its end
    finally:
        await second.stop()
    record = await org.record(call_id)
    assert record.direction == "outbound" and record.charge_state == "settled"
    assert (record.disposition, record.ended_by) == ("answered", "caller")
    assert record.billable_seconds is not None and 5 <= record.billable_seconds <= 7
    assert record.cost_micro == MICRO // 10 + record.billable_seconds * MICRO // 10
    wallet, db = await org.wallet()
    try:
        state = await wallet.balance()
        assert (state.balance, state.held) == (10 * MICRO - record.cost_micro, 0)
        assert await wallet.audit() == []
    finally:
        await db.dispose()


async def test_a_call_right_after_a_rates_import_uses_the_new_rates(
    pbx: Settings, tmp_path: Path
) -> None:
    rates = tmp_path / "inbound_only.csv"
    rates.write_text(RATES_CSV.splitlines()[0] + "\n" + RATES_CSV.splitlines()[1] + "\n")
    org = await make_org(pbx, tmp_path, credits=10 * MICRO, rates=rates)
    app = await AppProcess(org).start()
    try:
        with_germany = tmp_path / "rates.csv"
        with_germany.write_text(RATES_CSV)
        db = Database.from_url(org.db_url)
        try:
            await ChargingService(db).import_rates(with_germany)  # as `rates import` does
        finally:
            await db.dispose()
        far_end = await carrier_answers(tmp_path)
        call = await user_dials(tmp_path, "alice", DESTINATION, hang_up_after_ms=1000)
        c, f = await call.wait(40), await far_end.wait(40)
        assert c.ok, c.explain()
        assert f.ok, f.explain()
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "caller")
    assert record.charge_state == "settled" and record.billable_seconds is not None
    assert record.cost_micro == MICRO // 10 + record.billable_seconds * MICRO // 10  # new DE
