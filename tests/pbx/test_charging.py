"""Real-time charging through the real PBX: the PBX cuts calls when the credits end.

Rates here are steep and per second (6 credits a minute = 0.1 a second, 1/1
increments) so that a few seconds of talk use a wallet up; the charging interval is
the shortest allowed (10 s).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from log_contract import RELEASED, WARNED
from pbx_harness import ROUTED, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.config import Settings
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import MICRO, LedgerKind

pytestmark = pytest.mark.pbx

TOLL_FREE = "+448001111111"
JAPAN = "+81312345678"

RATES_CSV = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,local,6,0,1/1,steep per-second test rate
inbound,,GB,toll_free,12,0.05,1/1,toll-free inbound costs more
outbound,,GB,,6,0,1/1,outbound
"""


async def charging_org(pbx: Settings, tmp_path: Path, credits: int) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    org = await make_org(
        pbx, tmp_path, credits=credits, rates=rates, env={"CALLCONTROL_CHARGE_INTERVAL": "10"}
    )
    directory, db = await org.directory()
    try:
        await directory.add_number(TOLL_FREE, "toll_free")
        await directory.route_to_user(TOLL_FREE, "alice")
        await directory.add_number(JAPAN)
        await directory.route_to_user(JAPAN, "alice")
    finally:
        await db.dispose()
    return org


def talk_seconds(record: CallRecord) -> float:
    assert record.answered_at is not None and record.ended_at is not None
    return (record.ended_at - record.answered_at).total_seconds()


async def test_the_pbx_ends_the_call_when_the_credits_run_out(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 2)  # 0.5 credits = 5 s
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(ROUTED)).wait(40)  # waits for the PBX's BYE
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "system")
    assert 4.0 <= talk_seconds(record) <= 6.0
    assert record.cost_micro == MICRO // 2  # exactly what was used
    assert record.billable_seconds == 5
    assert record.charge_state == "settled"
    assert await org.wallet_state() == (0, 0, [])


async def test_credits_added_mid_call_extend_it(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 2)
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED)
        call_id = await app.connected("alice")
        assert await org.paid_for(call_id) == MICRO // 2  # paid until 5 s: all there is
        wallet, db = await org.wallet()
        try:
            await wallet.credit(MICRO // 2, LedgerKind.PURCHASE, "top-up", "test:topup", "")
        finally:
            await db.dispose()
        c = await call.wait(40)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        assert await app.calls_released(1) == [call_id]
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "system")
    assert 9.0 <= talk_seconds(record) <= 11.0  # the top-up paid 5 s more
    assert (record.cost_micro, record.billable_seconds) == (MICRO, 10)
    assert await org.wallet_state() == (0, 0, [])


async def test_app_killed_mid_call_pbx_still_cuts_and_restart_settles(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 2)
    app = await AppProcess(org).start()
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED)
    call_id = await app.connected("alice")
    assert await org.paid_for(call_id) == MICRO // 2  # paid until 5 s
    await app.stop(signal.SIGKILL)
    c = await call.wait(40)  # Asterisk ends it alone, at the paid second
    assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    second = AppProcess(org, "app2")
    await second.start()
    try:
        # Its start-up finds the call gone and closes it by the crash rule: no event.
        record = await org.wait_record(call_id, lambda r: r.ended_at is not None)
    finally:
        await second.stop()
    assert (record.cost_micro, record.charge_state, record.ended_by) == (
        MICRO // 2,
        "settled",
        "pbx",
    )
    assert (record.disposition, record.billable_seconds) == ("answered", 5)
    assert second.lines and not any(RELEASED.search(line) for line in second.lines)
    assert await org.wallet_state() == (0, 0, [])


async def test_not_enough_credits_refuses_the_call_uncharged(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 20)  # 0.05: below 1 s of toll-free
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(TOLL_FREE, refused=True)).wait(30)
        assert c.ok, c.explain()
        received = c.received()
        assert "SIP/2.0 183 Session Progress" in received
        assert received[-1].startswith("SIP/2.0 503")
        [call_id] = await app.calls_released(1)
        phone.kill()
        assert (await phone.wait(5)).received() == []  # the phone never rang
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert record.answered_at is None and record.charge_state == "refused_no_credit"
    assert record.disposition == "refused_no_credit"
    assert await org.wallet_state() == (MICRO // 20, 0, [])


async def test_no_rate_refuses_the_call(pbx: Settings, tmp_path: Path, carrier: Carrier) -> None:
    org = await charging_org(pbx, tmp_path, credits=10 * MICRO)
    app = await AppProcess(org).start()
    try:
        c = await (await carrier.call(JAPAN, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 503")
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.charge_state) == ("refused_no_rate", "refused_no_rate")
    assert await org.wallet_state() == (10 * MICRO, 0, [])


async def test_inbound_toll_free_is_charged_the_toll_free_rate(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=10 * MICRO)
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(TOLL_FREE, hang_up_after_ms=2000)).wait(30)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        [call_id] = await app.calls_released(1)
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by, record.charge_state) == (
        "answered",
        "caller",
        "settled",
    )
    seconds = record.billable_seconds
    assert seconds is not None and 1 <= seconds <= 3  # about 2 s of talk, per second
    # The toll-free rate: 12 credits a minute = 0.2 a second, plus the 0.05 fee (the
    # local rate would be 0.1 a second, no fee)
    expected = MICRO // 20 + seconds * MICRO // 5
    assert record.cost_micro == expected
    assert await org.wallet_state() == (10 * MICRO - expected, 0, [])


