"""FastAGI framing and the server's handling of peers that do not behave.

Each test talks to a real AgiServer over a real TCP socket: garbage, oversize
requests, half-open connections, hang-ups mid-command, silence.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from agi_harness import StartServer
from agi_peer import GUARD, AgiPeer, send_raw

from callcontrol.agi.channel import AgiChannel
from callcontrol.agi.protocol import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiResult,
    parse_env_line,
    parse_result,
    quote_arg,
)
from callcontrol.logs import CallIdFilter


def test_results_are_parsed_strictly() -> None:
    assert parse_result("200 result=1") == AgiResult(1)
    assert parse_result("200 result=1 (PJSIP/1001)") == AgiResult(1, "PJSIP/1001")
    assert parse_result("200 result=-1 endpos=1234") == AgiResult(-1)
    assert parse_result("200 result=1 (a (nested) value)") == AgiResult(1, "a (nested) value")
    for garbage in (
        "200 result=",
        "200 result=yes",
        "200 result=1 trailing",
        "HTTP/1.1 200 OK",
        "",
    ):
        with pytest.raises(AgiProtocolError, match="not an AGI answer"):
            parse_result(garbage)
    with pytest.raises(AgiHangup):
        parse_result("511 Command Not Permitted on a dead channel or intercept routine")
    with pytest.raises(AgiCommandError):
        parse_result("510 Invalid or unknown command")


def test_request_environment() -> None:
    assert parse_env_line("agi_arg_1: inbound") == ("agi_arg_1", "inbound")
    assert parse_env_line("agi_accountcode: ") == ("agi_accountcode", "")
    with pytest.raises(AgiProtocolError, match="not an AGI environment line"):
        parse_env_line("GET / HTTP/1.1")
    request = AgiRequest(
        {
            "agi_network_script": "authorize?x=1",
            "agi_arg_1": "inbound",
            "agi_arg_2": " +442079460000 ",
            "agi_arg_4": "skipped: arg_3 is missing",
            "agi_callerid": "unknown",
        }
    )
    assert request.script == "authorize"
    assert request.args == ["inbound", " +442079460000 "]
    assert request.arg(2) == "+442079460000"
    assert request.arg(3) == ""
    assert request.get("callerid") == ""  # Asterisk's "unknown"


def test_arguments_that_would_break_the_command_line_are_refused() -> None:
    assert quote_arg("PJSIP/1001") == '"PJSIP/1001"'
    for bad in ('a"b', "a\nb", "a\\b"):
        with pytest.raises(ValueError, match="cannot send"):
            quote_arg(bad)


async def test_garbage_is_dropped_at_once(
    agi: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await agi()
    received, took = await send_raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received == b""  # not one command sent to a peer that is not Asterisk
    assert took < 1.0
    assert "not an AGI environment line: 'GET / HTTP/1.1'" in caplog.text


async def test_an_oversize_line_is_dropped(
    agi: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await agi()
    received, took = await send_raw(server.port, b"agi_channel: " + b"x" * 100_000 + b"\n\n")
    assert received == b""
    assert took < 1.0
    assert "a line longer than 4096 bytes" in caplog.text


async def test_too_many_header_lines_are_dropped(
    agi: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await agi()
    header = b"".join(b"agi_arg_%d: x\n" % i for i in range(1, 500)) + b"\n"
    received, _ = await send_raw(server.port, header)
    assert received == b""
    assert "more than 128 environment lines" in caplog.text


async def test_a_half_open_connection_is_dropped_after_the_timeout(
    agi: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await agi(timeout=0.3)
    received, took = await send_raw(server.port, b"agi_network: yes\nagi_channel: PJSI")
    assert received == b""
    assert 0.25 <= took < 2.0  # dropped by the header deadline, not spinning
    assert "no complete AGI request in 0.3 s" in caplog.text


async def test_a_peer_that_closes_mid_request_is_dropped_at_once(
    agi: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await agi(timeout=3)
    received, took = await send_raw(server.port, b"agi_network: yes\nagi_chan", half_close=True)
    assert received == b""
    assert took < 1.0
    assert "closed in the middle of a line" in caplog.text


async def test_an_unknown_script_is_refused(agi: StartServer) -> None:
    server = await agi()
    peer = await AgiPeer(server.port).run("format-disk", "now")
    assert peer.variables == {"CALLCONTROL_STATUS": "invalid"}
    assert peer.closed_by_server


async def test_a_malformed_authorize_is_refused_without_a_record(agi: StartServer) -> None:
    server = await agi()
    peer = await AgiPeer(server.port).run("authorize", "sideways", "+442079460000")
    assert peer.variables == {"CALLCONTROL_STATUS": "invalid"}
    peer = await AgiPeer(server.port).run("authorize", "inbound", "12; rm -rf /")
    assert peer.variables == {"CALLCONTROL_STATUS": "invalid"}
    assert await server.store.recent() == []


async def test_one_command_at_a_time_in_order(agi: StartServer) -> None:
    server = await agi()
    peer = await AgiPeer(server.port).run("authorize", "inbound", "+442079460000")
    # Every command waited for its answer: the call id first (a hangup handler can
    # settle from then on), then the rest in one MSet, the status last.
    assert peer.commands == [
        f'SET VARIABLE CALLCONTROL_AGI_CALL_ID "{peer.variables["CALLCONTROL_AGI_CALL_ID"]}"',
        'EXEC MSet "CALLCONTROL_MAX_SECONDS=3600,CALLCONTROL_MAX_MS=3600000,'
        'CALLCONTROL_DIAL=PJSIP/1001,CALLCONTROL_STATUS=ok"',
    ]
    assert list(peer.variables) == [
        "CALLCONTROL_AGI_CALL_ID",
        "CALLCONTROL_MAX_SECONDS",
        "CALLCONTROL_MAX_MS",
        "CALLCONTROL_DIAL",
        "CALLCONTROL_STATUS",
    ]


async def test_variables_msets_cannot_carry_are_set_one_by_one() -> None:
    """A value MSet would split or unquote (a comma, a bar, a quote, a space) goes in a
    SET VARIABLE of its own, as does a single variable; plain values share one MSet."""
    pairs = {
        "plain": [("A", "1"), ("B", "PJSIP/+442079460000@carrier")],
        "comma": [("A", "1"), ("B", "x,y")],
        "bar": [("A", "x|y"), ("B", "2")],
        "space": [("A", "a b"), ("B", "2")],
        "single": [("A", "1")],
    }
    sent: dict[str, list[str]] = {}
    for case, values in pairs.items():

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            channel = AgiChannel(reader, writer, timeout=GUARD)
            await channel.read_request()
            await channel.set_variables(values)  # noqa: B023 (awaited in this iteration)
            await channel.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            peer = await AgiPeer(server.sockets[0].getsockname()[1]).run("settle")
        finally:
            server.close()
        assert peer.variables == dict(values), case
        sent[case] = [command.split()[0] for command in peer.commands]
    assert sent == {
        "plain": ["EXEC"],
        "comma": ["SET", "SET"],
        "bar": ["SET", "SET"],
        "space": ["SET", "SET"],
        "single": ["SET"],
    }


@pytest.mark.parametrize("misbehaviour", ["close", "dead", "silent", "garbage"])
async def test_a_channel_lost_mid_authorize_holds_nothing(
    agi: StartServer, misbehaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After the call id is set and the credits held, the channel goes (HANGUP and a
    closed socket, HANGUP and 511s), stops answering, or answers garbage: the hold is
    released and the record closed as failed; the connection is not used again."""
    caplog.handler.addFilter(CallIdFilter())
    caplog.set_level(logging.INFO)
    server = await agi(timeout=0.5)
    peer = AgiPeer(server.port, misbehave_at=2, misbehaviour=misbehaviour)  # type: ignore[arg-type]
    await peer.run("authorize", "inbound", "+442079460000")
    await server.server.wait_idle(GUARD)
    call_id = peer.variables["CALLCONTROL_AGI_CALL_ID"]
    assert "CALLCONTROL_STATUS" not in peer.variables  # the dialplan refuses the call
    record = await server.store.get(call_id)
    assert record is not None
    assert (record.disposition, record.charge_state, record.cost_micro) == ("failed", "settled", 0)
    state = await server.wallet.balance()
    assert state.held == 0
    assert await server.wallet.audit() == []
    if misbehaviour in ("silent", "garbage"):
        assert len(peer.commands) == 2  # nothing sent after the broken answer
    # The call's lines carry its id, from the authorization to the release.
    ours = [r.getMessage() for r in caplog.records if getattr(r, "call_id", "") == call_id]
    assert any(line.startswith("authorized: holding") for line in ours), ours
    assert any(line.startswith("abandoned: nothing charged") for line in ours), ours
