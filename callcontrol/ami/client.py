"""The AMI client: one logged-in manager connection over panoramisk, kept connected.

    AmiSession.open(...)    connect and log in: AmiLoginRefused / AmiUnavailable
      .request(action)      one action: its response, or its event list, under a timeout
      .closed               set when the connection ended (PBX restart, shutdown, close())
    AmiFeed.run()           keep a session open and hand its events on; reconnect with
                            capped exponential back-off (full jitter) until cancelled

Why the lifecycle is ours and only the framing panoramisk's (read in panoramisk 1.4,
``manager.py`` and ``ami_protocol.py``):

* ``Manager.login()`` records ``authenticated = False`` on an ``Error`` answer and says
  nothing. Asterisk then closes the connection and ``Manager`` reconnects every
  ``reconnect_timeout`` seconds for ever, logging only "Connection lost": a wrong secret
  looks like a flaky network. Here the ``Login`` action is sent by us and its answer
  checked: ``AmiLoginRefused("AMI login refused for user X ...")``, never the secret.
* ``Manager`` reconnects at a fixed interval from ``connection_lost`` and also when the
  first connect fails. The subclass below turns both into "this session is over";
  ``AmiFeed`` decides when to try again (back-off from ``initial`` to ``max_backoff``).
* Actions pending when the connection drops are queued by ``AMIProtocol.close()`` and
  re-sent after the next ``FullyBooted`` event. A request here fails at once instead
  (``AmiUnavailable``): an action never runs twice, on a session it was not meant for.
* Its pinger only writes ``Ping`` and never reads the answer, so a half-open connection
  goes unnoticed: ``AmiFeed`` pings itself and drops a session whose answer is late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from callcontrol.errors import AmiLoginRefused, AmiUnavailable

log = logging.getLogger(__name__)
_SECRET = re.compile(r"(?i)(secret'?\s*[:=]\s*'?)[^'\s,>]+")


class _RedactSecrets(logging.Filter):
    """panoramisk logs a whole action when its write fails ("Fail to send %r"): a
    Login's secret would be in it. Mask it on the way out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ecret" in message:
            record.msg, record.args = _SECRET.sub(r"\1********", message), ()
        return True


panoramisk_log = logging.getLogger("callcontrol.ami.panoramisk")  # handed to each Manager
panoramisk_log.addFilter(_RedactSecrets())

EventHandler = Callable[[Mapping[str, str]], None]
Hook = Callable[["AmiSession"], Awaitable[None]]


class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's Manager without its own reconnecting and without queued re-sends."""

    def __init__(self, closed: asyncio.Event, **config: Any) -> None:
        super().__init__(**config)
        self._closed = closed

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # AmiSession.open() awaits the same task and reports the error
        super().connection_made(f)
        pinger: asyncio.TimerHandle | None = getattr(self, "pinger", None)
        if pinger is not None:  # see the module docstring: AmiFeed pings
            pinger.cancel()
            self.pinger = None

    def connection_lost(self, exc: object) -> None:
        self._connected = False
        self._fail_pending()
        self._closed.set()

    def close(self) -> None:
        super().close()
        self._fail_pending()
        self._closed.set()

    def _fail_pending(self) -> None:
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(AmiUnavailable("the AMI connection closed"))


def _listing(answer: Message | list[Message]) -> list[Mapping[str, str]]:
    return list(answer) if isinstance(answer, list) else [answer]


