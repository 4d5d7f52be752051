"""Per-channel event routing: each call reads its own events, in order.

:class:`EventRouter` is the dispatcher the event stream calls for every event.
A call subscribes the channels it owns and reads a :class:`ChannelEvents`
(an unbounded queue) for each. For every event, :meth:`EventRouter.dispatch`
puts it on the queue of each subscribed channel the event concerns (a ``Dial``
concerns its peer and its caller; a playback, the channel it plays to).

A ``StasisStart`` for a channel nobody subscribed is a new call: the router
subscribes the channel first and then calls ``on_stasis_start(event, events)``
synchronously, handing over the already-created queue. Every later event of
that channel is therefore queued in order, even before the call's task runs.
The ``StasisStart`` itself goes to the handler, not into the queue.

After a ``ChannelDestroyed`` (the last event a channel can have) the
subscription is closed: the queue yields what it holds, then iteration ends
and :meth:`ChannelEvents.get` raises :class:`ChannelEventsClosed`. Events for
nobody are logged at DEBUG and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from callcontrol.errors import AriError

from .models import ChannelDestroyed, Event, StasisStart, event_channel_ids

logger = logging.getLogger(__name__)


class ChannelEventsClosed(AriError):
    """The channel's event subscription ended (unsubscribed or destroyed)."""

    error_id = "ari_channel_events_closed"


class ChannelEvents:
    """The events of one channel, in the order Asterisk sent them."""

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False
        self._ended = False

    def __repr__(self) -> str:
        return f"ChannelEvents({self.channel_id!r}, pending={self.pending})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Events queued and not read yet."""
        return self._queue.qsize() - (1 if self._closed and not self._ended else 0)

    def put(self, event: Event) -> None:
        if self._closed:
            logger.debug("channel %s: %s after close, dropped", self.channel_id, event.type)
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        """End the stream after the events already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> Event:  # noqa: ASYNC109
        """The next event; TimeoutError after ``timeout`` s, ChannelEventsClosed at the end."""
        if self._ended:
            raise ChannelEventsClosed(f"events of channel {self.channel_id} are closed")
        if self._queue.empty():
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        else:
            item = self._queue.get_nowait()
        if item is None:
            self._ended = True
            raise ChannelEventsClosed(f"events of channel {self.channel_id} are closed")
        return item

    def __aiter__(self) -> ChannelEvents:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except ChannelEventsClosed:
            raise StopAsyncIteration from None


StasisStartHandler = Callable[[StasisStart, ChannelEvents], object]


class EventRouter:
    """Delivers each event to the queues of the channels it concerns."""

    def __init__(self, on_stasis_start: StasisStartHandler | None = None) -> None:
        self.on_stasis_start = on_stasis_start
        self._channels: dict[str, ChannelEvents] = {}

    @property
    def subscribers(self) -> int:
        """How many channels are subscribed (0 once every call has ended)."""
        return len(self._channels)

    def is_subscribed(self, channel_id: str) -> bool:
        return channel_id in self._channels

    def subscribe(self, channel_id: str) -> ChannelEvents:
        """The channel's queue, created if needed (subscribing twice returns the same one)."""
        events = self._channels.get(channel_id)
        if events is None:
            events = self._channels[channel_id] = ChannelEvents(channel_id)
        return events

    def unsubscribe(self, channel_id: str) -> None:
        """Stop routing the channel's events and close its queue; idempotent."""
        events = self._channels.pop(channel_id, None)
        if events is not None:
            events.close()

    def dispatch(self, event: Event) -> None:
        """Route one event; called by the event stream for each event, in order."""
        delivered = False
        for channel_id in event_channel_ids(event):
            events = self._channels.get(channel_id)
            if events is None:
                if isinstance(event, StasisStart):
                    self._start(event)
                    delivered = True
                continue
            events.put(event)
            delivered = True
            if isinstance(event, ChannelDestroyed):
                self.unsubscribe(channel_id)
        if not delivered:
            logger.debug("ARI %s for no subscriber, dropped", event.type)

    def _start(self, event: StasisStart) -> None:
        channel_id = event.channel.id
        if self.on_stasis_start is None:
            logger.warning("channel %s entered Stasis but no handler is set", channel_id)
            return
        events = self.subscribe(channel_id)
        try:
            self.on_stasis_start(event, events)
        except Exception:
            logger.exception("channel %s: the StasisStart handler failed", channel_id)
            self.unsubscribe(channel_id)
