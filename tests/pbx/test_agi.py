"""Dialplan-driven calls over FastAGI, through the real PBX.

The carrier calls ``*88<number>``: the dialplan ([callcontrol-agi-carrier] in
dialplan/extensions.conf) asks `callcontrol agi` to authorize the call, dials the
user's phone with ``Dial(...,L(<paid ms>))`` and settles from a hangup handler with
Asterisk's ANSWEREDTIME. `callcontrol serve` runs beside it only to provision the
users' SIP endpoints (and must leave the AGI calls' records alone).

Rates are steep and per second (0.1 credit a second, 1/1) so that a few seconds of
talk use the wallet up.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from agi_peer_for_pbx import settle_once
from log_contract import AGI_AUTHORIZED, AGI_LISTENING, AGI_REFUSED, AGI_SETTLED, FROZEN
from pbx_harness import REPO, ROUTED, USERS, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO
from callcontrol.pbx.devpbx import DevPbx
from callcontrol.pbx.sipp import (
    CARRIER_ANSWERED,
    HANG_UP_AFTER,
    WAIT_FOR_BYE,
    SippProcess,
    free_port,
    render,
    run_sipp,
)

pytestmark = pytest.mark.pbx

AGI_LISTEN = "127.0.0.1:4573"  # the port dialplan/extensions.conf names
PREFIX = "*88"
RATES_CSV = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,local,6,0,1/1,steep per-second test rate
outbound,,DE,,6,0.1,1/1,Germany (steep for the test)
"""
DESTINATION = "+4930123456"  # Berlin
CARRIER_PORT = 5070  # the carrier trunk's address in dialplan/pjsip.conf


class AgiProcess(AppProcess):
    """`callcontrol agi` as a real process; its log lines are the events."""

    async def start(self) -> AgiProcess:
        self.env["CALLCONTROL_AGI_LISTEN"] = AGI_LISTEN
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callcontrol",
            "agi",
            env=self.env,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log(AGI_LISTENING, timeout=20)
        await self.wait_log(FROZEN, timeout=1)  # logged before it listens
        return self


@pytest.fixture(scope="module")
def agi_pbx(pbx: Settings) -> Settings:
    """The PBX with the AGI modules: `pbx up` (the ``pbx`` fixture) loads the modules
    modules.conf newly lists on a running Asterisk (``DevPbx.load_listed_modules``)."""
    dev = DevPbx(pbx)
    assert "res_agi.so" in dev.cli("module show like res_agi")
    return pbx


async def agi_org(pbx: Settings, tmp_path: Path, credits: int) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)
    return await make_org(pbx, tmp_path, credits=credits, rates=rates)