class AmiSession:
    """One connection to Asterisk's manager interface, logged in."""

    def __init__(self, manager: _Manager, closed: asyncio.Event, where: str, timeout: float):
        self._manager = manager
        self.closed = closed
        self.where = where
        self.timeout = timeout

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109  (one limit for connect, login and requests)
        events: str = "off",
        on_event: EventHandler | None = None,
    ) -> AmiSession:
        """Connect and log in. ``events``: the event classes to receive ("off", "call",
        ...); each one reaches ``on_event`` as a case-insensitive mapping of its headers."""
        where = f"{host}:{port}"
        closed = asyncio.Event()
        manager = _Manager(
            closed,
            host=host,
            port=port,
            loop=asyncio.get_running_loop(),
            log=panoramisk_log,
        )
        if on_event is not None:

            def dispatch(_manager: object, event: Message) -> None:
                try:
                    on_event(event)
                except Exception:  # a handler's bug must not cut the connection
                    log.exception("AMI event %s: its handler failed", event.get("Event"))

            manager.register_event("*", dispatch)
        try:
            async with asyncio.timeout(timeout):
                await manager.connect()
        except (OSError, TimeoutError) as exc:
            manager.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or exc
            raise AmiUnavailable(f"AMI not reachable at {where}: {reason}") from exc
        session = cls(manager, closed, where, timeout)
        try:
            answer = await session.request(
                {"Action": "Login", "Username": username, "Secret": secret, "Events": events}
            )
        except BaseException:
            session.close()
            raise
        if not isinstance(answer, Message) or not answer.success:
            session.close()
            said = answer.get("Message", "") if isinstance(answer, Message) else ""
            raise AmiLoginRefused(
                f"AMI login refused for user {username} at {where}"
                + (f" ({said})" if said else "")
                + ": check the settings ami_username and ami_password (or <data_dir>/ami.secret)"
            )
        log.debug("AMI logged in at %s as %s", where, username)
        return session

    async def request(self, action: Mapping[str, str]) -> Message | list[Message]:
        """Send one action; its answer (a list when the PBX answers with an event list)."""
        if self.closed.is_set():
            raise AmiUnavailable(f"the AMI connection to {self.where} is closed")
        name = action.get("Action", "?")
        future = self._manager.send_action(dict(action))
        try:
            async with asyncio.timeout(self.timeout):
                answer: Message | list[Message] = await future
        except TimeoutError as exc:
            raise AmiUnavailable(f"AMI {name} at {self.where}: no answer in time") from exc
        return answer

    async def listing(self, action: Mapping[str, str]) -> list[Mapping[str, str]]:
        """An action whose answer is an event list: its events (without the response
        and the ``...Complete`` event); [] when the PBX has none to list."""
        items = _listing(await self.request(action))
        return [m for m in items if "Event" in m and not m["Event"].endswith("Complete")]

    def close(self) -> None:
        self._manager.close()


class AmiFeed:
    """A session kept open by reconnecting; its events go to ``on_event``."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: str = "call",
        on_event: EventHandler | None = None,
        on_connected: Hook | None = None,
        timeout: float = 5.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        keepalive: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial_backoff <= max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self._events = events
        self._on_event = on_event
        self._on_connected = on_connected
        self._timeout = timeout
        self._initial = initial_backoff
        self._max = max_backoff
        self._keepalive = keepalive
        self._rng = rng or random.Random()
        self.session: AmiSession | None = None
        self.connected = asyncio.Event()

    def backoff_delay(self, failures: int) -> float:
        """Sleep before the next attempt after ``failures`` consecutive failures: uniform
        in [initial/10, min(max_backoff, initial * 2**failures)] (full jitter)."""
        cap = min(self._max, self._initial * 2 ** min(failures, 32))
        return max(self._initial / 10, self._rng.uniform(0, cap))

    async def run(self) -> None:
        """Keep connected until cancelled."""
        failures = 0
        while True:
            try:
                session = await AmiSession.open(
                    self.host,
                    self.port,
                    self.username,
                    self._secret,
                    timeout=self._timeout,
                    events=self._events,
                    on_event=self._on_event,
                )
            except AmiLoginRefused as exc:
                log.error("%s", exc)  # a wrong secret is fixed by an operator: keep trying
            except AmiUnavailable as exc:
                log.warning("%s", exc)
            else:
                failures = 0
                await self._serve(session)
            delay = self.backoff_delay(failures)
            failures += 1
            log.info("AMI: reconnecting to %s:%s in %.1f s", self.host, self.port, delay)
            await asyncio.sleep(delay)

    async def _serve(self, session: AmiSession) -> None:
        self.session = session
        log.info("AMI connected to %s as %s", session.where, self.username)
        try:
            if self._on_connected is not None:
                await self._on_connected(session)
            self.connected.set()
            while not session.closed.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._keepalive):
                        await session.closed.wait()
                if not session.closed.is_set():
                    await session.request({"Action": "Ping"})
        except AmiUnavailable as exc:
            log.warning("AMI connection to %s failed: %s", session.where, exc)
        finally:
            self.connected.clear()
            self.session = None
            session.close()
        log.warning("AMI connection to %s lost", session.where)
