"""The number catalogue port: the one behaviour every source of numbers implements.

    coverage()                 the countries and number types offered
    search(query)              offers (number, type, setup and monthly price)
    reserve(e164, seconds)     hold one offer for a purchase, until an expiry
    acquire(reservation)       the number is ours (the order, with a real carrier)
    cancel(reservation)        give a reservation back (the purchase did not happen)
    release(e164, ageing)      give a number back; offered again after its ageing

Errors: ``InvalidInput`` (a bad query), ``NotFound`` (a number the catalogue does not
offer, a country or type it does not cover), ``Conflict`` (already taken, reserved by
another purchase, ageing, a reservation that expired).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from callcontrol.domain.numbers import NumberType

__all__ = ["Coverage", "NumberCatalogue", "Offer", "Reservation", "SearchQuery"]

MAX_SEARCH_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Offer:
    """A number for sale: its setup fee and monthly rent in micro-credits.
    ``generation`` counts how often it was released before (fees' ledger keys)."""

    e164: str
    country: str
    number_type: NumberType
    setup: int
    monthly: int
    generation: int = 1


@dataclass(frozen=True, slots=True)
class Coverage:
    """One country and number type the catalogue offers, how many, from what price."""

    country: str
    number_type: NumberType
    available: int
    lowest_setup: int
    lowest_monthly: int


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What an admin looks for: a country (ISO alpha-2) and a type, optionally an area
    code or prefix (national digits, ``20`` for London, or E.164 ``+4420``) and digits
    the number must contain; at most ``limit`` offers."""

    country: str
    number_type: NumberType
    prefix: str = ""
    contains: str = ""
    limit: int = 20


@dataclass(frozen=True, slots=True)
class Reservation:
    """An offer held for one purchase until ``expires_at``; ``token`` names the hold."""

    offer: Offer
    token: str
    expires_at: datetime


class NumberCatalogue(Protocol):
    """A source of numbers (see the module docstring)."""

    async def coverage(self) -> list[Coverage]: ...

    async def search(self, query: SearchQuery) -> list[Offer]: ...

    async def reserve(self, e164: str, seconds: int) -> Reservation: ...

    async def acquire(self, reservation: Reservation) -> Offer: ...

    async def cancel(self, reservation: Reservation) -> None: ...

    async def release(self, e164: str, ageing_seconds: int) -> bool:
        """Give the number back; False if the catalogue never sold it (an operator's
        number added outside it)."""
        ...
