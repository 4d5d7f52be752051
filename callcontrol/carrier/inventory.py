"""The default number catalogue: an inventory in our own database.

Admins or operators import the numbers they hold from their carriers with their
prices (``callcontrol numbers catalogue import FILE``, ``catalogue_file.py``); the
organisation buys from it. Each state change is one conditional UPDATE
(``store.catalogue``), so two purchases of one number never both succeed, on
SQLite or on a PostgreSQL shared by several processes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import phonenumbers

from callcontrol.carrier.port import (
    MAX_SEARCH_LIMIT,
    Coverage,
    NumberCatalogue,
    Offer,
    Reservation,
    SearchQuery,
)
from callcontrol.domain.numbers import check_country
from callcontrol.domain.text import shown
from callcontrol.errors import Conflict, InvalidInput, NotFound
from callcontrol.store.catalogue import CatalogueRepository
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow

__all__ = ["InventoryCatalogue"]

_MAX_DIGITS = 15


def _digits(text: str, what: str) -> str:
    value = text.strip().replace(" ", "")
    if value and (not value.isdigit() or not value.isascii() or len(value) > _MAX_DIGITS):
        raise InvalidInput(f"{what} {shown(text)} must be 1 to {_MAX_DIGITS} digits")
    return value


def _e164_prefix(country: str, prefix: str) -> str:
    """``+4420`` as given, or national digits (``20``, ``020``) after the country code."""
    text = prefix.strip().replace(" ", "")
    if not text:
        return ""
    if text.startswith("+"):
        return "+" + _digits(text[1:], "the prefix")
    digits = _digits(text, "the area code or prefix").lstrip("0")
    return f"+{phonenumbers.country_code_for_region(country)}{digits}"


class InventoryCatalogue(NumberCatalogue):
    """``NumberCatalogue`` on the ``catalogue_numbers`` table; ``clock`` gives now."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def import_offers(self, offers: list[Offer]) -> tuple[int, int]:
        """Add or re-price the numbers of a catalogue file; (added, updated)."""
        async with self._db.session(immediate=True) as session:
            return await CatalogueRepository(session).import_offers(offers)

    async def coverage(self) -> list[Coverage]:
        async with self._db.session() as session:
            return await CatalogueRepository(session).coverage(self._clock())

    async def search(self, query: SearchQuery) -> list[Offer]:
        country = check_country(query.country)
        if not 1 <= query.limit <= MAX_SEARCH_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_SEARCH_LIMIT}")
        prefix = _e164_prefix(country, query.prefix)
        contains = _digits(query.contains, "the digits to contain")
        async with self._db.session() as session:
            repo = CatalogueRepository(session)
            offered = await repo.offered(country)
            if not offered:
                everywhere = sorted({c for c, _ in await repo.offered()})
                raise NotFound(
                    f"the catalogue offers no numbers in {country}; it covers "
                    f"{', '.join(everywhere) or 'no country yet (import a catalogue file)'}"
                )
            if query.number_type.value not in {t for _, t in offered}:
                kinds = ", ".join(sorted({t for _, t in offered}))
                raise NotFound(
                    f"the catalogue offers no {query.number_type} numbers in {country}; "
                    f"it offers {kinds} there"
                )
            return await repo.search(
                self._clock(),
                country=country,
                number_type=query.number_type,
                e164_prefix=prefix,
                contains=contains,
                limit=query.limit,
            )

    async def reserve(self, e164: str, seconds: int) -> Reservation:
        now = self._clock()
        token = secrets.token_hex(16)
        until = now + timedelta(seconds=seconds)
        async with self._db.session(immediate=True) as session:
            repo = CatalogueRepository(session)
            if await repo.reserve(e164, token, until, now):
                offer = await repo.offer(e164)
                if offer is None:  # pragma: no cover - reserved in this transaction
                    raise NotFound(f"{e164} vanished from the catalogue")
                return Reservation(offer, token, until)
            row = await repo.get(e164)
        if row is None:
            raise NotFound(
                f"{e164} is not in the catalogue: find one with `callcontrol numbers search`"
            )
        if row.state == "taken":
            raise Conflict(f"{e164} is already taken")
        if row.state == "reserved":
            raise Conflict(
                f"{e164} is being bought by another purchase (reserved until "
                f"{row.reserved_until:%Y-%m-%d %H:%M:%S} UTC)"
            )
        raise Conflict(
            f"{e164} was released recently and is ageing until "
            f"{row.available_at:%Y-%m-%d %H:%M} UTC before it is offered again"
        )

    async def acquire(self, reservation: Reservation) -> Offer:
        e164 = reservation.offer.e164
        async with self._db.session(immediate=True) as session:
            if not await CatalogueRepository(session).acquire(e164, reservation.token):
                raise Conflict(f"the reservation of {e164} expired and another purchase took it")
        return reservation.offer

    async def cancel(self, reservation: Reservation) -> None:
        async with self._db.session(immediate=True) as session:
            await CatalogueRepository(session).cancel(reservation.offer.e164, reservation.token)

    async def release(self, e164: str, ageing_seconds: int) -> bool:
        available_at = self._clock() + timedelta(seconds=ageing_seconds)
        async with self._db.session(immediate=True) as session:
            return await CatalogueRepository(session).release(e164, available_at)
