"""EventRouter: per-channel, in-order delivery and the race-free StasisStart hand-over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from fake_ari import APP, PASSWORD, USERNAME, FakeAri, channel_json, event_json, playback_json

from callcontrol.ari import (
    AriEventStream,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEvents,
    ChannelEventsClosed,
    Dial,
    Event,
    EventRouter,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    parse_event,
)

GUARD = 5.0


def ev(event_type: str, channel_id: str, **fields: Any) -> Event:
    return parse_event(event_json(event_type, channel=channel_json(channel_id), **fields))


def digit(channel_id: str, d: str) -> Event:
    return ev("ChannelDtmfReceived", channel_id, digit=d, duration_ms=100)


def digits_of(events: list[Event]) -> list[str]:
    return [e.digit for e in events if isinstance(e, ChannelDtmfReceived)]


async def drain(events: ChannelEvents, n: int) -> list[Event]:
    return [await events.get(timeout=GUARD) for _ in range(n)]


async def test_each_channel_gets_its_own_events_in_order() -> None:
    router = EventRouter()
    a, b = router.subscribe("a"), router.subscribe("b")
    for d in "123":
        router.dispatch(digit("a", d))
        router.dispatch(digit("b", str(int(d) + 5)))
    router.dispatch(digit("nobody", "0"))  # dropped
    assert digits_of(await drain(a, 3)) == ["1", "2", "3"]
    assert digits_of(await drain(b, 3)) == ["6", "7", "8"]
    assert a.pending == 0 and b.pending == 0
    assert router.subscribers == 2


async def test_dial_goes_to_peer_and_caller_and_playbacks_to_their_channel() -> None:
    router = EventRouter()
    caller, peer = router.subscribe("caller"), router.subscribe("peer")
    dial = parse_event(
        event_json(
            "Dial",
            caller=channel_json("caller"),
            peer=channel_json("peer"),
            dialstatus="ANSWER",
            dialstring="alice",
        )
    )
    router.dispatch(dial)
    finished = parse_event(
        event_json("PlaybackFinished", playback=playback_json("pb", "caller", "sound:x", "done"))
    )
    router.dispatch(finished)
    assert await caller.get(timeout=GUARD) is dial
    assert await peer.get(timeout=GUARD) is dial
    assert isinstance(await caller.get(timeout=GUARD), PlaybackFinished)
    assert peer.pending == 0


async def test_stasis_start_subscribes_before_the_handler_so_nothing_is_lost() -> None:
    seen: list[Event] = []
    done = asyncio.Event()

    async def call(start: StasisStart, events: ChannelEvents) -> None:
        seen.append(start)
        async for event in events:
            seen.append(event)
        done.set()

    tasks: set[asyncio.Task[None]] = set()

    def on_stasis_start(start: StasisStart, events: ChannelEvents) -> None:
        assert router.is_subscribed(start.channel.id)  # subscribed before we run
        tasks.add(asyncio.create_task(call(start, events)))  # runs later, like the app

    router = EventRouter(on_stasis_start)
    # All dispatched synchronously, before the call's task has run at all.
    router.dispatch(ev("StasisStart", "c1", args=["inbound", "+4930999000"]))
    for d in "42":
        router.dispatch(digit("c1", d))
    router.dispatch(ev("StasisEnd", "c1"))
    router.dispatch(ev("ChannelDestroyed", "c1", cause=16, cause_txt="Normal Clearing"))
    await asyncio.wait_for(done.wait(), GUARD)
    assert [type(e) for e in seen] == [
        StasisStart,
        ChannelDtmfReceived,
        ChannelDtmfReceived,
        StasisEnd,
        ChannelDestroyed,
    ]
    assert digits_of(seen) == ["4", "2"]
    assert router.subscribers == 0  # ChannelDestroyed closed the subscription
    await asyncio.gather(*tasks)


async def test_stasis_start_for_a_subscribed_channel_goes_to_its_queue() -> None:
    calls: list[StasisStart] = []
    router = EventRouter(lambda start, events: calls.append(start))
    outbound = router.subscribe("b-leg")  # the app subscribes before originating
    start = ev("StasisStart", "b-leg", args=["dialed"])
    router.dispatch(start)
    assert await outbound.get(timeout=GUARD) is start
    assert calls == []


async def test_failing_handler_leaves_no_subscription(caplog: pytest.LogCaptureFixture) -> None:
    def broken(start: StasisStart, events: ChannelEvents) -> None:
        raise RuntimeError("boom")

    router = EventRouter(broken)
    router.dispatch(ev("StasisStart", "c1"))
    assert router.subscribers == 0
    assert "StasisStart handler failed" in caplog.text


async def test_without_handler_a_new_channel_is_not_subscribed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = EventRouter()
    with caplog.at_level(logging.WARNING):
        router.dispatch(ev("StasisStart", "c1"))
    assert router.subscribers == 0
    assert "no handler" in caplog.text


async def test_unsubscribe_ends_iteration_after_queued_events() -> None:
    router = EventRouter()
    events = router.subscribe("c1")
    assert router.subscribe("c1") is events  # idempotent
    router.dispatch(digit("c1", "7"))
    router.unsubscribe("c1")
    router.unsubscribe("c1")  # idempotent
    router.dispatch(digit("c1", "8"))  # nobody listens any more
    assert events.closed and router.subscribers == 0
    assert digits_of([e async for e in events]) == ["7"]
    with pytest.raises(ChannelEventsClosed):
        await events.get(timeout=GUARD)


async def test_get_times_out_without_losing_later_events() -> None:
    router = EventRouter()
    events = router.subscribe("c1")
    with pytest.raises(TimeoutError):
        await events.get(timeout=0.01)
    router.dispatch(digit("c1", "3"))
    assert digits_of([await events.get(timeout=GUARD)]) == ["3"]


async def test_end_to_end_from_the_websocket_to_a_call() -> None:
    fake = FakeAri()
    await fake.start()
    received: asyncio.Queue[tuple[StasisStart, ChannelEvents]] = asyncio.Queue()
    router = EventRouter(lambda start, events: received.put_nowait((start, events)))
    stream = AriEventStream(fake.url, USERNAME, PASSWORD, app=APP, dispatcher=router.dispatch)
    task = asyncio.create_task(stream.run())
    try:
        await stream.wait_connected(GUARD)
        await fake.send_event(
            event_json("StasisStart", args=["inbound"], channel=channel_json("x"))
        )
        await fake.send_event(
            event_json("ChannelDtmfReceived", digit="5", duration_ms=90, channel=channel_json("x"))
        )
        start, events = await asyncio.wait_for(received.get(), GUARD)
        assert start.channel.id == "x"
        assert digits_of([await events.get(timeout=GUARD)]) == ["5"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fake.close()


def test_dial_without_caller_concerns_only_the_peer() -> None:
    dial = parse_event(event_json("Dial", peer=channel_json("p"), dialstatus="RINGING"))
    assert isinstance(dial, Dial) and dial.caller is None
    router = EventRouter()
    events = router.subscribe("p")
    router.dispatch(dial)
    assert events.pending == 1
