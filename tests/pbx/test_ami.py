"""AMI through the real PBX: health in `pbx status`, a refused login said plainly, the
client back after an Asterisk restart, and calls that ended while no app was running
settled at the end the PBX recorded (its CDR), not at the restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from log_contract import AMI_REFUSED, PBX_END
from pbx_harness import REPO, ROUTED, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.ami.client import AmiFeed
from callcontrol.ami.health import pbx_health
from callcontrol.ami.records import PbxRecords
from callcontrol.config import Settings
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import MICRO
from callcontrol.pbx.devpbx import DevPbx
from callcontrol.pbx.sipp import SippProcess

pytestmark = pytest.mark.pbx

RATES_CSV = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,local,6,0,1/1,0.1 credit a second
"""
HEALTH = re.compile(
    r"^AMI: up \S+( \S+)?, reloaded .* ago, (?P<calls>\d+) calls, (?P<channels>\d+) channels, "
    r"(?P<registered>\d+) of (?P<endpoints>\d+) endpoints registered$",
    re.M,
)


async def pbx_status(pbx: Settings, **env: str) -> tuple[int, str]:
    """`callcontrol pbx status` as an operator runs it: exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcontrol",
        "pbx",
        "status",
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")},
            "CALLCONTROL_DATA_DIR": str(pbx.data_dir),
            "CALLCONTROL_ARI_PASSWORD": pbx.ari_password,
            **env,
        },
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def ami_feed(pbx: Settings, **kwargs: object) -> AmiFeed:
    host, port = pbx.effective_ami_address
    return AmiFeed(
        host,
        port,
        pbx.ami_username,
        pbx.effective_ami_password,
        initial_backoff=0.2,
        max_backoff=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def records(pbx: Settings) -> AsyncIterator[PbxRecords]:
    """The hang-ups AMI reports while the test runs (a feed of the test's own)."""
    seen = PbxRecords(None)
    feed = ami_feed(pbx, on_event=seen.on_event)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), 10)
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pbx_status_shows_the_pbx_health_over_ami(
    pbx: Settings, app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED, hang_up_after_ms=5000)
    await app.connected("alice")
    code, out = await pbx_status(pbx)
    c = await call.wait(30)
    assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    await app.calls_released(1)
    assert code == 0, out
    health = HEALTH.search(out)
    assert health, out
    # At least the caller and alice (the PBX is shared: a call other tests detached may
    # still be up until its paid time ends).
    assert int(health["channels"]) >= 2
    assert int(health["calls"]) >= 1
    assert int(health["registered"]) >= 1  # alice
    assert int(health["endpoints"]) >= 4  # three users and the carrier


async def test_pbx_status_counts_the_dialplan_reloads_that_slow_asterisk_down(
    pbx: Settings,
) -> None:
    dev = DevPbx(pbx)
    before = dev.reloads()
    assert before is not None
    dev.cli("dialplan reload")
    # Asterisk 22.10 keeps one more manager subscriber per reload (README, "The
    # development PBX"); if a release stops doing so, the README's advice can go too.
    assert dev.reloads() == before + 1
    _, out = await pbx_status(pbx)
    assert f"{before + 1} dialplan reloads since start" in out, out


async def test_a_wrong_ami_secret_is_one_clear_line(pbx: Settings, org: Org) -> None:
    code, out = await pbx_status(pbx, CALLCONTROL_AMI_PASSWORD="not-the-secret-42")
    assert code == 3
    assert (
        "AMI: error: AMI login refused for user callcontrol at 127.0.0.1:5038 "
        "(Authentication failed)" in out
    ), out
    assert "not-the-secret-42" not in out and "Traceback" not in out
    # The app says it too, keeps retrying, and serves calls meanwhile.
    app = AppProcess(org, env={"CALLCONTROL_AMI_PASSWORD": "not-the-secret-42"})
    await app.start()
    try:
        refused = await app.wait_log(AMI_REFUSED)
        assert (refused["user"], refused["address"]) == ("callcontrol", "127.0.0.1:5038")
    finally:
        await app.stop()
    assert not any("not-the-secret-42" in line for line in app.lines)


