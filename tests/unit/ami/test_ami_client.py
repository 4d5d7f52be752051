"""The AMI client over panoramisk against a server that speaks AMI: a refused login is
an error naming the user (panoramisk alone says nothing), a lost connection fails the
requests in flight, and the feed comes back with a capped back-off."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from fake_ami import FakeAmi

from callcontrol.ami.client import AmiFeed, AmiSession, panoramisk_log
from callcontrol.ami.health import health_from, pbx_health
from callcontrol.ami.records import PbxRecords
from callcontrol.errors import AmiLoginRefused, AmiUnavailable
from callcontrol.logs import FORMAT, CallIdFilter


def load_contract() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "pbx" / "log_contract.py"
    spec = importlib.util.spec_from_file_location("log_contract", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = load_contract()


def with_call_id(record: logging.LogRecord) -> logging.LogRecord:
    CallIdFilter().filter(record)
    return record


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmi]:
    server = await FakeAmi().start()
    yield server
    await server.stop()


async def test_a_refused_login_is_an_error_that_names_the_user_not_the_secret(
    ami: FakeAmi,
) -> None:
    with pytest.raises(AmiLoginRefused) as info:
        await AmiSession.open("127.0.0.1", ami.port, "callcontrol", "wrong-secret-77")
    message = str(info.value)
    assert message.startswith(
        f"AMI login refused for user callcontrol at 127.0.0.1:{ami.port} (Authentication failed)"
    )
    assert "wrong-secret-77" not in message
    assert ami.logins[0]["Secret"] == "wrong-secret-77"  # it was sent, and refused


async def test_nothing_listening_is_unavailable(ami: FakeAmi) -> None:
    port = ami.port
    await ami.stop()
    with pytest.raises(AmiUnavailable, match=f"AMI not reachable at 127.0.0.1:{port}"):
        await AmiSession.open("127.0.0.1", port, "callcontrol", "s3cret")


async def test_health_from_the_answers_of_asterisk_22(ami: FakeAmi) -> None:
    ami.answers = {
        "CoreStatus": [
            {
                "Response": "Success",
                "CoreStartupDate": "2026-11-27",
                "CoreStartupTime": "19:58:49",
                "CoreReloadDate": "2026-11-27",
                "CoreReloadTime": "20:07:52",
                "CoreCurrentCalls": "1",
            }
        ],
        "CoreShowChannels": [
            {"Response": "Success", "EventList": "start", "Message": "Channels will follow"},
            {"Event": "CoreShowChannel", "Channel": "PJSIP/carrier-00000001"},
            {"Event": "CoreShowChannel", "Channel": "PJSIP/1001-00000002"},
            {"Event": "CoreShowChannelsComplete", "EventList": "Complete", "ListItems": "2"},
        ],
        "PJSIPShowEndpoints": [
            {"Response": "Success", "EventList": "start", "Message": "A listing follows"},
            {"Event": "EndpointList", "ObjectName": "1001", "Contacts": "1001/sip:1001@x"},
            {"Event": "EndpointList", "ObjectName": "1002", "Contacts": ""},
            {"Event": "EndpointList", "ObjectName": "carrier", "Contacts": "carrier/sip:c"},
            {"Event": "EndpointListComplete", "EventList": "Complete", "ListItems": "3"},
        ],
        # No registration at all: Asterisk answers with an error, not an empty list.
        "PJSIPShowContacts": [{"Response": "Error", "Message": "No Contacts found"}],
    }
    session = await AmiSession.open("127.0.0.1", ami.port, "callcontrol", "s3cret")
    try:
        health = await pbx_health(session)
    finally:
        session.close()
    assert (health.current_calls, health.channels, health.endpoints, health.registered) == (
        1,
        2,
        3,
        0,
    )
    assert health.started_at == datetime(2026, 11, 27, 19, 58, 49, tzinfo=UTC)
    assert health.describe(datetime(2026, 11, 27, 20, 8, 0, tzinfo=UTC)) == (
        "AMI: up 9m 11s, reloaded 8s ago, 1 calls, 2 channels, 0 of 3 endpoints registered"
    )


async def test_a_request_in_flight_fails_when_the_connection_drops(ami: FakeAmi) -> None:
    ami.answers = {"NeverAnswered": []}
    session = await AmiSession.open("127.0.0.1", ami.port, "callcontrol", "s3cret", timeout=30)
    pending = asyncio.create_task(session.request({"Action": "NeverAnswered"}))
    await asyncio.sleep(0)  # sent
    await ami.stop()
    with pytest.raises(AmiUnavailable, match="closed"):
        await asyncio.wait_for(pending, 5)  # at once, not after the 30 s timeout
    assert session.closed.is_set()
    with pytest.raises(AmiUnavailable, match="is closed"):
        await session.request({"Action": "Ping"})


async def test_the_feed_hands_on_hangups_and_reconnects_after_the_pbx_restarts(
    ami: FakeAmi,
) -> None:
    records = PbxRecords(None)
    heard = asyncio.Event()

    def on_event(event: Mapping[str, str]) -> None:
        records.on_event(event)
        if event.get("Uniqueid") == "1795810338.24":
            heard.set()  # the last one pushed: every event before it was handled

    feed = AmiFeed(
        "127.0.0.1",
        ami.port,
        "callcontrol",
        "s3cret",
        on_event=on_event,
        initial_backoff=0.01,
        max_backoff=0.05,
    )
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert ami.logins[-1]["Events"] == "call"
        first = feed.session
        assert first is not None
        await ami.push(Event="Hangup", Uniqueid="1795810338.23", Timestamp="1795810344.406728")
        await ami.push(Event="Hangup", Uniqueid="1795810338.24")  # no Timestamp: skipped
        await asyncio.wait_for(heard.wait(), 5)
        assert await records.call_end("1795810338.23") == (
            datetime.fromtimestamp(1795810344.406728, UTC),
            "ami",
        )
        assert await records.call_end("1795810338.24") is None

        port = ami.port
        await ami.stop()  # the PBX restarts
        await asyncio.wait_for(first.closed.wait(), 5)
        await ami.start(port)
        await asyncio.wait_for(feed.connected.wait(), 5)
        assert feed.session is not None and feed.session is not first
        assert len(ami.logins) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_refused_feed_says_so_and_keeps_trying(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    feed = AmiFeed(
        "127.0.0.1", ami.port, "callcontrol", "stale", initial_backoff=0.01, max_backoff=0.02
    )
    with caplog.at_level(logging.ERROR, logger="callcontrol.ami.client"):
        task = asyncio.create_task(feed.run())
        try:
            async with asyncio.timeout(5), ami.changed:
                await ami.changed.wait_for(lambda: len(ami.logins) >= 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert refused and all(
        m.startswith(f"AMI login refused for user callcontrol at 127.0.0.1:{ami.port}")
        for m in refused
    )
    # As `serve` prints it, matched by the PBX tests' pattern (tests/pbx/log_contract.py).
    line = logging.Formatter(FORMAT).format(with_call_id(caplog.records[0]))
    match = contract.AMI_REFUSED.search(line)
    assert match is not None
    assert (match["user"], match["address"]) == ("callcontrol", f"127.0.0.1:{ami.port}")
    assert not any("stale" in r.getMessage() for r in caplog.records)


def test_the_back_off_doubles_up_to_its_cap_with_full_jitter() -> None:
    feed = AmiFeed("h", 1, "u", "s", initial_backoff=0.5, max_backoff=30.0, rng=random.Random(7))
    caps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for failures, cap in enumerate(caps):
        delays = [feed.backoff_delay(failures) for _ in range(200)]
        assert all(0.05 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # the whole range is used
    with pytest.raises(ValueError):
        AmiFeed("h", 1, "u", "s", initial_backoff=2, max_backoff=1)


def test_registered_endpoints_are_those_with_a_registration() -> None:
    contacts = [  # PJSIPShowContacts' events as Asterisk 22 sends them
        {"Event": "ContactList", "Endpoint": "1001", "ExpirationTime": "1795813755"},
        {"Event": "ContactList", "Endpoint": "1001", "ExpirationTime": "1795813799"},
        {"Event": "ContactList", "Endpoint": "carrier", "ExpirationTime": "0"},  # permanent
        {"Event": "ContactList", "Endpoint": "9999", "ExpirationTime": "1795813755"},  # gone
    ]
    endpoints = [{"ObjectName": name} for name in ("1001", "1002", "carrier")]
    health = health_from({"CoreCurrentCalls": "x"}, [], endpoints, contacts)
    assert (health.endpoints, health.registered, health.current_calls) == (3, 1, 0)
    assert health.started_at is None
    assert health.describe(datetime.now(UTC)) == (
        "AMI: 0 calls, 0 channels, 1 of 3 endpoints registered"
    )


def test_a_secret_panoramisk_would_log_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    action = {"Action": "Login", "Secret": "Zq9-very-secret", "Username": "callcontrol"}
    with caplog.at_level(logging.DEBUG, logger="callcontrol.ami.panoramisk"):
        panoramisk_log.exception("Fail to send %r", action)  # as AMIProtocol.send does
        panoramisk_log.info("Action: Login\r\nSecret: Zq9-very-secret\r\nUsername: cc")
    messages = [r.getMessage() for r in caplog.records]
    assert all("Zq9" not in m for m in messages), messages
    assert "'Secret': '********'" in messages[0] and "Secret: ********" in messages[1]
