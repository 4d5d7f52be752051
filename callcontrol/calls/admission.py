"""Overload control: beyond capacity, new calls are refused before they are answered.

A new call (a carrier's call, a user's outgoing call) is admitted only while what
the app can measure says it keeps up:

    calls in setup   entered Stasis, not yet connected (bridged, or answered by a
                     flow) nor ended: the work in progress, at most ``max_in_setup``
    setup delay      how long the app took from a call's StasisStart to its first
                     step out (ringing the user, answering into a flow), smoothed
                     and fading with time while no call reports: the app's own work
                     (database, CPU) falls behind
    event-loop lag   how late the loop runs a timer (a sampler every ``SAMPLE`` s,
                     a decaying peak): the app's own CPU is saturated
    ARI latency      the ARI client's smoothed request time, or the age of its oldest
                     request still unanswered if more: Asterisk falls behind

A refused call goes back to the dialplan's fail-closed context: the caller hears
"all circuits are busy" as early media and the call is released with cause 34 (SIP
503). It is never answered, has no call record (writing one would be work the app
cannot afford) and is never charged; the refusals are counted and logged once per
``REPORT`` seconds. Once overloaded, the app takes calls again only when lag and
latency fell below half their limits (hysteresis), so it does not flap.

A call that was admitted is never dropped for lack of capacity: the decision is made
once, at entry.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Admission", "AdmissionLimits"]

log = logging.getLogger(__name__)

SAMPLE = 0.05  # seconds between two looks at the event loop
DECAY = 0.8  # per sample: the lag peak fades over about a quarter of a second
REPORT = 5.0  # seconds between two load lines in the log (only while there are calls)
DELAY_WEIGHT = 0.2  # of each call's setup delay in the smoothed value
DELAY_HALF_LIFE = 1.0  # seconds: the smoothed delay halves while no call reports one


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_in_setup: int = 200
    max_loop_lag: float = 0.1  # seconds
    max_ari_latency: float = 0.5  # seconds
    max_setup_delay: float = 0.5  # seconds


class Admission:
    """Decides, for each new call, whether the app can take it now."""

    def __init__(
        self, limits: AdmissionLimits | None = None, *, ari_latency: Callable[[], float]
    ) -> None:
        self.limits = limits or AdmissionLimits()
        self._ari_latency = ari_latency
        self.in_setup = 0
        self.loop_lag = 0.0  # seconds, a decaying peak
        self.overloaded = False
        self.refused = 0  # since the start
        self._refused_reported = 0
        self._lag_peak = 0.0  # since the last report
        self.live = 0  # calls running (set by the manager)
        self._delay = 0.0  # seconds, smoothed, as of ``_delay_at``
        self._delay_at = 0.0
        self.on_lag: Callable[[float], None] | None = None  # each lag sample (the metrics)

    def setup_delay(self) -> float:
        """The smoothed setup delay now (seconds)."""
        if not self._delay:
            return 0.0
        age = asyncio.get_running_loop().time() - self._delay_at
        return self._delay * math.pow(0.5, age / DELAY_HALF_LIFE)

    def took(self, seconds: float) -> None:
        """A call took ``seconds`` from its StasisStart to its first step out."""
        self._delay = self.setup_delay() + (seconds - self.setup_delay()) * DELAY_WEIGHT
        self._delay_at = asyncio.get_running_loop().time()

    def setup_finished(self) -> None:
        """An admitted call left its setup (connected or ended)."""
        self.in_setup -= 1

    def admit(self) -> str | None:
        """None: take the call; else why it is refused."""
        limits = self.limits
        latency = self._ari_latency()
        delay = self.setup_delay()
        if self.in_setup >= limits.max_in_setup:
            reason: str | None = f"{self.in_setup} calls in setup"
        elif self.loop_lag > limits.max_loop_lag:
            reason = f"event loop {self.loop_lag * 1e3:.0f} ms late"
        elif latency > limits.max_ari_latency:
            reason = f"ARI answers in {latency * 1e3:.0f} ms"
        elif delay > limits.max_setup_delay:
            reason = f"calls wait {delay * 1e3:.0f} ms before they ring"
        elif self.overloaded and (
            self.loop_lag > limits.max_loop_lag / 2
            or latency > limits.max_ari_latency / 2
            or delay > limits.max_setup_delay / 2
        ):
            reason = "recovering from overload"
        else:
            reason = None
        if reason is None:
            if self.overloaded:
                log.warning("overload is over: taking new calls again")
            self.overloaded = False
            return None
        if not self.overloaded:
            log.warning("overloaded (%s): refusing new calls before they are answered", reason)
        self.overloaded = True
        self.refused += 1
        return reason

    async def run(self) -> None:
        """Measure the event loop's lag until cancelled; log the load now and then."""
        loop = asyncio.get_running_loop()
        last_report = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(SAMPLE)
            now = loop.time()
            lag = max(0.0, now - before - SAMPLE)
            self.loop_lag = max(lag, self.loop_lag * DECAY)
            self._lag_peak = max(self._lag_peak, lag)
            if self.on_lag is not None:
                self.on_lag(lag)
            if now - last_report >= REPORT:
                last_report = now
                self._report()

    def _report(self) -> None:
        refused = self.refused - self._refused_reported
        if not (self.live or refused):
            return
        self._refused_reported = self.refused
        peak, self._lag_peak = self._lag_peak, 0.0
        log.info(
            "load: %d calls, %d in setup; loop lag %.1f ms (peak %.1f ms); "
            "ARI %.1f ms; setup delay %.1f ms; %d refused for overload",
            self.live,
            self.in_setup,
            self.loop_lag * 1e3,
            peak * 1e3,
            self._ari_latency() * 1e3,
            self.setup_delay() * 1e3,
            refused,
        )