async def killed_mid_call(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier, *, phone_talk_ms: int
) -> tuple[Org, str, SippProcess, float]:
    """An app killed -9 while a call is connected; the carrier hangs up 6 s after its
    answer while no app runs (alice's phone after ``phone_talk_ms``, else when told).
    Returns the org, the call id, alice's phone, and when the carrier's call ended."""
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    org = await make_org(pbx, tmp_path, credits=100 * MICRO, rates=rates)
    app = await AppProcess(org).start()
    phone = await phones.answering("alice", talk_ms=phone_talk_ms)
    call = await carrier.call(ROUTED, hang_up_after_ms=6000)  # 6 s of talk as sipp sees it
    call_id = await app.connected("alice")
    await app.stop(signal.SIGKILL)
    c = await call.wait(30)  # it ends while no app runs
    assert c.ok, c.explain()
    return org, call_id, phone, time.time()


async def settled_at_the_pbx_end(
    org: Org, call_id: str, ended_seen: float, records: PbxRecords
) -> CallRecord:
    """Restart the app well after the call ended; its record, once settled, and checks
    that the end is the PBX's (within 1 s of what sipp saw), not the restart's."""
    # The point of these tests: the app comes back well after the call ended.
    await asyncio.sleep(3)
    restarted = datetime.now(UTC)
    second = await AppProcess(org, "app2").start()
    try:
        record = await org.wait_record(call_id, lambda r: r.charge_state == "settled")
    finally:
        await second.stop()
    ends = [m for line in second.lines if (m := PBX_END.search(line))]
    assert [m["source"] for m in ends] == ["CDR"], second.lines[-20:]
    assert record.answered_at is not None and record.ended_at is not None
    assert (restarted - record.ended_at).total_seconds() >= 3  # not the restart time
    assert abs(record.ended_at.timestamp() - ended_seen) <= 1.0
    talk = (record.ended_at - record.answered_at).total_seconds()
    assert 5.0 <= talk <= 7.0, talk
    assert record.billable_seconds is not None and abs(record.billable_seconds - 6) <= 1
    assert record.cost_micro == record.billable_seconds * MICRO // 10
    # AMI's Hangup event (heard while connected) tells the same end within a second.
    ami_end = await records.call_end(record.channel_id)
    assert ami_end is not None and ami_end[1] == "ami"
    assert abs((ami_end[0] - record.ended_at).total_seconds()) <= 1.0
    balance, held, problems = await org.wallet_state()
    assert (balance, held, problems) == (100 * MICRO - record.cost_micro, 0, [])
    return record


async def test_a_call_that_ended_while_the_app_was_dead_is_settled_at_its_cdr_end(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier, records: PbxRecords
) -> None:
    org, call_id, phone, ended_seen = await killed_mid_call(
        pbx, tmp_path, phones, carrier, phone_talk_ms=9000
    )
    assert (await phone.wait(30)).ok  # alice hung up too: nothing of the call is left
    record = await settled_at_the_pbx_end(org, call_id, ended_seen, records)
    assert (record.disposition, record.ended_by) == ("answered", "pbx")


async def test_a_caller_who_hung_up_while_the_app_was_dead_pays_until_then(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier, records: PbxRecords
) -> None:
    # Alice's leg stays up alone (no app to end it): the restart re-adopts the call,
    # ends it, and charges until the caller's hang-up, as the PBX recorded it.
    org, call_id, phone, ended_seen = await killed_mid_call(
        pbx, tmp_path, phones, carrier, phone_talk_ms=0
    )
    record = await settled_at_the_pbx_end(org, call_id, ended_seen, records)
    assert (await phone.wait(30)).ok  # the restarted app hung alice up
    assert (record.disposition, record.ended_by) == ("answered", "caller")


async def test_the_ami_client_reconnects_after_the_pbx_restarts(pbx: Settings) -> None:
    feed = ami_feed(pbx)
    task = asyncio.create_task(feed.run())
    devpbx = DevPbx(pbx)
    try:
        await asyncio.wait_for(feed.connected.wait(), 10)
        assert feed.session is not None
        first = feed.session
        before = await pbx_health(first)
        await asyncio.to_thread(devpbx.down)
        await asyncio.wait_for(first.closed.wait(), 10)
        await asyncio.to_thread(devpbx.up)  # and left running for the tests after
        await asyncio.wait_for(feed.connected.wait(), 30)
        assert feed.session is not None and feed.session is not first
        after = await pbx_health(feed.session)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert before.started_at is not None and after.started_at is not None
    assert after.started_at > before.started_at
