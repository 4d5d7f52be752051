"""Typed ARI objects and events, parsed from Asterisk's JSON.

The shapes follow Asterisk 22's REST API description (``rest-api/*.json``):
``Channel``, ``CallerID``, ``DialplanCEP``, ``Bridge``, ``Playback`` and the
events this application uses. Every model is a frozen dataclass built by a
``from_json`` class method that tolerates missing optional fields.

:func:`parse_event` never raises on what Asterisk sends: an event type it does
not know, or one whose required part (a channel, a bridge, ...) is missing or
malformed, comes back as :class:`UnknownEvent` carrying the raw JSON.
:func:`event_channel_ids` names the channels an event concerns, which is what
the router uses to deliver each event to its call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

JsonObject = Mapping[str, Any]


def _str(data: JsonObject, key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _int(data: JsonObject, key: str, default: int = 0) -> int:
    value = data.get(key)
    if value is None:
        return default
    return int(value)


def _obj(data: JsonObject, key: str) -> JsonObject:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"{key!r} is missing or not an object")
    return value


def _opt_obj(data: JsonObject, key: str) -> JsonObject | None:
    value = data.get(key)
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True)
class CallerId:
    name: str = ""
    number: str = ""

    @classmethod
    def from_json(cls, data: JsonObject | None) -> CallerId:
        if data is None:
            return cls()
        return cls(name=_str(data, "name"), number=_str(data, "number"))


@dataclass(frozen=True, slots=True)
class Dialplan:
    """Where a channel is in the dialplan (ARI ``DialplanCEP``)."""

    context: str
    exten: str
    priority: int
    app_name: str = ""
    app_data: str = ""

    @classmethod
    def from_json(cls, data: JsonObject) -> Dialplan:
        return cls(
            context=_str(data, "context"),
            exten=_str(data, "exten"),
            priority=_int(data, "priority", 1),
            app_name=_str(data, "app_name"),
            app_data=_str(data, "app_data"),
        )


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str = ""
    state: str = ""
    caller: CallerId = field(default_factory=CallerId)
    connected: CallerId = field(default_factory=CallerId)
    dialplan: Dialplan | None = None
    creationtime: str = ""
    language: str = ""
    channelvars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: JsonObject) -> Channel:
        if not isinstance(data.get("id"), str):
            raise ValueError("channel without an id")
        dialplan = _opt_obj(data, "dialplan")
        variables = _opt_obj(data, "channelvars") or {}
        return cls(
            id=data["id"],
            name=_str(data, "name"),
            state=_str(data, "state"),
            caller=CallerId.from_json(_opt_obj(data, "caller")),
            connected=CallerId.from_json(_opt_obj(data, "connected")),
            dialplan=None if dialplan is None else Dialplan.from_json(dialplan),
            creationtime=_str(data, "creationtime"),
            language=_str(data, "language"),
            channelvars={str(k): "" if v is None else str(v) for k, v in variables.items()},
        )


@dataclass(frozen=True, slots=True)
class Bridge:
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    creator: str = ""
    name: str = ""
    channels: tuple[str, ...] = ()
    creationtime: str = ""

    @classmethod
    def from_json(cls, data: JsonObject) -> Bridge:
        if not isinstance(data.get("id"), str):
            raise ValueError("bridge without an id")
        return cls(
            id=data["id"],
            technology=_str(data, "technology"),
            bridge_type=_str(data, "bridge_type"),
            bridge_class=_str(data, "bridge_class"),
            creator=_str(data, "creator"),
            name=_str(data, "name"),
            channels=tuple(str(c) for c in data.get("channels") or ()),
            creationtime=_str(data, "creationtime"),
        )


@dataclass(frozen=True, slots=True)
class Playback:
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""

    @property
    def channel_id(self) -> str | None:
        """The channel played to, when the target is ``channel:<id>``."""
        kind, _, target = self.target_uri.partition(":")
        return target if kind == "channel" and target else None

    @classmethod
    def from_json(cls, data: JsonObject) -> Playback:
        if not isinstance(data.get("id"), str):
            raise ValueError("playback without an id")
        return cls(
            id=data["id"],
            media_uri=_str(data, "media_uri"),
            target_uri=_str(data, "target_uri"),
            state=_str(data, "state"),
        )


# --- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every ARI event carries."""

    type: str
    timestamp: str = ""
    application: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisStart(Event):
    channel: Channel
    args: list[str] = field(default_factory=list)
    replace_channel: Channel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisEnd(Event):
    channel: Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStateChange(Event):
    channel: Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDtmfReceived(Event):
    channel: Channel
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHangupRequest(Event):
    channel: Channel
    cause: int | None = None
    soft: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDestroyed(Event):
    channel: Channel
    cause: int = 0
    cause_txt: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelVarset(Event):
    channel: Channel | None
    variable: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackStarted(Event):
    playback: Playback


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished(Event):
    playback: Playback


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial(Event):
    caller: Channel | None
    peer: Channel
    dialstatus: str
    forwarded: Channel | None = None
    forward: str = ""
    dialstring: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnteredBridge(Event):
    bridge: Bridge
    channel: Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelLeftBridge(Event):
    bridge: Bridge
    channel: Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroyed(Event):
    bridge: Bridge


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationReplaced(Event):
    """Another WebSocket registered our application name; we get no more events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """An event type this module does not model, or one that failed to parse."""

    raw: dict[str, Any] = field(default_factory=dict)


# --- parsing ------------------------------------------------------------------


def _opt_channel(data: JsonObject, key: str) -> Channel | None:
    value = _opt_obj(data, key)
    return None if value is None else Channel.from_json(value)


def _base(data: JsonObject) -> dict[str, Any]:
    return {
        "type": _str(data, "type"),
        "timestamp": _str(data, "timestamp"),
        "application": _str(data, "application"),
    }


def _channel_event(cls: type[StasisEnd | ChannelStateChange]) -> Callable[[JsonObject], Event]:
    def parse(data: JsonObject) -> Event:
        return cls(**_base(data), channel=Channel.from_json(_obj(data, "channel")))

    return parse


def _stasis_start(data: JsonObject) -> Event:
    return StasisStart(
        **_base(data),
        channel=Channel.from_json(_obj(data, "channel")),
        args=[str(a) for a in data.get("args") or ()],
        replace_channel=_opt_channel(data, "replace_channel"),
    )


def _dtmf(data: JsonObject) -> Event:
    return ChannelDtmfReceived(
        **_base(data),
        channel=Channel.from_json(_obj(data, "channel")),
        digit=_str(data, "digit"),
        duration_ms=_int(data, "duration_ms"),
    )


def _hangup_request(data: JsonObject) -> Event:
    cause = data.get("cause")
    return ChannelHangupRequest(
        **_base(data),
        channel=Channel.from_json(_obj(data, "channel")),
        cause=None if cause is None else int(cause),
        soft=bool(data.get("soft", False)),
    )


def _destroyed(data: JsonObject) -> Event:
    return ChannelDestroyed(
        **_base(data),
        channel=Channel.from_json(_obj(data, "channel")),
        cause=_int(data, "cause"),
        cause_txt=_str(data, "cause_txt"),
    )


def _varset(data: JsonObject) -> Event:
    return ChannelVarset(
        **_base(data),
        channel=_opt_channel(data, "channel"),
        variable=_str(data, "variable"),
        value=_str(data, "value"),
    )


def _playback_event(cls: type[PlaybackStarted | PlaybackFinished]) -> Callable[[JsonObject], Event]:
    def parse(data: JsonObject) -> Event:
        return cls(**_base(data), playback=Playback.from_json(_obj(data, "playback")))

    return parse


def _dial(data: JsonObject) -> Event:
    return Dial(
        **_base(data),
        caller=_opt_channel(data, "caller"),
        peer=Channel.from_json(_obj(data, "peer")),
        dialstatus=_str(data, "dialstatus"),
        forwarded=_opt_channel(data, "forwarded"),
        forward=_str(data, "forward"),
        dialstring=_str(data, "dialstring"),
    )


def _bridge_channel_event(
    cls: type[ChannelEnteredBridge | ChannelLeftBridge],
) -> Callable[[JsonObject], Event]:
    def parse(data: JsonObject) -> Event:
        return cls(
            **_base(data),
            bridge=Bridge.from_json(_obj(data, "bridge")),
            channel=Channel.from_json(_obj(data, "channel")),
        )

    return parse


def _bridge_destroyed(data: JsonObject) -> Event:
    return BridgeDestroyed(**_base(data), bridge=Bridge.from_json(_obj(data, "bridge")))


def _application_replaced(data: JsonObject) -> Event:
    return ApplicationReplaced(**_base(data))


_PARSERS: dict[str, Callable[[JsonObject], Event]] = {
    "StasisStart": _stasis_start,
    "StasisEnd": _channel_event(StasisEnd),
    "ChannelStateChange": _channel_event(ChannelStateChange),
    "ChannelDtmfReceived": _dtmf,
    "ChannelHangupRequest": _hangup_request,
    "ChannelDestroyed": _destroyed,
    "ChannelVarset": _varset,
    "PlaybackStarted": _playback_event(PlaybackStarted),
    "PlaybackFinished": _playback_event(PlaybackFinished),
    "Dial": _dial,
    "ChannelEnteredBridge": _bridge_channel_event(ChannelEnteredBridge),
    "ChannelLeftBridge": _bridge_channel_event(ChannelLeftBridge),
    "BridgeDestroyed": _bridge_destroyed,
    "ApplicationReplaced": _application_replaced,
}


def parse_event(data: Mapping[str, Any]) -> Event:
    """Build the typed event for one ARI message; never raises."""
    parser = _PARSERS.get(_str(data, "type"))
    if parser is not None:
        try:
            return parser(data)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("unparsable ARI %s event (%s); kept as UnknownEvent", data["type"], exc)
    return UnknownEvent(**_base(data), raw=dict(data))


def event_channel_ids(event: Event) -> tuple[str, ...]:
    """The ids of the channels an event concerns, in a stable order, no duplicates."""
    ids: tuple[str, ...]
    if isinstance(event, Dial):
        ids = (event.peer.id,) if event.caller is None else (event.peer.id, event.caller.id)
    elif isinstance(event, PlaybackStarted | PlaybackFinished):
        channel_id = event.playback.channel_id
        ids = () if channel_id is None else (channel_id,)
    elif isinstance(event, ChannelVarset):
        ids = () if event.channel is None else (event.channel.id,)
    elif isinstance(
        event,
        StasisStart
        | StasisEnd
        | ChannelStateChange
        | ChannelDtmfReceived
        | ChannelHangupRequest
        | ChannelDestroyed
        | ChannelEnteredBridge
        | ChannelLeftBridge,
    ):
        ids = (event.channel.id,)
    elif isinstance(event, UnknownEvent):
        channel = event.raw.get("channel")
        channel_id = channel.get("id") if isinstance(channel, Mapping) else None
        ids = (channel_id,) if isinstance(channel_id, str) else ()
    else:
        ids = ()
    return tuple(dict.fromkeys(ids))
