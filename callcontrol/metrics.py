"""Prometheus metrics of one serving process, on a registry of its own.

One ``Metrics`` per app (``App`` builds it), never the library's global registry, so
tests and several apps in one process do not collide. The hot path only increments
counters whose label values were bound once here (no label lookup per call); what
can be read when scraped is read then, by callbacks and collectors:

    callcontrol_calls_in_progress{direction}            gauge, from the call manager
    callcontrol_calls_in_setup, callcontrol_overloaded  gauges, from overload control
    callcontrol_call_setups_total{direction}            new calls offered (inbound:
                                                        the carrier's, outbound: users')
    callcontrol_call_refusals_total{cause}              refused by the app: REFUSAL_CAUSES
    callcontrol_charging_operations_total{operation,outcome}
                                                        authorize, slice, settle:
                                                        ok, no_credit, database, error
    callcontrol_wallet_balance_microcredits,            the wallet, read when scraped
    callcontrol_wallet_held_microcredits
    callcontrol_ari_request_duration_seconds{method,route}
                                                        histogram; the route is the
                                                        path's template (ids as {id})
    callcontrol_ari_connected                           1 while the events WebSocket is up
    callcontrol_ari_reconnects_total                    connections after the first
    callcontrol_event_loop_lag_seconds                  histogram of overload control's
                                                        samples (every 50 ms)
    process_*                                           CPU, memory, open files

Money stays integer micro-credits here too (a float64 holds them exactly up to 9e15).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callcontrol.domain.call_records import Disposition

__all__ = ["CONTENT_TYPE", "REFUSAL_CAUSES", "Metrics", "route_template"]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
REFRESH_TIMEOUT = 2.0  # seconds a scrape waits for the values it reads (the wallet)

DIRECTIONS = ("inbound", "outbound", "internal")
# Why the app refused a call: the refusal's disposition -> its cause label. Outcomes
# that are the callee's (busy, no answer, unavailable) are not refusals.
REFUSAL_CAUSES: Mapping[str, str] = {
    Disposition.REFUSED_NO_CREDIT: "no_credit",
    Disposition.REFUSED_NO_RATE: "no_rate",
    Disposition.REFUSED_UNKNOWN_NUMBER: "unknown_number",
    Disposition.REFUSED_NO_ROUTE: "no_routing",
    Disposition.REFUSED_SUSPENDED: "suspended",
    Disposition.INVALID_NUMBER: "invalid_number",
    Disposition.NOT_ALLOWED: "not_allowed",
    Disposition.FAILED: "failed",  # the database or the flow failed: "service unavailable"
}
OTHER_CAUSES = ("overload", "shutting_down")  # refused before the call began
CHARGING_OPERATIONS = ("authorize", "slice", "settle")
CHARGING_OUTCOMES = ("ok", "no_credit", "database", "error")

ARI_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# ARI's path words (resources and actions); any other segment is an id or a name.
ARI_WORDS = frozenset(
    (
        *("channels", "bridges", "playbacks", "sounds", "recordings", "endpoints"),
        *("applications", "asterisk", "deviceStates", "events", "mailboxes"),
        *("create", "externalMedia", "answer", "ring", "dtmf", "mute", "unmute", "hold"),
        *("moh", "silence", "play", "record", "variable", "snoop", "dial", "progress"),
        *("rtp_statistics", "continue", "move", "redirect", "addChannel", "removeChannel"),
        *("videoSource", "control", "stop", "pause", "unpause", "copy", "live", "stored"),
        *("file", "subscription", "eventFilter", "config", "dynamic", "info", "ping"),
        *("logging", "modules", "rotate", "res_pjsip", "endpoint", "auth", "aor", "PJSIP"),
        *("sendMessage", "user", "references"),
    )
)
MAX_ROUTES = 200  # a bound on the route label's values, whatever the paths


def route_template(path: str) -> str:
    """``/channels/1700.42/play`` -> ``/channels/{id}/play``: bounded label values."""
    path = path.split("?", 1)[0]
    return "/" + "/".join(
        segment if segment in ARI_WORDS else "{id}" for segment in path.strip("/").split("/")
    )


class _CallsInProgress(Collector):
    """The calls in progress by direction, counted when scraped (nothing on the hot path)."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "callcontrol_calls_in_progress",
            "Calls this process runs now, by direction.",
            labels=["direction"],
        )
        counts = dict.fromkeys(DIRECTIONS, 0)
        if self.source is not None:
            counts.update(self.source())
        for direction, count in counts.items():
            family.add_metric([direction], count)
        yield family


