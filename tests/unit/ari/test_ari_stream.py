"""AriEventStream against the fake ARI server: delivery, reconnects, backoff, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fake_ari import APP, PASSWORD, USERNAME, FakeAri, channel_json, event_json

from callcontrol.ari import (
    AriApplicationReplaced,
    AriEventStream,
    ChannelDtmfReceived,
    Event,
    StasisStart,
)
from callcontrol.ari.stream import events_url
from callcontrol.errors import AriUnavailable

GUARD = 5.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    await server.start()
    yield server
    await server.close()


class Recorder:
    """Dispatcher and hooks that tests can await."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.connects = 0
        self.disconnects = 0
        self.changed = asyncio.Condition()

    def dispatch(self, event: Event) -> None:
        self.events.put_nowait(event)

    async def on_connected(self) -> None:
        self.connects += 1
        async with self.changed:
            self.changed.notify_all()

    async def on_disconnected(self) -> None:
        self.disconnects += 1
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD), self.changed:
            await self.changed.wait_for(predicate)

    async def next(self) -> Event:
        return await asyncio.wait_for(self.events.get(), GUARD)


def make_stream(url: str, rec: Recorder, password: str = PASSWORD, **kwargs: Any) -> AriEventStream:
    options: dict[str, Any] = {
        "initial_backoff": 0.02,
        "max_backoff": 0.1,
        "rng": random.Random(7),
    }
    options.update(kwargs)
    return AriEventStream(
        url,
        USERNAME,
        password,
        app=APP,
        dispatcher=rec.dispatch,
        on_connected=rec.on_connected,
        on_disconnected=rec.on_disconnected,
        **options,
    )


@contextlib.asynccontextmanager
async def running(stream: AriEventStream) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(stream.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, AriApplicationReplaced):
            await asyncio.wait_for(task, GUARD)


def stasis_start(channel_id: str) -> dict[str, Any]:
    return event_json(
        "StasisStart", args=["inbound", "+4930999000"], channel=channel_json(channel_id)
    )


def dtmf(channel_id: str, digit: str) -> dict[str, Any]:
    return event_json(
        "ChannelDtmfReceived", digit=digit, duration_ms=120, channel=channel_json(channel_id)
    )


def test_events_url_maps_http_to_ws() -> None:
    assert events_url("http://127.0.0.1:8088") == "ws://127.0.0.1:8088/ari/events"
    assert events_url("https://pbx.example:8089/") == "wss://pbx.example:8089/ari/events"


def test_backoff_is_full_jitter_capped_and_floored() -> None:
    rec = Recorder()
    stream = make_stream(
        "http://127.0.0.1:1", rec, initial_backoff=0.5, max_backoff=30.0, rng=random.Random(1)
    )
    for failures in range(40):
        cap = min(30.0, 0.5 * 2**failures)
        delays = [stream.backoff_delay(failures) for _ in range(50)]
        assert all(0.05 <= d <= cap for d in delays)
    assert max(stream.backoff_delay(40) for _ in range(200)) > 15.0  # grows to the cap
    assert stream.backoff_delay(10_000) <= 30.0  # no overflow


async def test_events_are_delivered_parsed_and_in_order(fake: FakeAri) -> None:
    rec = Recorder()
    stream = make_stream(fake.url, rec)
    async with running(stream):
        await stream.wait_connected(GUARD)
        assert fake.ws_queries == [{"app": APP, "subscribeAll": "false"}]
        await fake.send_event(stasis_start("c1"))
        for digit in "123#":
            await fake.send_event(dtmf("c1", digit))
        first = await rec.next()
        assert isinstance(first, StasisStart)
        assert first.args == ["inbound", "+4930999000"]
        digits = []
        for _ in range(4):
            event = await rec.next()
            assert isinstance(event, ChannelDtmfReceived)
            digits.append(event.digit)
        assert digits == list("123#")


async def test_dropped_websocket_reconnects_and_calls_on_connected_again(
    fake: FakeAri,
) -> None:
    rec = Recorder()
    stream = make_stream(fake.url, rec)
    async with running(stream):
        await rec.wait_until(lambda: rec.connects == 1)
        await fake.drop_websockets()
        await rec.wait_until(lambda: rec.disconnects == 1 and rec.connects == 2)
        await stream.wait_connected(GUARD)
        await fake.wait_until(lambda: fake.open_sockets == 1)
        await fake.send_event(dtmf("c1", "5"))
        event = await rec.next()
        assert isinstance(event, ChannelDtmfReceived) and event.digit == "5"
        assert fake.ws_accepted == 2


