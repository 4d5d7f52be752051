"""Auto-recharge with live calls through the real PBX (offline provider, test cards).

Rates are steep (30 credits a minute = 0.5 a second, per second) and the charging interval
the shortest (10 s, so a slice is 5 credits): a few seconds of talk take a wallet below
the 2-credit threshold. The recharge happens beside the calls; the credits it brings
extend them through the app's wallet watch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pbx_harness import ROUTED, AppProcess, Carrier, Org, Phones, make_org
from test_resilience import pg_database  # noqa: F401 (a fixture)

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.services import open_services

pytestmark = pytest.mark.pbx

RATES_CSV = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,30,0,1/1,0.5 credit a second
"""
RECHARGED = r"payment \w+ succeeded: \+(\d+)\.000000 credits \(auto_recharge\)"


async def funded_org(
    pbx: Settings,
    tmp_path: Path,
    credits: int,
    *,
    card: str = "visa",
    amount: int = 10,
    cap: int | None = None,
    db_url: str | None = None,
) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    org = await make_org(
        pbx,
        tmp_path,
        db_url,
        credits=credits * MICRO,
        rates=rates,
        env={"CALLCONTROL_CHARGE_INTERVAL": "10"},
    )
    settings = Settings(database_url=org.db_url, data_dir=org.data_dir)
    async with open_services(settings) as services:
        method = await services.funding.add_test_card(card)
        await services.funding.auto_recharge_on(
            threshold_micro=2 * MICRO,
            amount_micro=amount * MICRO,
            method_id=method.id,
            monthly_cap_micro=cap * MICRO if cap else None,
        )
    return org


async def recharges_and_audit(org: Org) -> tuple[list[int], int, list[str]]:
    """The auto-recharge entries (credits), the balance and the audit's problems."""
    wallet, db = await org.wallet()
    try:
        entries = await wallet.ledger(1000)
        recharged = [e.amount // MICRO for e in entries if e.kind == LedgerKind.AUTO_RECHARGE]
        return recharged, (await wallet.balance()).balance, await wallet.audit()
    finally:
        await db.dispose()


async def auto_recharge_state(org: Org) -> tuple[bool, str | None]:
    async with open_services(Settings(database_url=org.db_url, data_dir=org.data_dir)) as s:
        auto = (await s.funding.status()).auto_recharge
    return auto.enabled, auto.off_reason


async def talk_seconds(org: Org) -> float:
    record = await org.latest_record()
    assert record.answered_at is not None and record.ended_at is not None
    return (record.ended_at - record.answered_at).total_seconds()


async def test_a_call_that_drains_the_wallet_is_recharged_once_and_goes_on(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await funded_org(pbx, tmp_path, credits=3)  # 6 s of talk without a recharge
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(ROUTED, hang_up_after_ms=10_000)).wait(40)
        assert c.ok, c.explain()  # the caller hung up at 10 s: never cut
        assert (await phone.wait(30)).ok
        assert (await app.wait_log(RECHARGED)).group(1) == "10"
        await app.wait_log(r"call ended: answered, ended by caller")
    finally:
        await app.stop()
    assert 9.5 <= await talk_seconds(org) <= 11.0
    record = await org.latest_record()
    cost, billed = record.cost_micro, record.billable_seconds
    # Whole seconds of talk are billed (a partial second is not, as Asterisk's billsec):
    # 9 or 10 of them, well beyond the 6 s that the 3 credits paid for before the
    # recharge, at 0.5 credit each.
    assert billed is not None and billed >= 9, billed
    assert cost == billed * MICRO // 2
    assert await recharges_and_audit(org) == ([10], 13 * MICRO - cost, [])


async def test_twenty_calls_and_two_processes_on_postgresql_recharge_once(
    pbx: Settings,
    tmp_path: Path,
    pg_database: str,  # noqa: F811
    phones: Phones,
    carrier: Carrier,
) -> None:
    """20 calls take their slices at once and cross the threshold together, while a
    second app process (same database, another Stasis app: it takes no calls) watches
    the same wallet: exactly one recharge."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    org = await funded_org(pbx, tmp_path, credits=101, db_url=url)  # 20 slices of 5 = 100
    app = await AppProcess(org).start()
    other = AppProcess(
        org,
        "app2",
        env={
            "CALLCONTROL_ARI_APP": "callcontrol-watcher",
            "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8098",
        },
    )
    await other.start()
    try:
        phone = await phones.answering("alice", calls=20)
        calls = await asyncio.gather(
            *(carrier.call(ROUTED, hang_up_after_ms=4000) for _ in range(20))
        )
        for call in calls:
            c = await call.wait(60)
            assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await app.wait_count(r"call ended: answered, ended by caller", 20, timeout=60)
    finally:
        await other.stop()
        await app.stop()
    recharged, balance, problems = await recharges_and_audit(org)
    assert (recharged, problems) == ([10], [])
    records = [r for r in await org.records() if r.direction == "inbound"]
    assert len(records) == 20 and all(r.charge_state == "settled" for r in records)
    assert balance == 111 * MICRO - sum(r.cost_micro or 0 for r in records)


async def test_a_declined_card_leaves_the_call_cut_at_the_paid_second(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await funded_org(pbx, tmp_path, credits=3, card="expired")  # 6 s
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(ROUTED)).wait(40)  # waits for the PBX's BYE
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await app.wait_log(r"auto-recharge switched off: card declined: expired_card")
        await app.wait_log(r"notification auto_recharge_off")
        await app.wait_log(r"call ended: answered, ended by system")
    finally:
        await app.stop()
    assert 5.0 <= await talk_seconds(org) <= 7.0
    assert await recharges_and_audit(org) == ([], 0, [])
    enabled, reason = await auto_recharge_state(org)
    assert not enabled and reason is not None and "expired_card" in reason


async def test_the_monthly_cap_stops_recharges_and_the_call_ends_when_paid_out(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await funded_org(pbx, tmp_path, credits=1, amount=5, cap=5)  # 2 s + one recharge
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED)  # waits for the PBX's BYE
        assert (await app.wait_log(RECHARGED)).group(1) == "5"
        await app.wait_log(r"auto-recharge: the monthly cap 5\.000000 is reached", timeout=30)
        c = await call.wait(40)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await app.wait_log(r"call ended: answered, ended by system")
    finally:
        await app.stop()
    assert 11.0 <= await talk_seconds(org) <= 13.0  # 6 credits at 0.5 a second
    assert await recharges_and_audit(org) == ([5], 0, [])
    assert (await auto_recharge_state(org))[0]  # still on: next month it recharges again
