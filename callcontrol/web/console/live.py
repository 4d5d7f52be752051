"""Live updates: one poller for all clients, a bounded queue per client.

The ``Hub`` runs while the console serves. Once per ``interval`` seconds, and only
while at least one client listens, it reads the wallet (one query, whatever the
number of clients) and takes the live calls' snapshot; it publishes

    ("balance", WalletState)         when balance or held changed
    ("calls", list[LiveRow])         every tick while calls are live, and once
                                     when the last one ended (durations tick)

to every subscriber. A subscriber's queue holds ``QUEUE_SIZE`` events: a client
that falls that far behind is dropped (its stream ends; the browser reconnects
and starts from the current state), never buffered without limit.

Who took a live call and on which number come from its open call record, read
only when the set of live calls changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.live_calls import LiveCall, LiveCallSource
from callcontrol.domain.money import WalletState
from callcontrol.errors import StoreError

__all__ = ["QUEUE_SIZE", "Hub", "LiveRow", "Subscription"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 32


@dataclass(frozen=True, slots=True)
class LiveRow:
    """A live call with who took it and the organisation's number, from its record."""

    call: LiveCall
    user: str | None
    number: str | None


Event = tuple[str, Any]


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.dropped = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Queue the event; False (and dropped) if the client fell behind."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped.set()
            return False
        return True

    async def next(self, timeout: float) -> Event | None:  # noqa: ASYNC109
        """The next event; None after ``timeout`` seconds without one (send a ping)."""
        if self.dropped.is_set():
            raise ConnectionResetError("the client fell behind")
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.queue.get(), timeout)
        return None


class Hub:
    def __init__(
        self,
        wallet_state: Callable[[], Awaitable[WalletState]],
        open_records: Callable[[], Awaitable[list[CallRecord]]],
        live_calls: LiveCallSource | None,
        *,
        interval: float = 1.0,
    ) -> None:
        self._wallet_state = wallet_state
        self._open_records = open_records
        self._live_calls = live_calls
        self.interval = interval
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self.balance: WalletState | None = None
        self.calls: list[LiveRow] = []
        self._records: dict[str, CallRecord] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A subscription, primed with the current state; removed on exit."""
        sub = Subscription()
        if self.balance is not None:
            sub.offer(("balance", self.balance))
        if self.calls:
            sub.offer(("calls", self.calls))
        self._subscribers.add(sub)
        self._wake.set()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def _publish(self, event: Event) -> None:
        for sub in list(self._subscribers):
            if not sub.offer(event):
                log.warning("console: a live-update client fell behind and is dropped")
                self._subscribers.discard(sub)

    async def run(self) -> None:
        """Poll and publish until cancelled."""
        while True:
            if not self._subscribers:
                self.balance = None  # unknown while nobody listens
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.tick()
            except StoreError as exc:
                log.warning("console live updates: %s", exc)
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        state = await self._wallet_state()
        if state != self.balance:
            self.balance = state
            self._publish(("balance", state))
        if self._live_calls is None:
            return
        live = self._live_calls.snapshot()
        if not live and not self.calls:
            return
        ids = {call.call_id for call in live}
        if not ids <= set(self._records):
            self._records = {r.call_id: r for r in await self._open_records()}
        self.calls = [_row(call, self._records.get(call.call_id)) for call in live]
        self._publish(("calls", self.calls))

    def live_rows(self) -> list[LiveRow]:
        """The live calls now (for a page's first rendering)."""
        if self._live_calls is None:
            return []
        return [_row(call, self._records.get(call.call_id)) for call in self._live_calls.snapshot()]

    async def refresh_records(self) -> None:
        self._records = {r.call_id: r for r in await self._open_records()}


def _row(call: LiveCall, record: CallRecord | None) -> LiveRow:
    return LiveRow(
        call=call,
        user=record.user_name if record else None,
        number=record.number_e164 if record else None,
    )
