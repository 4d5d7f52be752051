"""authorize and settle over a real socket, charging a real (SQLite) wallet.

The organisation of the call tests (calls_harness): alice (1001) takes
+442079460000; incoming calls on GB local numbers cost a 0.01 fee + 0.01 a second
(1/1 increments), calls to Germany a 0.03 fee + 0.02 a second.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agi_harness import Running, StartServer
from agi_peer import GUARD, AgiPeer
from calls_harness import (
    ABROAD,
    INBOUND_FEE,
    INBOUND_PER_SECOND,
    OUTBOUND_FEE,
    OUTBOUND_PER_SECOND,
    ROUTED,
    UNROUTED,
)

from callcontrol.agi.calls import STALE_MARGIN, AgiCalls, Authorization, CallRequest
from callcontrol.domain.money import MICRO


async def authorize(server: Running, *args: str, **extra: str) -> AgiPeer:
    return await AgiPeer(server.port).run("authorize", *args, **extra)


async def settle(server: Running, *args: str, variables: dict[str, str] | None = None) -> AgiPeer:
    peer = AgiPeer(server.port, variables=dict(variables or {}))
    return await peer.run("settle", *args)


async def test_an_incoming_call_is_authorized_for_its_paid_time(agi: StartServer) -> None:
    server = await agi(credits=MICRO // 10, max_duration=3600)  # 0.1 credits
    peer = await authorize(server, "inbound", ROUTED)
    v = peer.variables
    call_id = v["CALLCONTROL_AGI_CALL_ID"]
    # 0.1 credits = the 0.01 fee + 9 s at 0.01/s: the PBX cuts the call after 9 s.
    assert (v["CALLCONTROL_STATUS"], v["CALLCONTROL_MAX_SECONDS"]) == ("ok", "9")
    assert (v["CALLCONTROL_MAX_MS"], v["CALLCONTROL_DIAL"]) == ("9000", "PJSIP/1001")
    assert await server.wallet.hold_of(call_id) == MICRO // 10
    record = await server.store.get(call_id)
    assert record is not None and record.is_open
    assert (record.direction, record.callee, record.caller) == ("inbound", ROUTED, "+15551234567")
    assert (record.user_name, record.charge_state, record.channel_id) == (
        "alice",
        "authorized",
        "1764273600.17",
    )


async def test_a_rich_wallet_holds_the_longest_call_only(agi: StartServer) -> None:
    server = await agi(max_duration=600)  # 100 credits
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    assert peer.variables["CALLCONTROL_MAX_SECONDS"] == "600"
    assert await server.wallet.hold_of(call_id) == INBOUND_FEE + 600 * INBOUND_PER_SECOND


async def test_calls_share_a_nearly_empty_wallet(agi: StartServer) -> None:
    server = await agi(credits=300_000, max_duration=20)  # 0.3 credits
    seconds = []
    for _ in range(4):
        peer = await authorize(server, "inbound", ROUTED)
        seconds.append(peer.variables.get("CALLCONTROL_MAX_SECONDS", "refused"))
    # The first takes its longest call (0.21); the next its first block and half of
    # what is left (0.07 / 2); the third likewise; nothing is left for a first block.
    assert seconds == ["20", "4", "1", "refused"]
    assert (await server.wallet.balance()).available == 7_500


async def test_refusals_tell_the_dialplan_why(agi: StartServer) -> None:
    server = await agi(credits=0)
    assert (await authorize(server, "inbound", ROUTED)).variables["CALLCONTROL_STATUS"] == (
        "no_credit"
    )
    cases = {
        "+442079469999": "unknown_number",
        UNROUTED: "no_route",
        "+442079460002": "no_route",  # runs a flow: flows need the ARI app
    }
    for number, status in cases.items():
        peer = await authorize(server, "inbound", number)
        assert peer.variables["CALLCONTROL_STATUS"] == status, number
        assert "CALLCONTROL_MAX_MS" not in peer.variables
    # Japan has no outbound rate: refused, never free.
    peer = await authorize(server, "outbound", "+81312345678", "1001")
    assert peer.variables["CALLCONTROL_STATUS"] == "no_rate"
    peer = await authorize(server, "outbound", "0049301234", "1002")  # bob has no number
    assert peer.variables["CALLCONTROL_STATUS"] == "not_allowed"
    records = await server.store.recent()
    assert {r.disposition for r in records} == {
        "refused_no_credit",
        "refused_unknown_number",
        "refused_no_route",
        "refused_no_rate",
        "not_allowed",
    }
    assert all(not r.is_open for r in records)
    assert (await server.wallet.balance()).held == 0


async def test_an_outgoing_call_presents_the_users_number(agi: StartServer) -> None:
    server = await agi(max_duration=60)
    peer = await authorize(server, "outbound", ABROAD, channel="PJSIP/1001-0000002a")
    v = peer.variables
    assert (v["CALLCONTROL_STATUS"], v["CALLCONTROL_MAX_SECONDS"]) == ("ok", "60")
    assert (v["CALLCONTROL_DIAL"], v["CALLCONTROL_CALLERID"]) == (f"PJSIP/{ABROAD}@carrier", ROUTED)
    call_id = v["CALLCONTROL_AGI_CALL_ID"]
    assert await server.wallet.hold_of(call_id) == OUTBOUND_FEE + 60 * OUTBOUND_PER_SECOND
    internal = await authorize(server, "outbound", "1002", channel="PJSIP/1001-0000002b")
    assert internal.variables["CALLCONTROL_DIAL"] == "PJSIP/1002"
    emergency = await authorize(server, "outbound", "112", channel="PJSIP/1002-0000002c")
    assert (
        emergency.variables["CALLCONTROL_STATUS"] == "emergency"
    )  # bob: no number, no credit check
    assert emergency.variables["CALLCONTROL_MAX_SECONDS"] == "0"  # no limit


async def test_settle_charges_the_talk_time_once(agi: StartServer) -> None:
    server = await agi(credits=MICRO)
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    first = await settle(server, call_id, "7", "ANSWER")
    assert first.variables["CALLCONTROL_STATUS"] == "settled"
    again = await settle(server, call_id, "9", "ANSWER")  # a second hangup handler
    assert again.variables["CALLCONTROL_STATUS"] == "settled"
    record = await server.store.get(call_id)
    assert record is not None
    cost = INBOUND_FEE + 7 * INBOUND_PER_SECOND
    assert (record.cost_micro, record.billable_seconds, record.charge_state) == (cost, 7, "settled")
    assert (record.disposition, record.ended_by) == ("answered", "pbx")
    assert record.answered_at is not None and record.ended_at is not None
    assert 6.5 <= (record.ended_at - record.answered_at).total_seconds() <= 7.5
    state = await server.wallet.balance()
    assert (state.balance, state.held) == (MICRO - cost, 0)
    assert await server.wallet.audit() == []


async def test_an_agi_call_takes_seven_database_transactions(agi: StartServer) -> None:
    """The AGI path's budget (issue 12): authorize reads the route with the rate set in
    force, writes the record with the first block's hold, reads the balance and holds
    up to the limit; settle reads the record, then what it was charged and its hold
    (one view), then settles it with the record's end. Twelve before (the record's
    start, the read-back, the end's two writes and each of the two reads were
    transactions of their own), a rate read through a session too."""
    server = await agi(credits=MICRO)
    await server.calls.charging.service.load_rates()  # the first call reads the rates once
    begun = server.db.transactions
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    assert server.db.transactions - begun == 4
    await settle(server, call_id, "7", "ANSWER")
    assert server.db.transactions - begun == 7
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.charge_state, record.disposition, record.billable_seconds) == (
        "settled",
        "answered",
        7,
    )
    assert record.cost_micro == INBOUND_FEE + 7 * INBOUND_PER_SECOND


async def test_settle_reads_the_talk_time_from_the_channel(agi: StartServer) -> None:
    server = await agi(credits=MICRO // 10)  # paid until 9 s
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    channel = {
        "CALLCONTROL_AGI_CALL_ID": call_id,
        "ANSWEREDTIME": "9",
        "DIALSTATUS": "ANSWER",
        "HANGUPCAUSE": "16",
    }
    done = await settle(server, variables=channel)
    assert [c.split()[2] for c in done.commands if c.startswith("GET")] == [
        "CALLCONTROL_AGI_CALL_ID",
        "ANSWEREDTIME",
        "DIALSTATUS",
        "HANGUPCAUSE",
    ]
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.cost_micro, record.ended_by, record.hangup_cause) == (MICRO // 10, "system", 16)
    assert await server.wallet.balance() == await server.wallet.balance()  # settled
    assert (await server.wallet.balance()).balance == 0


async def test_a_call_never_answered_costs_nothing(agi: StartServer) -> None:
    server = await agi()
    for dial_status, disposition in (
        ("NOANSWER", "no_answer"),
        ("BUSY", "busy"),
        ("CANCEL", "abandoned"),
        ("", "abandoned"),
    ):
        peer = await authorize(server, "inbound", ROUTED)
        call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
        await settle(server, call_id, "", dial_status)  # ${ANSWEREDTIME} is empty
        record = await server.store.get(call_id)
        assert record is not None
        assert (record.disposition, record.cost_micro) == (disposition, 0)
    assert (await server.wallet.balance()).balance == 100 * MICRO
    assert (await server.wallet.balance()).held == 0


async def test_talk_beyond_the_paid_time_is_not_charged(agi: StartServer) -> None:
    server = await agi(credits=MICRO // 10)  # paid until 9 s
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    await settle(server, call_id, "12", "ANSWER")  # the PBX said 12: it cut at 9
    record = await server.store.get(call_id)
    assert record is not None and record.billable_seconds == 9
    assert await server.wallet.audit() == []


async def test_a_bad_talk_time_settles_uncharged_and_says_so(
    agi: StartServer, caplog: object
) -> None:
    server = await agi()
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    await settle(server, call_id, "soon", "ANSWER")
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.cost_micro, record.disposition, record.is_open) == (0, "failed", False)
    assert (await server.wallet.balance()).held == 0
    assert "talk time 'soon' is not a number of seconds" in caplog.text  # type: ignore[attr-defined]
    peer = await settle(server, "agi-not-an-id")
    assert peer.variables["CALLCONTROL_STATUS"] == "invalid"


class SlowCalls(AgiCalls):
    """The database answers, then stalls (a lock, a failover) past the deadline."""

    async def authorize(self, request: CallRequest) -> Authorization:
        await super().authorize(request)  # the record is written, the credits held
        await asyncio.sleep(GUARD)
        raise AssertionError("the deadline should have cut this")


async def test_an_authorize_that_times_out_fails_closed(agi: StartServer) -> None:
    server = await agi(authorize_timeout=0.2, calls_type=SlowCalls)
    peer = await authorize(server, "inbound", ROUTED)
    assert peer.variables["CALLCONTROL_STATUS"] == "failed"  # the dialplan refuses
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    record = await server.store.get(call_id)
    assert record is not None and (record.disposition, record.cost_micro) == ("failed", 0)
    assert (await server.wallet.balance()).held == 0


async def test_the_stale_hold_rule_releases_unsettled_calls(agi: StartServer) -> None:
    server = await agi(max_duration=60)
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    record = await server.store.get(call_id)
    assert record is not None
    assert await server.calls.sweep(record.started_at + timedelta(seconds=60)) == 0  # may be live
    later = record.started_at + timedelta(seconds=60 + STALE_MARGIN + 1)
    assert await server.calls.sweep(later) == 1
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.disposition, record.ended_by, record.cost_micro) == ("failed", "pbx", 0)
    assert (await server.wallet.balance()).held == 0
    # The late settle (the hangup handler came after all) charges nothing twice.
    await settle(server, call_id, "30", "ANSWER")
    assert (await server.wallet.balance()).balance == 100 * MICRO
    assert await server.wallet.audit() == []


async def test_an_answer_with_no_talk_time_pays_the_connection_fee(agi: StartServer) -> None:
    server = await agi()
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    await settle(server, call_id, "0", "ANSWER")  # answered, hung up within the second
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.disposition, record.billable_seconds) == ("answered", 0)
    assert record.cost_micro == INBOUND_FEE  # as domain.rating prices an answered call


async def test_a_hold_that_outlived_its_record_is_released_by_the_sweep(
    agi: StartServer,
) -> None:
    """A timed-out authorize is abandoned, and then its hold's write lands."""
    server = await agi()
    peer = await authorize(server, "inbound", ROUTED)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    await settle(server, call_id, "", "NOANSWER")
    assert await server.wallet.hold_up_to(call_id, 50_000) == 50_000  # the late write
    assert await server.calls.sweep() == 1
    assert (await server.wallet.balance()).held == 0
    assert await server.wallet.audit() == []
