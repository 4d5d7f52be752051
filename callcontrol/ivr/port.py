"""The call as the IVR interpreter sees it: ``CallPort``, and a digit buffer for ports.

The interpreter (``interpreter.py``) knows nothing of ARI: it plays prompts, reads
digits and rings users through a ``CallPort``. The app implements one over ARI
(``calls/ivr_port.py``); ``simulate.py`` implements one from a key script.
``DigitBuffer`` holds the digits a port has received but not yet used, with one
overflow rule for every port: at most ``limit`` wait, and a flood beyond that drops
the *newest* keys (the first keys a caller pressed are the ones they meant). The ARI
port pushes and pops (it reads the call's events itself); a port fed from another
task can also ``read`` with a timeout, and ``close`` wakes that reader with
``CallerHungUp``. It creates no task, so nothing outlives the await that uses it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from callcontrol.ivr.model import Prompt

__all__ = ["CallPort", "CallerHungUp", "DigitBuffer", "RingOutcome"]


class CallerHungUp(Exception):
    """Raised by any port method once the caller is gone."""


class RingOutcome(StrEnum):
    """How ringing a user or an extension ended."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


class CallPort(Protocol):
    """What the interpreter may do with a call."""

    async def play(self, prompts: Sequence[Prompt], *, interruptible: bool) -> str | None:
        """Play in order. If interruptible and a digit arrives (or one is buffered),
        stop at once and return it; else None when all played. Digits pressed during
        a non-interruptible play stay buffered."""
        ...

    async def read_digit(self, timeout: float) -> str | None:  # noqa: ASYNC109
        """The next digit (buffered ones first), or None after ``timeout`` seconds."""
        ...

    def flush_digits(self) -> None:
        """Forget buffered digits."""
        ...

    async def ring_user(self, user_name: str) -> RingOutcome:
        """Ring a user; ANSWERED returns only after the bridged call ended."""
        ...

    async def ring_extension(self, extension: str) -> RingOutcome:
        """Ring the user with this extension; UNKNOWN if there is none."""
        ...

    async def hangup(self) -> None:
        """End the call."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class DigitBuffer:
    """DTMF digits of one call: ``push`` from events, ``read`` with a timeout.

    At most ``limit`` digits wait in the buffer; more are dropped (a flood of keys
    costs nothing). After ``close`` (the caller hung up) every read raises
    ``CallerHungUp``.
    """

    def __init__(self, limit: int = 32) -> None:
        self._digits: deque[str] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[str] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, digit: str) -> None:
        if self._closed:
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(digit)
        elif len(self._digits) < self._limit:
            self._digits.append(digit)

    def close(self) -> None:
        """The caller hung up: wake a waiting reader with ``CallerHungUp``."""
        self._closed = True
        self._digits.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(CallerHungUp())

    def flush(self) -> None:
        self._digits.clear()

    def pop(self) -> str | None:
        """The oldest waiting digit, or None (never waits)."""
        return self._digits.popleft() if self._digits else None

    def pending(self) -> int:
        return len(self._digits)

    async def read(self, timeout: float | None) -> str | None:  # noqa: ASYNC109
        """The next digit, or None after ``timeout`` seconds (None: no limit)."""
        return await self.read_until(None, timeout)

    async def read_until(
        self,
        done: asyncio.Future[Any] | None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str | None:
        """The next digit, or None once ``done`` completes or ``timeout`` passes.

        For barge-in: ``done`` is the playback-finished future of the port.
        """
        if self._closed:
            raise CallerHungUp()
        if self._digits:
            return self._digits.popleft()
        if done is not None and done.done():
            return None
        if self._waiter is not None:
            raise RuntimeError("one reader at a time")
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            waiting: set[asyncio.Future[Any]] = {waiter} if done is None else {waiter, done}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiter = None
            if not waiter.done():
                waiter.cancel()
        if waiter.cancelled():
            return None
        return waiter.result()  # a digit, or CallerHungUp raised
