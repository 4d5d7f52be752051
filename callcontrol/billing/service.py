"""The charging service for the call path: which rate prices a call, and the wallet.

``ChargingService(db)`` is built once in the composition root. ``quote`` answers
from the rates in memory, after one cheap look at which rate set is in force (the
newest set's id): when another process (``callcontrol rates import``) made a newer
one current, the rates are read again first, so the very next call is priced by the
new table. The invalidation rule: a set is never changed once imported, only
superseded by a newer id, so the id read at the start of a call says whether the
cache is current. An incoming call reads it in the same transaction as its number's
routing (``CallStore.inbound_route``) and passes it on (``rate_set_id``), sparing a
round trip. A number no rate prices raises ``NoRate``: the call is refused, never
free.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from callcontrol.billing.errors import NoRate
from callcontrol.billing.rates_file import load_rates_file
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.numbers import NumberType, infer_number_type, number_country, parse_e164
from callcontrol.domain.rating import Direction, Rate, RateSet, select_rate
from callcontrol.errors import InvalidInput
from callcontrol.store.db import Database
from callcontrol.store.rates import RateRepository, current_set_id

__all__ = ["UNREAD", "ChargingService", "Quote", "Unread"]

log = logging.getLogger(__name__)


class Unread(Enum):
    """The id of the rate set in force was not read by the caller."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


@dataclass(frozen=True, slots=True)
class Quote:
    """The rate for a call, and how the number was classified."""

    e164: str
    direction: Direction
    country: str
    number_type: NumberType
    rate: Rate


class ChargingService:
    """Rates (cached) and the wallet, for the call path and the admin commands."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.wallet = Wallet(db)
        self._rates: list[Rate] | None = None
        self._by_id: dict[int, Rate] = {}  # the cached rates, by id
        self._rate_set_id: int | None = None  # the set the cached rates belong to
        self._lock = asyncio.Lock()

    async def load_rates(self) -> list[Rate]:
        """The rates in force; read once, then served from memory until ``reload``."""
        rates = self._rates
        if rates is None:
            async with self._lock:
                rates = self._rates if self._rates is not None else await self.reload()
        return rates

    async def fresh_rates(self, rate_set_id: int | Unread | None = UNREAD) -> list[Rate]:
        """The rates in force now: reloaded first if a newer set became current
        (``rate_set_id``: the id of the set in force, read just now by the caller)."""
        rates = await self.load_rates()
        if isinstance(rate_set_id, Unread):
            rate_set_id = await self.db.unit(current_set_id)
        if rate_set_id != self._rate_set_id:
            async with self._lock:
                rates = await self.reload()
        return rates

    async def reload(self) -> list[Rate]:
        """Read the rates in force again (after an import)."""
        async with self.db.session() as session:
            repo = RateRepository(session)
            current = await repo.current_set()
            rates = await repo.current_rates()
        self._rates = rates
        self._by_id = {rate.id: rate for rate in rates if rate.id is not None}
        self._rate_set_id = current.id if current is not None else None
        log.info("rates loaded: %d (rate set %s)", len(rates), self._rate_set_id)
        return rates

    async def quote(
        self,
        e164: str,
        direction: Direction,
        *,
        number_type: NumberType | None = None,
        rate_set_id: int | Unread | None = UNREAD,
    ) -> Quote:
        """The rate for a call from/to ``e164`` (for inbound calls: the organisation's
        number that was dialled). ``number_type`` overrides phonenumbers' classification
        (an inbound number's type as stored). InvalidInput for a bad number, NoRate
        when no rate prices it."""
        number = parse_e164(e164)
        country = number_country(number)
        kind = number_type or infer_number_type(number)
        rates = await self.fresh_rates(rate_set_id)
        rate = select_rate(rates, direction, number, country, kind)
        if rate is None:
            raise NoRate(f"no {direction} rate for {number} ({country}, {kind}): not allowed")
        return Quote(e164=number, direction=direction, country=country, number_type=kind, rate=rate)

    async def import_rates(self, path: str | Path) -> RateSet:
        """Validate a rate file and make it the rate table in force, in one transaction.

        RatesFileError (every error, file:line) and nothing imported if it is invalid.
        """
        rates_file = load_rates_file(path)
        async with self.db.session() as session:
            rate_set = await RateRepository(session).add_set(
                rates_file.source, rates_file.sha256, rates_file.rates
            )
        await self.reload()
        return rate_set

    async def prune_rates(self, keep: int) -> list[RateSet]:
        """Delete old rate sets, keeping the newest ``keep`` (>= 1) and every set a call
        record or a live call may refer to (``store.rates``); the sets deleted."""
        if keep < 1:
            raise InvalidInput(f"--keep must be at least 1 (the rate table in force), not {keep}")
        async with self.db.session(immediate=True) as session:
            pruned = await RateRepository(session).prune(keep)
        log.info("pruned %d rate set(s): %s", len(pruned), [s.id for s in pruned])
        return pruned

    async def current_rate_set(self) -> RateSet | None:
        async with self.db.session() as session:
            return await RateRepository(session).current_set()

    async def rate(self, rate_id: int) -> Rate | None:
        """Any rate by id, also one no longer in force (a call record's rate). A rate is
        never changed once imported, so one of the cached rates is served from memory
        (an AGI call's settle reads its rate)."""
        cached = self._by_id.get(rate_id)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            return await RateRepository(session).get(rate_id)