async def test_refused_then_listening_connects(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rec = Recorder()
    stream = make_stream(f"http://127.0.0.1:{port}", rec)
    caplog.set_level(logging.DEBUG, logger="callcontrol.ari.stream")
    async with running(stream):
        with pytest.raises(AriUnavailable):
            await stream.wait_connected(0.2)
        server = FakeAri()
        await server.start(port)
        try:
            await stream.wait_connected(GUARD)
            assert rec.connects == 1
            records = list(caplog.records)
        finally:
            await server.close()
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "reconnecting in" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in records) >= 1
    assert "reconnected" in records[-1].getMessage()


async def test_peer_that_closes_at_once_does_not_cause_a_spin(fake: FakeAri) -> None:
    fake.close_ws_immediately = True
    rec = Recorder()
    stream = make_stream(fake.url, rec, initial_backoff=0.02, max_backoff=0.1)
    async with running(stream):
        await fake.wait_until(lambda: fake.ws_accepted >= 2)
        start = fake.ws_accepted
        await asyncio.sleep(0.5)  # a measurement window, not a wait for an event
        attempts = fake.ws_accepted - start
    # Delays grow 0.02 -> 0.1 s with full jitter: a handful per 0.5 s; a spin is thousands.
    assert 1 <= attempts <= 40
    assert not stream.is_connected


async def test_bad_credentials_keep_retrying_and_warn_once(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="callcontrol.ari.stream")
    rec = Recorder()
    stream = make_stream(fake.url, rec, password="wrong-pw")
    async with running(stream):
        await fake.wait_until(lambda: fake.ws_handshakes >= 4)
    assert rec.connects == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 401" in warnings[0].getMessage()
    assert all("wrong-pw" not in r.getMessage() for r in caplog.records)


async def test_application_replaced_stops_the_stream(fake: FakeAri) -> None:
    rec = Recorder()
    stream = make_stream(fake.url, rec)
    task = asyncio.create_task(stream.run())
    try:
        await stream.wait_connected(GUARD)
        await fake.send_event(dtmf("c1", "1"))
        await fake.send_application_replaced()
        with pytest.raises(AriApplicationReplaced):
            await asyncio.wait_for(task, GUARD)
    finally:
        task.cancel()
    assert isinstance(await rec.next(), ChannelDtmfReceived)
    assert rec.events.empty()
    assert fake.ws_accepted == 1
    assert not stream.is_connected
    assert rec.disconnects == 1


async def test_cancel_while_connected_closes_the_websocket(fake: FakeAri) -> None:
    rec = Recorder()
    stream = make_stream(fake.url, rec)
    task = asyncio.create_task(stream.run())
    await stream.wait_connected(GUARD)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD)
    await fake.wait_until(lambda: fake.open_sockets == 0)
    assert not stream.is_connected
    # run() can be started again after a clean stop
    async with running(stream):
        await stream.wait_connected(GUARD)


async def test_cancel_during_backoff_is_clean(fake: FakeAri) -> None:
    fake.close_ws_immediately = True
    rec = Recorder()
    stream = make_stream(fake.url, rec, initial_backoff=5.0, max_backoff=5.0)
    task = asyncio.create_task(stream.run())
    await fake.wait_until(lambda: fake.ws_accepted == 1)
    await rec.wait_until(lambda: rec.disconnects == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD)


async def test_failing_dispatcher_and_hook_are_not_fatal(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    seen: asyncio.Queue[Event] = asyncio.Queue()

    def dispatch(event: Event) -> None:
        if isinstance(event, ChannelDtmfReceived) and event.digit == "1":
            raise RuntimeError("bug in a call")
        seen.put_nowait(event)

    connected = asyncio.Event()

    async def on_connected() -> None:
        connected.set()
        raise RuntimeError("provisioning failed")

    stream = AriEventStream(
        fake.url, USERNAME, PASSWORD, app=APP, dispatcher=dispatch, on_connected=on_connected
    )
    async with running(stream):
        await stream.wait_connected(GUARD)
        assert connected.is_set()
        await fake.send_event(dtmf("c1", "1"))
        await fake.send_event(dtmf("c1", "2"))
        event = await asyncio.wait_for(seen.get(), GUARD)
        assert isinstance(event, ChannelDtmfReceived) and event.digit == "2"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("on_connected hook failed" in m for m in messages)
    assert any("dispatcher failed" in m for m in messages)


async def test_non_json_messages_are_skipped(fake: FakeAri) -> None:
    rec = Recorder()
    stream = make_stream(fake.url, rec)
    async with running(stream):
        await stream.wait_connected(GUARD)
        for ws in list(fake._sockets):
            await ws.send_str("not json")
            await ws.send_str("[1, 2]")
        await fake.send_event(dtmf("c1", "9"))
        event = await rec.next()
        assert isinstance(event, ChannelDtmfReceived) and event.digit == "9"


def test_stream_rejects_nonsense_backoff() -> None:
    with pytest.raises(ValueError):
        make_stream("http://127.0.0.1:1", Recorder(), initial_backoff=0)
