"""The ARI adapter: REST client, events WebSocket with reconnect, per-channel routing.

AriClient       REST calls (client.py), library errors mapped to callcontrol.errors
HttpClient      the REST calls' kept-alive HTTP/1.1 connections (http.py)
AriEventStream  the one events WebSocket, reconnecting with backoff (stream.py)
EventRouter     per-channel, in-order delivery of events to calls (router.py)
models          typed channels, bridges, playbacks and events (models.py)
"""

from .client import AriClient
from .models import (
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
    Event,
    Playback,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    event_channel_ids,
    parse_event,
)
from .router import ChannelEvents, ChannelEventsClosed, EventRouter
from .stream import AriApplicationReplaced, AriEventStream

__all__ = [
    "ApplicationReplaced",
    "AriApplicationReplaced",
    "AriClient",
    "AriEventStream",
    "Bridge",
    "BridgeDestroyed",
    "CallerId",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelEvents",
    "ChannelEventsClosed",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "ChannelVarset",
    "Dial",
    "Dialplan",
    "Event",
    "EventRouter",
    "Playback",
    "PlaybackFinished",
    "PlaybackStarted",
    "StasisEnd",
    "StasisStart",
    "UnknownEvent",
    "event_channel_ids",
    "parse_event",
]
