"""parse_event and the models on payloads shaped like Asterisk 22's."""

from __future__ import annotations

from typing import Any

import pytest
from fake_ari import APP, TIMESTAMP, bridge_json, channel_json, event_json, playback_json

from callcontrol.ari import (
    ApplicationReplaced,
    Bridge,
    BridgeDestroyed,
    CallerId,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    ChannelVarset,
    Dial,
    Dialplan,
    Playback,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    event_channel_ids,
    parse_event,
)

C1 = channel_json("1715000000.1", channelvars={"CALLCONTROL_CALL_ID": "call-42"})
C2 = channel_json("1715000000.2", name="PJSIP/alice-00000002", state="Ringing")


def test_channel_is_parsed_fully() -> None:
    channel = Channel.from_json(C1)
    assert channel == Channel(
        id="1715000000.1",
        name="PJSIP/carrier-00000001",
        state="Ring",
        caller=CallerId(name="", number="+4930123456"),
        connected=CallerId(),
        dialplan=Dialplan(
            context="from-carrier",
            exten="+4930999000",
            priority=2,
            app_name="Stasis",
            app_data=f"{APP},inbound,+4930999000",
        ),
        creationtime=TIMESTAMP,
        language="en",
        channelvars={"CALLCONTROL_CALL_ID": "call-42"},
    )


def test_channel_tolerates_missing_optional_fields() -> None:
    channel = Channel.from_json({"id": "x", "channelvars": {"A": None}})
    assert channel.dialplan is None
    assert channel.caller == CallerId()
    assert channel.channelvars == {"A": ""}
    with pytest.raises(ValueError):
        Channel.from_json({"name": "no id"})


@pytest.mark.parametrize(
    ("payload", "cls", "channel_ids"),
    [
        (
            event_json("StasisStart", args=["inbound", "+4930999000"], channel=C1),
            StasisStart,
            ("1715000000.1",),
        ),
        (event_json("StasisEnd", channel=C1), StasisEnd, ("1715000000.1",)),
        (event_json("ChannelStateChange", channel=C2), ChannelStateChange, ("1715000000.2",)),
        (
            event_json("ChannelDtmfReceived", digit="#", duration_ms=140, channel=C1),
            ChannelDtmfReceived,
            ("1715000000.1",),
        ),
        (
            event_json("ChannelHangupRequest", cause=16, soft=True, channel=C1),
            ChannelHangupRequest,
            ("1715000000.1",),
        ),
        (
            event_json("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=C1),
            ChannelDestroyed,
            ("1715000000.1",),
        ),
        (
            event_json("ChannelVarset", variable="TIMEOUT(absolute)", value="3", channel=C1),
            ChannelVarset,
            ("1715000000.1",),
        ),
        (event_json("ChannelVarset", variable="G", value="1"), ChannelVarset, ()),
        (
            event_json(
                "PlaybackStarted",
                playback=playback_json("pb-1", "1715000000.1", "sound:a,sound:b", "playing"),
            ),
            PlaybackStarted,
            ("1715000000.1",),
        ),
        (
            event_json(
                "PlaybackFinished",
                playback={
                    **playback_json("pb-2", "x", "sound:a", "done"),
                    "target_uri": "bridge:b",
                },
            ),
            PlaybackFinished,
            (),
        ),
        (
            event_json(
                "Dial",
                caller=C1,
                peer=C2,
                dialstatus="ANSWER",
                dialstring="alice",
                forward="",
            ),
            Dial,
            ("1715000000.2", "1715000000.1"),
        ),
        (
            event_json(
                "ChannelEnteredBridge", bridge=bridge_json("br", ["1715000000.1"]), channel=C1
            ),
            ChannelEnteredBridge,
            ("1715000000.1",),
        ),
        (
            event_json("ChannelLeftBridge", bridge=bridge_json("br"), channel=C1),
            ChannelLeftBridge,
            ("1715000000.1",),
        ),
        (event_json("BridgeDestroyed", bridge=bridge_json("br")), BridgeDestroyed, ()),
        (event_json("ApplicationReplaced"), ApplicationReplaced, ()),
        (event_json("ChannelTalkingStarted", channel=C1), UnknownEvent, ("1715000000.1",)),
        (event_json("DeviceStateChanged", device_state={"name": "PJSIP/alice"}), UnknownEvent, ()),
    ],
)
def test_every_event_type_parses(
    payload: dict[str, Any], cls: type, channel_ids: tuple[str, ...]
) -> None:
    event = parse_event(payload)
    assert type(event) is cls
    assert event.type == payload["type"]
    assert event.timestamp == TIMESTAMP
    assert event.application == APP
    assert event_channel_ids(event) == channel_ids


def test_event_fields() -> None:
    start = parse_event(event_json("StasisStart", args=["outbound", "100"], channel=C1))
    assert isinstance(start, StasisStart)
    assert start.args == ["outbound", "100"] and start.replace_channel is None
    assert start.channel.channelvars["CALLCONTROL_CALL_ID"] == "call-42"

    dtmf = parse_event(event_json("ChannelDtmfReceived", digit="5", duration_ms=90, channel=C1))
    assert isinstance(dtmf, ChannelDtmfReceived) and (dtmf.digit, dtmf.duration_ms) == ("5", 90)

    gone = parse_event(event_json("ChannelDestroyed", cause=17, cause_txt="User busy", channel=C2))
    assert isinstance(gone, ChannelDestroyed) and (gone.cause, gone.cause_txt) == (17, "User busy")

    hangup = parse_event(event_json("ChannelHangupRequest", channel=C1))
    assert isinstance(hangup, ChannelHangupRequest) and hangup.cause is None

    dial = parse_event(event_json("Dial", caller=C1, peer=C2, dialstatus="BUSY", forwarded=C1))
    assert isinstance(dial, Dial) and dial.dialstatus == "BUSY"
    assert dial.forwarded is not None and dial.forwarded.id == C1["id"]

    played = parse_event(
        event_json("PlaybackStarted", playback=playback_json("pb", "c", "sound:x", "playing"))
    )
    assert isinstance(played, PlaybackStarted)
    assert played.playback == Playback(
        id="pb", media_uri="sound:x", target_uri="channel:c", state="playing"
    )

    entered = parse_event(
        event_json("ChannelEnteredBridge", bridge=bridge_json("br", ["a", "b"]), channel=C1)
    )
    assert isinstance(entered, ChannelEnteredBridge)
    assert entered.bridge.channels == ("a", "b")
    assert isinstance(entered.bridge, Bridge) and entered.bridge.bridge_type == "mixing"


def test_malformed_or_unknown_events_become_unknown_event() -> None:
    no_channel = event_json("StasisStart", args=[])
    event = parse_event(no_channel)
    assert isinstance(event, UnknownEvent)
    assert event.type == "StasisStart" and event.raw == no_channel
    bad_digit = parse_event(
        event_json("ChannelDtmfReceived", digit="1", duration_ms="long", channel=C1)
    )
    assert isinstance(bad_digit, UnknownEvent)
    empty = parse_event({})
    assert isinstance(empty, UnknownEvent) and empty.type == "" and event_channel_ids(empty) == ()