async def test_the_user_is_warned_before_the_credits_run_out(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    org = await make_org(
        pbx,
        tmp_path,
        credits=MICRO // 2,  # 5 s
        rates=rates,
        env={"CALLCONTROL_CHARGE_INTERVAL": "10", "CALLCONTROL_CREDIT_WARNING": "3"},
    )
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED)
        call_id = await app.connected("alice")
        warned = await app.wait_log(WARNED)  # only the log shows the prompt was played
        assert warned["role"] == "callee" and int(warned["seconds"]) in (2, 3)
        assert (await call.wait(30)).ok
        assert (await phone.wait(30)).ok
        assert await app.calls_released(1) == [call_id]
    finally:
        await app.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "system")
    assert 4.0 <= talk_seconds(record) <= 6.0


async def test_three_calls_share_the_last_credits_and_every_answered_call_is_paid(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    """0.09 credits at 0.6 a minute (9 s), three calls at once. Each call's first
    second is reserved before the phone rings; the first to answer does not take it
    all. (Before: the second was answered and cut at 0 s, the third refused.)"""
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV.replace("inbound,,GB,local,6,0", "inbound,,GB,local,0.6,0"))
    org = await make_org(
        pbx,
        tmp_path,
        credits=9 * MICRO // 100,
        rates=rates,
        env={"CALLCONTROL_CHARGE_INTERVAL": "10"},
    )
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice", calls=3)
        calls = [await carrier.call(ROUTED) for _ in range(3)]  # each waits for the PBX's BYE
        for call in calls:
            c = await call.wait(40)
            assert c.ok, c.explain()  # answered, then ended by the PBX
        assert (await phone.wait(30)).ok
        released = await app.calls_released(3)
    finally:
        await app.stop()
    records = [await org.record(call_id) for call_id in released]
    assert [r.direction for r in await org.records()] == ["inbound"] * 3
    for record in records:
        assert (record.disposition, record.ended_by) == ("answered", "system")
        assert record.answered_at is not None and record.charge_state == "settled"
        assert record.cost_micro is not None and record.cost_micro >= MICRO // 100
        assert record.billable_seconds is not None and record.billable_seconds >= 1
    spent = sum(r.cost_micro or 0 for r in records)
    assert spent <= 9 * MICRO // 100
    assert await org.wallet_state() == (9 * MICRO // 100 - spent, 0, [])


async def test_a_readopted_call_warns_the_user_before_its_credits_run_out(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    org = await make_org(
        pbx,
        tmp_path,
        credits=3 * MICRO // 2,  # 15 s at 0.1 a second
        rates=rates,
        env={"CALLCONTROL_CHARGE_INTERVAL": "10", "CALLCONTROL_CREDIT_WARNING": "3"},
    )
    app = await AppProcess(org).start()
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED)
    call_id = await app.connected("alice")
    assert await org.paid_for(call_id) == MICRO  # paid until 10 s, of 15
    await app.stop(signal.SIGKILL)
    second = AppProcess(org, "app2")
    await second.start()
    try:
        # The new process resumes the call, holds the rest (15 s) and warns before its end.
        warned = await second.wait_log(WARNED)
        assert warned["role"] == "callee" and int(warned["seconds"]) in (2, 3)
        c = await call.wait(40)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        assert await second.calls_released(1) == [call_id]  # re-adopted, run to its end
    finally:
        await second.stop()
    record = await org.record(call_id)
    assert (record.cost_micro, record.charge_state) == (3 * MICRO // 2, "settled")
    assert (record.disposition, record.ended_by, record.billable_seconds) == (
        "answered",
        "system",
        15,
    )
    assert await org.wallet_state() == (0, 0, [])
