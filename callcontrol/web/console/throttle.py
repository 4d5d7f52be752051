"""Login rate limiting: failed sign-ins counted per client address and per admin name.

After ``max_failures`` failures within ``window`` seconds for the address or for the
name, further attempts are refused (HTTP 429, ``Retry-After``) without checking the
password, until the oldest failure leaves the window. A success clears the
address's and the name's failures. Kept in memory (one serve process); the number
of keys is bounded, the oldest dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]

MAX_KEYS = 10_000


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, address: str, name: str) -> int:
        """Seconds until an attempt is allowed (0: allowed now)."""
        now = self._clock()
        wait = 0.0
        for key in (f"ip:{address}", f"name:{name.lower()}"):
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, address: str, name: str) -> None:
        now = self._clock()
        for key in (f"ip:{address}", f"name:{name.lower()}"):
            times = self._failures.setdefault(key, deque(maxlen=self.max_failures))
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, address: str, name: str) -> None:
        self._failures.pop(f"ip:{address}", None)
        self._failures.pop(f"name:{name.lower()}", None)
