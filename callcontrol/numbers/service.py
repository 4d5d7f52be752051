"""Numbers as the organisation's property: search, buy, release, assign.

Buying (``buy``): the catalogue reserves the number (a hold with an expiry), the
wallet pays the setup fee and the first period in ONE ledger entry of kind
``number_purchase`` (key ``number:<e164>:g<generation>:buy``: a retry never pays
twice), the catalogue sells it (``acquire``) and it becomes ours, active, with no
routing ("needs routing": it refuses calls until routed) and no assignment. When
the credits do not cover it, the reservation is cancelled: nothing is reserved or
charged. When the catalogue fails after the payment (a real carrier's order can),
the payment is refunded (``...:buy:refund``).

Releasing (``release``): its routing and assignments are removed with it, so it
refuses calls at once (it is no number of ours any more); the catalogue offers it
again after the ageing period. A number that runs an IVR flow is only released
with ``force`` (the refusal names the flow).

Assigning (``assign``/``unassign``): a user may present the numbers assigned to
them, their default one when calling out; a user without one cannot call out.
Assignment is independent of routing. Each change re-pushes the users' SIP
endpoints, whose caller ID (used by emergency calls, which bypass the app) is the
user's default number, else the organisation's main number (``main_number``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from callcontrol.billing.errors import InsufficientCredits
from callcontrol.billing.wallet import Wallet
from callcontrol.carrier.port import Coverage, NumberCatalogue, Offer, SearchQuery
from callcontrol.directory.service import DirectoryService
from callcontrol.domain.directory import Number, RouteKind
from callcontrol.domain.money import LedgerEntry, LedgerKind, format_credits
from callcontrol.domain.numbers import NumberType, parse_e164
from callcontrol.domain.rental import RentalPolicy, buy_key, next_paid_until, refund_key
from callcontrol.domain.text import shown
from callcontrol.domain.users import validate_user_name
from callcontrol.errors import CallControlError, Conflict, InvalidInput, NotFound
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow
from callcontrol.store.ownership import OwnershipRepository, UserNumber
from callcontrol.store.repositories import NumberRepository

__all__ = ["NumbersService", "Purchase", "Release", "UserNumber"]

log = logging.getLogger(__name__)


def number_type(text: str) -> NumberType:
    try:
        return NumberType(text.strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in NumberType)
        raise InvalidInput(f"unknown number type {shown(text)}: choose one of {choices}") from None


@dataclass(frozen=True, slots=True)
class Purchase:
    """A number bought: the number (no routing yet), its offer, the ledger entry."""

    number: Number
    offer: Offer
    entry: LedgerEntry | None  # None: the offer was free
    paid_until: datetime


@dataclass(frozen=True, slots=True)
class Release:
    """A number given back: what it did, who had it, whether the catalogue takes it back."""

    e164: str
    route: str | None  # "user alice", "flow main"
    users: list[str]
    to_catalogue: bool


class NumbersService:
    """The life of the organisation's numbers (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        catalogue: NumberCatalogue,
        wallet: Wallet,
        directory: DirectoryService,
        policy: RentalPolicy,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self.catalogue = catalogue
        self._wallet = wallet
        self._directory = directory
        self.policy = policy
        self._clock = clock

    # ---- the catalogue -------------------------------------------------------------------

    async def coverage(self) -> list[Coverage]:
        return await self.catalogue.coverage()

    async def search(
        self, country: str, kind: str, *, prefix: str = "", contains: str = "", limit: int = 20
    ) -> list[Offer]:
        """Offers in ``country`` of type ``kind``; InvalidInput/NotFound say what is wrong."""
        query = SearchQuery(country, number_type(kind), prefix, contains, limit)
        return await self.catalogue.search(query)

    # ---- buying --------------------------------------------------------------------------

    async def buy(self, text: str) -> Purchase:
        e164 = parse_e164(text)
        if await self._get(e164) is not None:
            raise Conflict(f"{e164} is already one of the organisation's numbers")
        reservation = await self.catalogue.reserve(e164, self.policy.reservation)
        offer = reservation.offer
        total = offer.setup + offer.monthly
        key = buy_key(e164, offer.generation)
        description = (
            f"buy {e164}: setup {format_credits(offer.setup)} + first period "
            f"{format_credits(offer.monthly)}"
        )
        try:
            entry = None
            if total:
                entry = await self._wallet.debit(
                    total, LedgerKind.NUMBER_PURCHASE, e164, key, description
                )
        except InsufficientCredits:
            await self.catalogue.cancel(reservation)
            available = (await self._wallet.balance()).available
            raise InsufficientCredits(
                f"buying {e164} costs {format_credits(total)} credits (setup "
                f"{format_credits(offer.setup)} + first month {format_credits(offer.monthly)}); "
                f"only {format_credits(available)} available: add credits first. "
                "Nothing was reserved or charged."
            ) from None
        except CallControlError:
            await self.catalogue.cancel(reservation)
            raise
        try:
            await self.catalogue.acquire(reservation)
        except CallControlError:
            if entry is not None:
                await self._wallet.credit(
                    total,
                    LedgerKind.REFUND,
                    e164,
                    refund_key(e164, offer.generation),
                    f"refund: the purchase of {e164} failed",
                )
            raise
        bought_at = self._clock().replace(microsecond=0)
        paid_until = next_paid_until(bought_at, bought_at, self.policy)
        async with self._db.session(immediate=True) as session:
            await OwnershipRepository(session).add_bought(offer, bought_at, paid_until)
            number = await NumberRepository(session).get(e164)
        if number is None:  # pragma: no cover - inserted in this transaction
            raise NotFound(f"no number {e164}")
        log.info(
            "bought %s (%s, %s) for %s credits; paid until %s; needs routing",
            e164,
            offer.country,
            offer.number_type,
            format_credits(total),
            paid_until.isoformat(),
        )
        return Purchase(number, offer, entry, paid_until)

    # ---- releasing -----------------------------------------------------------------------

    async def release(self, text: str, *, force: bool = False, reason: str = "") -> Release:
        """Give the number back (see the module docstring); Conflict naming the flow it
        runs unless ``force``."""
        e164 = parse_e164(text)
        number = await self._get(e164)
        if number is None:
            raise NotFound(f"{e164} is not one of the organisation's numbers")
        route = number.route
        described = None
        if route is not None:
            described = (
                f"flow {route.flow_name}"
                if route.kind is RouteKind.FLOW
                else f"user {route.user_name}"
            )
        if route is not None and route.kind is RouteKind.FLOW and not force:
            raise Conflict(
                f"{e164} is still in use: it runs the IVR flow {route.flow_name!r}; route it "
                "elsewhere first (callcontrol numbers route NUMBER --none) or release it "
                "with --force"
            )
        async with self._db.session(immediate=True) as session:
            owned = OwnershipRepository(session)
            users = await owned.assigned_users(e164)
            if not await owned.delete(e164):
                raise NotFound(f"{e164} is not one of the organisation's numbers")
            await owned.promote_defaults(users)
        to_catalogue = await self.catalogue.release(e164, self.policy.ageing)
        log.info(
            "released %s%s; routing removed: %s; unassigned from: %s; %s",
            e164,
            f" ({reason})" if reason else "",
            described or "none",
            ", ".join(users) or "nobody",
            "back to the catalogue after ageing" if to_catalogue else "not a catalogue number",
        )
        await self._push_endpoints(users)
        return Release(e164, described, users, to_catalogue)

    # ---- assigning -----------------------------------------------------------------------

    async def assign(self, text: str, user_name: str, *, default: bool = False) -> Number:
        """Let the user present the number; their first one (or ``default``) is their
        default. NotFound for a number the organisation does not own or an unknown user."""
        e164 = parse_e164(text)
        name = validate_user_name(user_name)
        async with self._db.session(immediate=True) as session:
            await OwnershipRepository(session).assign(e164, name, default=default)
            number = await NumberRepository(session).get(e164)
        if number is None:  # pragma: no cover - same transaction
            raise NotFound(f"no number {e164}")
        log.info("%s assigned to %s%s", e164, name, " (default)" if default else "")
        await self._push_endpoints([name])
        return number

    async def unassign(self, text: str, user_name: str) -> Number:
        e164 = parse_e164(text)
        name = validate_user_name(user_name)
        async with self._db.session(immediate=True) as session:
            if not await OwnershipRepository(session).unassign(e164, name):
                raise NotFound(f"{e164} is not assigned to {name}")
            number = await NumberRepository(session).get(e164)
        if number is None:  # pragma: no cover - same transaction
            raise NotFound(f"no number {e164}")
        log.info("%s no longer assigned to %s", e164, name)
        await self._push_endpoints([name])
        return number

    async def numbers_of_users(self) -> dict[str, list[UserNumber]]:
        """Each user's assigned numbers, the default first."""
        async with self._db.session() as session:
            return await OwnershipRepository(session).numbers_of_users()

    # ---- helpers -------------------------------------------------------------------------

    async def _get(self, e164: str) -> Number | None:
        async with self._db.session() as session:
            return await NumberRepository(session).get(e164)

    async def _push_endpoints(self, user_names: list[str]) -> None:
        """The users' caller ID changed: tell Asterisk now if it answers (the app's
        periodic provisioning applies it anyway)."""
        for name in user_names:
            try:
                user = await self._directory.get_user(name)
            except NotFound:
                continue
            update = await self._directory.apply_endpoint(user)
            if update is not None and not update.applied:
                log.info("endpoint of %s not updated now: %s", name, update.error)
