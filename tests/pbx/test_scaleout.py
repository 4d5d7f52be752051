"""Scale-out: two Asterisk servers, one app process each, one PostgreSQL database.

Every call is charged exactly once, to the one wallet, whichever PBX carries it; an
app killed mid-call and restarted re-adopts its own call and settles it once, and the
other PBX's live call, whose channels its ARI does not list, is left alone; a rolling
restart (SIGTERM) of the other app keeps its call up and re-adopts it.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from log_contract import RELEASED
from pbx_harness import ROUTED, AppProcess, Carrier, Phones, make_org
from second_pbx import SecondPbx
from test_resilience import pg_database  # noqa: F401 (a fixture)

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO

pytestmark = pytest.mark.pbx

# 6 credits a minute (0.1 a second, by the second); 10 s slices: each call ticks.
RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,6,0,1/1,0.1 credit a second
"""
ADOPTION = r"pbx node (?P<node>\S+): (?P<open>\d+) open call records, (?P<tagged>\d+) tagged calls"


async def test_two_pbxes_one_database_each_call_charged_once_and_a_killed_app_recovers(
    pbx: Settings,
    second_pbx: SecondPbx,
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    org = await make_org(pbx, tmp_path, url, rates=rates, env={"CALLCONTROL_CHARGE_INTERVAL": "10"})
    env_a = {"CALLCONTROL_PBX_NODE": "pbx-a"}
    env_b = {
        "CALLCONTROL_PBX_NODE": "pbx-b",
        "CALLCONTROL_ARI_URL": second_pbx.ari_url,
        "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8098",
    }
    phones_a, phones_b = Phones(tmp_path / "a"), Phones(tmp_path / "b", second_pbx.sip)
    carrier_a, carrier_b = Carrier(tmp_path / "a"), Carrier(tmp_path / "b", second_pbx.sip)
    apps: list[AppProcess] = []
    try:
        app_a = await AppProcess(org, "app-a", env_a).start()
        apps.append(app_a)
        app_b = await AppProcess(org, "app-b", env_b).start()
        apps.append(app_b)
        # Each app provisioned its own PBX from the one database: alice registers on both.
        phone_a = await phones_a.answering("alice")
        phone_b = await phones_b.answering("alice")

        call_a = await carrier_a.call(ROUTED, hang_up_after_ms=10_000)
        call_b = await carrier_b.call(ROUTED, hang_up_after_ms=15_000)
        id_a = await app_a.connected("alice")
        id_b = await app_b.connected("alice")
        assert (await org.record(id_a)).pbx_node == "pbx-a"
        assert (await org.record(id_b)).pbx_node == "pbx-b"

        await app_a.stop(signal.SIGKILL)  # mid-call: nothing settled, nothing closed
        restarted = AppProcess(org, "app-a2", env_a)
        await restarted.start()
        apps.append(restarted)
        # Its start-up looked at its own PBX's open records only: B's is not among them.
        adoption = await restarted.wait_log(ADOPTION)
        assert (adoption["node"], adoption["open"], adoption["tagged"]) == ("pbx-a", "1", "1")
        live_b = await org.record(id_b)
        assert live_b.ended_at is None and live_b.charge_state != "settled"
        assert await org.paid_for(id_b) > 0  # its credits still held, by its own app
        assert not any(RELEASED.search(line) for line in app_b.lines)

        # A rolling restart of B's app: SIGTERM leaves its call up, the next process
        # re-adopts it; A's call, now run by A's new process, goes on meanwhile.
        assert await app_b.stop(signal.SIGTERM) == 0
        assert (await org.record(id_b)).ended_at is None  # detached: up, not closed
        app_b2 = AppProcess(org, "app-b2", env_b)
        await app_b2.start()
        apps.append(app_b2)
        adoption = await app_b2.wait_log(ADOPTION)
        assert (adoption["node"], adoption["open"], adoption["tagged"]) == ("pbx-b", "1", "1")

        c_a, c_b = await call_a.wait(40), await call_b.wait(40)
        assert c_a.ok, c_a.explain()
        assert c_b.ok, c_b.explain()
        assert (await phone_a.wait(30)).ok
        assert (await phone_b.wait(30)).ok
        assert await restarted.calls_released(1) == [id_a]  # re-adopted, run to its end
        assert await app_b2.calls_released(1) == [id_b]
    finally:
        for app in reversed(apps):
            await app.stop()
        await phones_a.close()
        await phones_b.close()

    records = await org.records()
    assert sorted(r.call_id for r in records) == sorted([id_a, id_b])
    wallet, db = await org.wallet()
    try:
        for record, node, talked in (
            (await org.record(id_a), "pbx-a", 9),
            (await org.record(id_b), "pbx-b", 14),
        ):
            assert (record.pbx_node, record.disposition, record.ended_by) == (
                node,
                "answered",
                "caller",
            )
            assert record.charge_state == "settled" and record.cost_micro is not None
            assert record.answered_at is not None and record.ended_at is not None
            assert (record.ended_at - record.answered_at).total_seconds() >= talked
            assert record.billable_seconds is not None and record.billable_seconds >= talked
            assert record.cost_micro == record.billable_seconds * MICRO // 10
            assert await wallet.charged_for(record.call_id) == record.cost_micro  # once
        state = await wallet.balance()
        assert state.held == 0
        assert state.balance == 100 * MICRO - sum(r.cost_micro or 0 for r in records)
        assert await wallet.audit() == []
    finally:
        await db.dispose()
    assert re.search(r"connected to Asterisk ARI at http://127.0.0.1:8089", "\n".join(app_b.lines))