class Metrics:
    """The metrics of one app; the call engine and charging reach it through hooks."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        self._in_progress = _CallsInProgress()
        registry.register(self._in_progress)
        self._in_setup = Gauge(
            "callcontrol_calls_in_setup",
            "Calls admitted and not yet connected nor ended (overload control's count).",
            registry=registry,
        )
        self._overloaded = Gauge(
            "callcontrol_overloaded",
            "1 while overload control refuses new calls.",
            registry=registry,
        )
        setups = Counter(
            "callcontrol_call_setups",
            "New calls offered to the app (entered Stasis), admitted or not, by direction "
            "(inbound: from the carrier; outbound: from users' phones, internal ones too).",
            ["direction"],
            registry=registry,
        )
        self._setups = {d: setups.labels(d) for d in ("inbound", "outbound")}
        refusals = Counter(
            "callcontrol_call_refusals",
            "Calls the app refused, by cause.",
            ["cause"],
            registry=registry,
        )
        causes = (*REFUSAL_CAUSES.values(), *OTHER_CAUSES)
        self._refusals = {cause: refusals.labels(cause) for cause in causes}
        self._refused_by_disposition = {
            disposition: self._refusals[cause] for disposition, cause in REFUSAL_CAUSES.items()
        }
        operations = Counter(
            "callcontrol_charging_operations",
            "Charging operations by outcome: authorize (hold the first block), slice "
            "(charge the used time, hold the next slice), settle (the final charge).",
            ["operation", "outcome"],
            registry=registry,
        )
        self._charging = {
            (op, outcome): operations.labels(op, outcome)
            for op in CHARGING_OPERATIONS
            for outcome in CHARGING_OUTCOMES
        }
        self._balance = Gauge(
            "callcontrol_wallet_balance_microcredits",
            "The wallet's balance (1 credit = 1,000,000), read when scraped.",
            registry=registry,
        )
        self._held = Gauge(
            "callcontrol_wallet_held_microcredits",
            "Credits held for live calls, read when scraped.",
            registry=registry,
        )
        self._ari = Histogram(
            "callcontrol_ari_request_duration_seconds",
            "ARI REST requests' answer time, by method and route template.",
            ["method", "route"],
            buckets=ARI_BUCKETS,
            registry=registry,
        )
        self._ari_routes: dict[tuple[str, str], Histogram] = {}
        self._ari_connected = Gauge(
            "callcontrol_ari_connected",
            "1 while the ARI events WebSocket is connected.",
            registry=registry,
        )
        self._ari_reconnects = Counter(
            "callcontrol_ari_reconnects",
            "Connections of the ARI events WebSocket after the first.",
            registry=registry,
        )
        self._ari_connects = 0
        self._loop_lag = Histogram(
            "callcontrol_event_loop_lag_seconds",
            "How late the event loop ran a timer, sampled every 50 ms.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.observe_loop_lag = self._loop_lag.observe
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    # ---- sources read when scraped ------------------------------------------------------

    def watch_calls(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """The calls in progress by direction (``CallManager.counts_by_direction``)."""
        self._in_progress.source = counts

    def watch_admission(self, in_setup: Callable[[], int], overloaded: Callable[[], bool]) -> None:
        self._in_setup.set_function(lambda: float(in_setup()))
        self._overloaded.set_function(lambda: float(overloaded()))

    def watch_ari(self, connected: Callable[[], bool]) -> None:
        self._ari_connected.set_function(lambda: float(connected()))

    def watch_wallet(self, state: Callable[[], Awaitable[tuple[int, int]]]) -> None:
        """``state``: the wallet's (balance, held), awaited at each scrape."""

        async def refresh() -> None:
            balance, held = await state()
            self._balance.set(balance)
            self._held.set(held)

        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        """Read what is read when scraped; a source that fails keeps its last values."""
        for refresher in self._refreshers:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT):
                    await refresher()
            except Exception as exc:  # a scrape must answer even when the database does not
                log.debug("metrics: could not read a value: %s", exc or type(exc).__name__)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    # ---- hooks on the hot path: one increment each ------------------------------------------

    def call_setup(self, direction: str) -> None:
        self._setups[direction].inc()

    def call_refused(self, cause: str) -> None:
        """Refused before the call began: ``overload`` or ``shutting_down``."""
        self._refusals[cause].inc()

    def call_refused_as(self, disposition: str) -> None:
        """A call refused with this disposition (not counted unless it is a refusal)."""
        counter = self._refused_by_disposition.get(disposition)
        if counter is not None:
            counter.inc()

    def charging(self, operation: str, outcome: str) -> None:
        self._charging[operation, outcome].inc()

    def ari_request(self, method: str, path: str, seconds: float) -> None:
        route = route_template(path)
        child = self._ari_routes.get((method, route))
        if child is None:
            if len(self._ari_routes) >= MAX_ROUTES:
                route = "other"
            child = self._ari_routes.setdefault((method, route), self._ari.labels(method, route))
        child.observe(seconds)

    def ari_connected(self) -> None:
        """The events WebSocket (re)connected."""
        self._ari_connects += 1
        if self._ari_connects > 1:
            self._ari_reconnects.inc()
