"""The ARI events WebSocket: one reader, reconnecting with backoff.

:class:`AriEventStream` connects to ``ws://<host>/ari/events?app=<app>&subscribeAll=false``
with a Basic auth header, parses each JSON message with :func:`parse_event` and
hands it to a plain dispatcher callable (normally :meth:`EventRouter.dispatch`).

Lifecycle of :meth:`AriEventStream.run`, which runs until cancelled:

    connect --ok--> await on_connected() --> connected --> read events ...
       ^  |                                                     |
       |  +--fails--+                           closed / dropped |
       |            v                                            v
       +---- sleep(backoff) <------------ await on_disconnected()

* Backoff is exponential with full jitter: the n-th consecutive failure sleeps
  ``uniform(floor, min(max_backoff, initial_backoff * factor**n))`` where the floor
  is a tenth of ``initial_backoff``. A connection that delivered an event, or
  stayed up ``stable_after`` seconds, resets the count. There is a sleep before
  every reconnect, so a peer that accepts and closes at once never causes a spin.
* ``on_connected`` is awaited before the first event of each connection is read
  (events wait in the socket meanwhile), so the application can re-provision
  endpoints and re-adopt calls without missing their events. It must not wait
  for events itself. An exception in a hook or the dispatcher is logged, never fatal.
* ``ApplicationReplaced``: another process registered our application name. The
  stream logs an error, stops for good and ``run()`` raises
  :class:`AriApplicationReplaced`, so the two instances do not take the name
  from each other forever.
* An outage is logged at WARNING once, then every tenth attempt at INFO and the
  others at DEBUG; the recovery at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp
from yarl import URL

from callcontrol.errors import AriError, AriUnavailable

from .client import ari_root, basic_auth_header
from .models import ApplicationReplaced, Event, parse_event

logger = logging.getLogger(__name__)

Dispatcher = Callable[[Event], object]
Hook = Callable[[], Awaitable[None]]


class AriApplicationReplaced(AriError):
    """Another connection registered our Stasis application name; we stopped."""

    error_id = "ari_application_replaced"


def events_url(base_url: str) -> str:
    """``http://host:8088`` -> ``ws://host:8088/ari/events`` (https -> wss)."""
    root = URL(ari_root(base_url))
    scheme = {"http": "ws", "https": "wss"}.get(root.scheme, root.scheme)
    return str(root.with_scheme(scheme) / "events")


class AriEventStream:
    """The one events WebSocket of the application, kept connected."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        app: str,
        dispatcher: Dispatcher,
        on_connected: Hook | None = None,
        on_disconnected: Hook | None = None,
        initial_backoff: float = 0.5,
        backoff_factor: float = 2.0,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
        connect_timeout: float = 5.0,
        heartbeat: float | None = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_backoff <= 0 or backoff_factor < 1 or max_backoff < initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff and backoff_factor >= 1")
        self.url = events_url(base_url)
        self.app = app
        self._headers = {"Authorization": basic_auth_header(username, password)}
        self._dispatcher = dispatcher
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._initial_backoff = initial_backoff
        self._backoff_factor = backoff_factor
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._rng = rng or random.Random()
        self._connected = asyncio.Event()
        self._running = False
        self._outage_since: float | None = None
        self._attempts = 0

    def __repr__(self) -> str:
        return f"AriEventStream({self.url!r}, app={self.app!r})"

    @property
    def is_connected(self) -> bool:
        """True while a WebSocket is open and on_connected has run."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until connected; AriUnavailable when that takes longer than ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError as exc:
            raise AriUnavailable(f"ARI events not connected within {timeout} s") from exc

    def backoff_delay(self, failures: int) -> float:
        """The sleep before the next attempt after ``failures`` consecutive failures."""
        growth = self._backoff_factor ** min(failures, 64)
        cap = min(self._max_backoff, self._initial_backoff * growth)
        floor = self._initial_backoff / 10
        return max(floor, self._rng.uniform(0, cap))

    async def run(self) -> None:
        """Keep the WebSocket connected and dispatch events, until cancelled."""
        if self._running:
            raise RuntimeError("AriEventStream.run() is already running")
        self._running = True
        failures = 0
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    self._attempts += 1
                    try:
                        async with asyncio.timeout(self._connect_timeout):
                            ws = await session.ws_connect(
                                self.url,
                                params={"app": self.app, "subscribeAll": "false"},
                                headers=self._headers,
                                heartbeat=self._heartbeat,
                                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                            )
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        reason = _describe(exc)
                    else:
                        self._log_connected(loop.time())
                        healthy, reason = await self._serve(ws, loop)
                        failures = 0 if healthy else failures
                    delay = self.backoff_delay(failures)
                    failures += 1
                    self._log_retry(reason, delay, loop.time())
                    await asyncio.sleep(delay)
        finally:
            self._running = False
            self._connected.clear()

    async def _serve(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[True]],
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[bool, str]:
        """Read one connection until it ends: (was it healthy, why it ended)."""
        opened = loop.time()
        got_event = False
        replaced = False
        reason = "connection closed by Asterisk"
        try:
            await self._call_hook(self._on_connected, "on_connected")
            self._connected.set()
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = _decode(msg.data)
                    if event is None:
                        continue
                    got_event = True
                    if isinstance(event, ApplicationReplaced):
                        replaced = True
                        break
                    self._deliver(event)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"WebSocket error: {ws.exception()}"
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"WebSocket failed: {_describe(exc)}"
        finally:
            self._connected.clear()
            await ws.close()
        await self._call_hook(self._on_disconnected, "on_disconnected")
        if replaced:
            logger.error(
                "ARI application %r was registered by another connection; "
                "stopping the event stream (is a second instance running?)",
                self.app,
            )
            raise AriApplicationReplaced(f"ARI application {self.app!r} was replaced")
        return got_event or loop.time() - opened >= self._stable_after, reason

    def _deliver(self, event: Event) -> None:
        try:
            self._dispatcher(event)
        except Exception:
            logger.exception("ARI event dispatcher failed on %s", event.type)

    async def _call_hook(self, hook: Hook | None, name: str) -> None:
        if hook is None:
            return
        try:
            await hook()
        except Exception:
            logger.exception("ARI events %s hook failed", name)

    def _log_connected(self, now: float) -> None:
        if self._outage_since is None:
            logger.info("ARI events connected to %s (app %s)", self.url, self.app)
        else:
            logger.info(
                "ARI events reconnected to %s after %d attempts (%.1f s)",
                self.url,
                self._attempts,
                now - self._outage_since,
            )
        self._outage_since = None
        self._attempts = 0

    def _log_retry(self, reason: str, delay: float, now: float) -> None:
        if self._outage_since is None:
            self._outage_since = now
            logger.warning("ARI events: %s; reconnecting in %.2f s", reason, delay)
        else:
            # A long outage stays visible at INFO: one line per ten attempts.
            level = logging.INFO if self._attempts % 10 == 0 else logging.DEBUG
            logger.log(
                level,
                "ARI events: %s; attempt %d in %.2f s (down for %.0f s)",
                reason,
                self._attempts + 1,
                delay,
                now - self._outage_since,
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        hint = " (check the ARI user and password)" if exc.status in (401, 403) else ""
        return f"handshake answered HTTP {exc.status}{hint}"
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    return str(exc) or type(exc).__name__


def _decode(text: str) -> Event | None:
    try:
        data = json.loads(text)
    except ValueError:
        logger.warning("ARI events: message is not JSON: %.200s", text)
        return None
    if not isinstance(data, dict):
        logger.warning("ARI events: message is not a JSON object: %.200s", text)
        return None
    return parse_event(data)