async def test_the_pbx_cuts_an_agi_call_at_its_paid_time_and_it_is_settled_once(
    agi_pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await agi_org(agi_pbx, tmp_path, credits=MICRO // 2)  # 0.5 credits = 5 s
    app = await AppProcess(org).start()  # provisions alice's endpoint
    agi = await AgiProcess(org, "agi").start()
    try:
        phone = await phones.answering("alice")  # answers, then waits for the BYE
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = await carrier.call(PREFIX + ROUTED)  # waits for the PBX's BYE
        authorized = await agi.wait_log(AGI_AUTHORIZED, timeout=15)
        c = await call.wait(40)
        took = loop.time() - started
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        settled = await agi.wait_log(AGI_SETTLED, timeout=15)
        call_id = settled["call_id"]
        assert call_id == authorized["call_id"]
        # Neither side hung up: the PBX ended the call at 5 s of talk (plus ringing).
        assert 5.0 <= took <= 12.0, took  # unlimited, it would last the 30 s the phone waits
        record = await org.record(call_id)
        assert (record.disposition, record.ended_by, record.charge_state) == (
            "answered",
            "system",
            "settled",
        )
        assert (record.billable_seconds, record.cost_micro) == (5, MICRO // 2)
        assert (record.callee, record.user_name) == (ROUTED, "alice")
        assert await org.wallet_state() == (0, 0, [])
        # A second settle (a second hangup handler, a retry) charges nothing more.
        assert await settle_once(AGI_LISTEN, call_id, talk="9") == "settled"
        assert (await org.record(call_id)).cost_micro == MICRO // 2
        assert await org.wallet_state() == (0, 0, [])
        assert not [line for line in app.lines if call_id in line]  # serve left it alone
    finally:
        await agi.stop()
        await app.stop()


async def test_a_short_agi_call_is_charged_its_talk_time(
    agi_pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await agi_org(agi_pbx, tmp_path, credits=10 * MICRO)  # 100 s
    app = await AppProcess(org).start()
    agi = await AgiProcess(org, "agi").start()
    try:
        phone = await phones.answering("alice")
        c = await (await carrier.call(PREFIX + ROUTED, hang_up_after_ms=3000)).wait(30)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        settled = await agi.wait_log(AGI_SETTLED, timeout=15)
        record = await org.record(settled["call_id"])
        assert (record.disposition, record.ended_by) == ("answered", "pbx")
        # The caller hung up after 3 s; Asterisk measures whole seconds (3, or 2 when
        # the 200 OK's ACK came late).
        assert record.billable_seconds in (2, 3)
        assert record.cost_micro == record.billable_seconds * MICRO // 10
        balance, held, problems = await org.wallet_state()
        assert (balance, held, problems) == (10 * MICRO - record.cost_micro, 0, [])
    finally:
        await agi.stop()
        await app.stop()


async def test_no_credit_or_no_agi_server_is_refused_by_the_dialplan(
    agi_pbx: Settings, tmp_path: Path, carrier: Carrier
) -> None:
    org = await agi_org(agi_pbx, tmp_path, credits=0)
    agi = await AgiProcess(org, "agi").start()
    try:
        c = await (await carrier.call(PREFIX + ROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()  # early media, then 503: never answered
        refused = await agi.wait_log(AGI_REFUSED, timeout=15)
        assert refused["status"] == "no_credit"
        record = await org.record(refused["call_id"])
        assert (record.disposition, record.cost_micro) == ("refused_no_credit", None)
    finally:
        await agi.stop()
    # The server is down: AGI() fails, no status, the dialplan refuses (fail closed).
    c = await (await carrier.call(PREFIX + ROUTED, refused=True)).wait(30)
    assert c.ok, c.explain()
    assert len(await org.records()) == 1  # nothing recorded, nothing held
    assert await org.wallet_state() == (0, 0, [])


async def test_a_user_calls_out_over_agi_presenting_their_number(
    agi_pbx: Settings, tmp_path: Path
) -> None:
    org = await agi_org(agi_pbx, tmp_path, credits=10 * MICRO)
    app = await AppProcess(org).start()  # provisions alice's endpoint
    agi = await AgiProcess(org, "agi").start()
    try:
        far_end = await carrier_answers(tmp_path)
        call = await alice_dials(tmp_path, PREFIX + DESTINATION, hang_up_after_ms=2000)
        c, f = await call.wait(40), await far_end.wait(40)
        assert c.ok, c.explain()
        assert f.ok, f.explain()
        invite = f.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
        assert invite.startswith(DESTINATION)
        assert ROUTED in invite  # alice presents her number
        settled = await agi.wait_log(AGI_SETTLED, timeout=15)
    finally:
        await agi.stop()
        await app.stop()
    record = await org.record(settled["call_id"])
    assert (record.direction, record.disposition, record.user_name) == (
        "outbound",
        "answered",
        "alice",
    )
    seconds = record.billable_seconds
    assert seconds is not None and 1 <= seconds <= 3  # about 2 s of talk, per second
    assert record.cost_micro == MICRO // 10 + seconds * MICRO // 10  # 0.1 fee + 0.1 a second
    assert await org.wallet_state() == (10 * MICRO - record.cost_micro, 0, [])


async def alice_dials(tmp_path: Path, number: str, *, hang_up_after_ms: int) -> SippProcess:
    """Alice's phone (sipp UAC, digest auth on the INVITE) dials ``number``."""
    ext, password = USERS["alice"]
    final = CARRIER_ANSWERED.format(after_ack=HANG_UP_AFTER.format(ms=hang_up_after_ms))
    return await run_sipp(
        tmp_path / "sipp",
        "call-alice",
        render("phone_call.xml", extension=ext, final=final),
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
