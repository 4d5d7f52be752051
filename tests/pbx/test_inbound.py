"""Incoming calls through the real Asterisk: carrier (sipp) -> app -> user's phone (sipp)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from pbx_harness import CALLER, ROUTED, UNKNOWN, UNROUTED, AppProcess, Carrier, Org, Phones

from callcontrol.config import Settings
from callcontrol.pbx.sipp import CARRIER_ACK, free_port, render, run_sipp

pytestmark = pytest.mark.pbx


def first_lines(messages: list[str]) -> list[str]:
    return [m.split(" sip:")[0] if not m.startswith("SIP/2.0") else m for m in messages]


async def test_routed_number_rings_the_phone_and_the_caller_hangs_up(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED, hang_up_after_ms=1500)
    c, p = await call.wait(30), await phone.wait(30)
    assert c.ok, c.explain()
    assert p.ok, p.explain()
    assert first_lines(p.received()) == ["INVITE", "ACK", "BYE"]
    # The caller's number reached the phone as caller ID.
    assert f"sip:{CALLER}@" in p.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    # The caller heard ringing (180, from the dialplan before Stasis) until the answer.
    statuses = [line for line in first_lines(c.received()) if line.startswith("SIP/2.0")]
    assert "SIP/2.0 180 Ringing" in statuses, statuses
    assert statuses.index("SIP/2.0 180 Ringing") < statuses.index("SIP/2.0 200 OK"), statuses
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert record.disposition == "answered"
    assert record.ended_by == "caller"
    assert record.user_name == "alice"
    assert record.caller == CALLER
    assert record.number_e164 == ROUTED
    assert record.answered_at is not None and record.ended_at is not None
    assert record.started_at <= record.answered_at <= record.ended_at


async def test_the_callee_hangs_up(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice", talk_ms=1000)
    call = await carrier.call(ROUTED)  # waits for the PBX's BYE
    c, p = await call.wait(30), await phone.wait(30)
    assert p.ok, p.explain()
    assert c.ok, c.explain()
    assert "BYE" in first_lines(c.received())
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "callee")


async def test_unrouted_number_is_refused_and_the_phone_never_rings(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.call(UNROUTED, refused=True)
    c = await call.wait(30)
    assert c.ok, c.explain()
    received = c.received()
    assert "SIP/2.0 183 Session Progress" in received  # the "not in service" prompt
    assert received[-1].startswith("SIP/2.0 404")
    [call_id] = await app.calls_released(1)
    phone.kill()
    assert (await phone.wait(5)).received() == []
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("refused_no_route", "system")
    assert record.answered_at is None


async def test_a_number_that_is_not_ours_is_refused(
    app: AppProcess, carrier: Carrier, org: Org
) -> None:
    c = await (await carrier.call(UNKNOWN, refused=True)).wait(30)
    assert c.ok, c.explain()
    assert c.received()[-1].startswith("SIP/2.0 404")
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.number_e164) == ("refused_unknown_number", None)


async def test_routing_removed_while_the_app_runs(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice", talk_ms=500)
    first = await (await carrier.call(ROUTED)).wait(30)
    assert first.ok, first.explain()
    assert (await phone.wait(30)).ok
    [first_id] = await app.calls_released(1)
    assert (await org.record(first_id)).disposition == "answered"

    directory, db = await org.directory()
    try:
        await directory.clear_route(ROUTED)
    finally:
        await db.dispose()

    phone = await phones.answering("alice")
    second = await (await carrier.call(ROUTED, refused=True)).wait(30)
    assert second.ok, second.explain()
    second_id = (await app.calls_released(2))[1]
    phone.kill()
    assert (await phone.wait(5)).received() == []
    assert (await org.record(second_id)).disposition == "refused_no_route"


async def test_user_not_registered_hears_a_prompt_and_the_call_ends(
    app: AppProcess, carrier: Carrier, org: Org
) -> None:
    directory, db = await org.directory()
    try:
        await directory.route_to_user(ROUTED, "carol")  # carol's phone never registers
    finally:
        await db.dispose()
    c = await (await carrier.call(ROUTED, refused=True)).wait(30)
    assert c.ok, c.explain()
    received = c.received()
    assert "SIP/2.0 183 Session Progress" in received
    assert received[-1].startswith("SIP/2.0 480")
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.user_name) == ("unavailable", "carol")


async def test_busy_phone(app: AppProcess, phones: Phones, carrier: Carrier, org: Org) -> None:
    phone = await phones.busy("alice")
    c = await (await carrier.call(ROUTED, refused=True)).wait(30)
    assert c.ok, c.explain()
    assert c.received()[-1].startswith("SIP/2.0 486")
    assert (await phone.wait(10)).ok
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.answered_at) == ("busy", None)


async def test_phone_not_answering_within_the_ring_timeout(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.not_answering("alice")  # ring timeout is 4 s in these tests
    c = await (await carrier.call(ROUTED, refused=True)).wait(30)
    assert c.ok, c.explain()
    p = await phone.wait(10)
    assert p.ok, p.explain()
    assert first_lines(p.received())[:2] == ["INVITE", "CANCEL"]
    assert c.received()[-1].startswith("SIP/2.0 480")
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.answered_at) == ("no_answer", None)


async def test_app_killed_mid_call_then_restarted_readopts_the_call(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.call(ROUTED, hang_up_after_ms=7000)
    call_id = await app.connected("alice")
    await app.stop(signal.SIGKILL)

    second = AppProcess(org, "app2")
    await second.start()
    try:
        c, p = await call.wait(30), await phone.wait(30)
        assert c.ok, c.explain()
        assert p.ok, p.explain()
        assert first_lines(p.received()) == ["INVITE", "ACK", "BYE"]
        # The new process ran the call to its end: it re-adopted it.
        assert await second.calls_released(1) == [call_id]
    finally:
        await second.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "caller")
    assert record.ended_at is not None and record.answered_at is not None
    assert (record.ended_at - record.answered_at).total_seconds() >= 6


async def test_sigterm_leaves_calls_up_and_the_next_start_readopts_them(
    app: AppProcess, phones: Phones, carrier: Carrier, org: Org
) -> None:
    phone = await phones.answering("alice", talk_ms=6000)
    call = await carrier.call(ROUTED)
    call_id = await app.connected("alice")
    assert await app.stop(signal.SIGTERM) == 0
    assert (await org.record(call_id)).ended_at is None  # not hung up, not closed

    second = AppProcess(org, "app2")
    await second.start()
    try:
        assert (await phone.wait(30)).ok
        assert (await call.wait(30)).ok
        assert await second.calls_released(1) == [call_id]  # re-adopted, run to its end
    finally:
        await second.stop()
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "callee")


async def test_app_not_running_fails_closed(pbx: object, carrier: Carrier) -> None:
    c = await (await carrier.call(ROUTED, refused=True)).wait(30)
    assert c.ok, c.explain()
    received = c.received()
    assert "SIP/2.0 183 Session Progress" in received  # "all circuits are busy"
    assert received[-1].startswith("SIP/2.0 503")
    assert "SIP/2.0 200 OK" not in received


async def test_at_most_20_refused_callers_hear_the_busy_announcement_at_once(
    pbx: object, tmp_path: Path
) -> None:
    """Refusing must cost the PBX less than serving: 40 calls within 0.4 s, no app;
    the announcement lasts 3 s, so 20 callers hear it (183) and the others get the 503
    at once. Every one is refused with 503, none answered."""
    final = (
        '  <recv response="503"/>\n'
        + CARRIER_ACK
        + '  <nop><action><log message="refused [call_number]"/></action></nop>\n'
        + '  <label id="got_bye"/>\n'  # (the template's BYE handler: never sent here)
    )
    xml = render("carrier.xml", caller=CALLER, final=final).replace(
        '<recv response="183" optional="true"/>',
        '<recv response="183" optional="true">'
        '<action><log message="early [call_number]"/></action></recv>',
        1,
    )
    carrier = await run_sipp(
        tmp_path, "carrier", xml, service=ROUTED, local_port=free_port(), calls=40,
        rate=100, timeout_s=60, trace_messages=False, extra_args=["-trace_logs"],
    )  # fmt: skip
    result = await carrier.wait(60)
    assert result.returncode == 0, result.errors
    logs = "".join(p.read_text() for p in tmp_path.glob("carrier_*_logs.log"))
    assert len(re.findall(r"^refused \d+", logs, re.M)) == 40
    early = len(re.findall(r"^early \d+", logs, re.M))
    assert 1 <= early <= 20, early


async def test_asterisk_resolves_no_host_name_per_call(
    pbx: Settings, app: AppProcess, org: Org, phones: Phones, carrier: Carrier
) -> None:
    """`pbx up` writes the root's /etc/hosts: without it Asterisk looked its own host
    name up for every call, and each lost DNS query stalled all SIP for 5 s."""
    log = pbx.pbx_root / "var/log/asterisk/messages.log"
    start = log.stat().st_size if log.exists() else 0
    phone = await phones.answering("alice", calls=5)
    for _ in range(5):
        c = await (await carrier.call(ROUTED, hang_up_after_ms=200)).wait(30)
        assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    for _ in range(5):
        c = await (await carrier.call(UNROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()
    released = await app.calls_released(10)
    dispositions = [(await org.record(call_id)).disposition for call_id in released]
    assert sorted(dispositions) == ["answered"] * 5 + ["refused_no_route"] * 5
    with log.open("rb") as fh:
        fh.seek(start)
        new = fh.read().decode(errors="replace")
    assert "Executing [" in new, "Asterisk logged no dialplan for ten calls: wrong log?"
    assert "Unable to lookup" not in new
