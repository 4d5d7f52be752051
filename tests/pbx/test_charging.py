"""Real-time charging through the real PBX: the PBX cuts calls when the credits end.

Rates here are steep and per second (6 credits a minute = 0.1 a second, 1/1
increments) so that a few seconds of talk use a wallet up; the charging interval is
the shortest allowed (10 s).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import ROUTED, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.config import Settings
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


async def balance_and_audit(org: Org) -> tuple[int, list[str]]:
    wallet, db = await org.wallet()
    try:
        return (await wallet.balance()).balance, await wallet.audit()
    finally:
        await db.dispose()


async def talk_seconds(org: Org) -> float:
    record = await org.record()
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
        await app.wait_log(r"settled: \d+ s talk")
        await app.wait_log(r"call ended: answered, ended by system")
    finally:
        await app.stop()
    assert 4.0 <= await talk_seconds(org) <= 6.0
    record = await org.record()
    assert record.cost_micro == MICRO // 2  # exactly what was used
    assert record.billable_seconds == 5
    assert record.charge_state == "settled"
    assert await balance_and_audit(org) == (0, [])


async def test_credits_added_mid_call_extend_it(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 2)
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED)
        await app.wait_log(r"paid until 5 s \(credits end there")
        wallet, db = await org.wallet()
        try:
            await wallet.credit(MICRO // 2, LedgerKind.PURCHASE, "top-up", "test:topup", "")
        finally:
            await db.dispose()
        await app.wait_log(r"paid until 10 s")
        c = await call.wait(40)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await app.wait_log(r"settled: \d+ s talk")
        await app.wait_log(r"call ended: answered")
    finally:
        await app.stop()
    assert 9.0 <= await talk_seconds(org) <= 11.0
    assert (await org.record()).cost_micro == MICRO
    assert await balance_and_audit(org) == (0, [])


async def test_app_killed_mid_call_pbx_still_cuts_and_restart_settles(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await charging_org(pbx, tmp_path, credits=MICRO // 2)
    app = await AppProcess(org).start()
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED)
    await app.wait_log(r"paid until 5 s")
    await app.stop(signal.SIGKILL)
    c = await call.wait(40)  # Asterisk ends it alone, at the paid second
    assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    second = AppProcess(org, "app2")
    await second.start()
    try:
        await second.wait_log(r"settled: 5 s talk")
        await second.wait_log(r"the call ended while the app was away")
    finally:
        await second.stop()
    record = await org.record()
    assert (record.cost_micro, record.charge_state, record.ended_by) == (
        MICRO // 2,
        "settled",
        "pbx",
    )
    assert await balance_and_audit(org) == (0, [])


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
        await app.wait_log(r"call ended: refused_no_credit")
        phone.kill()
        assert (await phone.wait(5)).received() == []  # the phone never rang
    finally:
        await app.stop()
    record = await org.record()
    assert record.answered_at is None and record.charge_state == "refused_no_credit"
    assert await balance_and_audit(org) == (MICRO // 20, [])


async def test_no_rate_refuses_the_call(pbx: Settings, tmp_path: Path, carrier: Carrier) -> None:
    org = await charging_org(pbx, tmp_path, credits=10 * MICRO)
    app = await AppProcess(org).start()
    try:
        c = await (await carrier.call(JAPAN, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 503")
        await app.wait_log(r"call ended: refused_no_rate")
    finally:
        await app.stop()
    assert (await org.record()).charge_state == "refused_no_rate"
    assert await balance_and_audit(org) == (10 * MICRO, [])


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
        await app.wait_log(r"rate \d+ \(inbound GB toll_free\)")
        match = await app.wait_log(r"settled: (\d+) s talk, (\d+) s billable, cost ([\d.]+)")
        await app.wait_log(r"call ended: answered")
    finally:
        await app.stop()
    seconds = int(match.group(1))
    # 12 credits a minute = 0.2 a second, plus the 0.05 connection fee
    expected = MICRO // 20 + seconds * MICRO // 5
    record = await org.record()
    assert record.cost_micro == expected
    balance, problems = await balance_and_audit(org)
    assert (balance, problems) == (10 * MICRO - expected, [])


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
        warned = await app.wait_log(r"warned the callee: the credits end in (\d) s")
        assert int(warned.group(1)) in (2, 3)
        await app.wait_log(r"call ended: answered, ended by system")
        assert (await call.wait(30)).ok
        assert (await phone.wait(30)).ok
    finally:
        await app.stop()
    assert 4.0 <= await talk_seconds(org) <= 6.0


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
        await app.wait_count(r"call ended: answered", 3)
    finally:
        await app.stop()
    records = [r for r in await org.records() if r.direction == "inbound"]
    assert len(records) == 3
    for record in records:
        assert record.answered_at is not None and record.charge_state == "settled"
        assert record.cost_micro is not None and record.cost_micro >= MICRO // 100
        assert record.billable_seconds is not None and record.billable_seconds >= 1
    spent = sum(r.cost_micro or 0 for r in records)
    assert spent <= 9 * MICRO // 100
    assert await balance_and_audit(org) == (9 * MICRO // 100 - spent, [])


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
    await app.wait_log(r"paid until 10 s")
    await app.stop(signal.SIGKILL)
    second = AppProcess(org, "app2")
    await second.start()
    try:
        await second.wait_log(r"re-adopted the call")
        await second.wait_log(r"paid until 15 s \(credits end there")
        warned = await second.wait_log(r"warned the callee: the credits end in (\d) s")
        assert int(warned.group(1)) in (2, 3)
        c = await call.wait(40)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await second.wait_log(r"call ended: answered, ended by system")
    finally:
        await second.stop()
    record = await org.record()
    assert (record.cost_micro, record.charge_state) == (3 * MICRO // 2, "settled")
    assert await balance_and_audit(org) == (0, [])
