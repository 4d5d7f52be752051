"""Rent: each period's fee charged on the number's anniversary, exactly once.

``Renewals.renew_due`` finds the rented numbers whose paid period has ended and, for
each, one period after the other (catching up after downtime):

1. debits the period's rent with the key ``number:<e164>:g<gen>:rent:<period start>``
   (``domain.rental``): the ledger's unique key makes a second process, a retry or
   a restart find the first entry instead of charging again;
2. moves ``paid_until`` to the next anniversary with a conditional UPDATE (``WHERE
   paid_until = <the period's start>``): only one process applies it.

When the wallet refuses a rent: the number is unpaid from the period's start (a
notice, once), suspended ``grace`` seconds later (it refuses calls: "not in
service"; another notice), and released ``release_after`` seconds after that.
Each of those is also one conditional UPDATE, applied once whatever the number of
processes. A later renewal that succeeds (credits were added) pays the period and
lifts the suspension.

Notices go to ``Notices``: ``NotifierNotices`` (what services.py passes to
``Renewals``) logs them and sends them to the admin's notification webhook, signed
and retried like the funding notices; ``LogNotices`` writes them to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from callcontrol.billing.errors import InsufficientCredits
from callcontrol.billing.notifications import Notifier
from callcontrol.billing.wallet import Wallet
from callcontrol.domain.money import LedgerKind, format_credits
from callcontrol.domain.rental import RentalPolicy, next_paid_until, rent_key
from callcontrol.errors import CallControlError
from callcontrol.numbers.service import NumbersService
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow
from callcontrol.store.ownership import OwnershipRepository, RentalRow

__all__ = ["LogNotices", "Notices", "NotifierNotices", "Renewal", "RenewalAction", "Renewals"]

log = logging.getLogger(__name__)

BATCH = 100  # numbers looked at per query
MAX_PERIODS = 240  # periods one run catches up per number (20 years of months)


class RenewalAction(StrEnum):
    RENEWED = "renewed"
    UNPAID = "unpaid"
    SUSPENDED = "suspended"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a run did to one number for the period starting at ``period_start``."""

    e164: str
    action: RenewalAction
    period_start: datetime
    detail: str = ""
    changed: bool = True  # False: still unpaid or suspended, nothing new


class Notices(Protocol):
    """Where an admin hears about unpaid rent (the log; later the funding webhook)."""

    async def notify(self, renewal: Renewal) -> None: ...


class LogNotices:
    """Notices as warnings in the log."""

    async def notify(self, renewal: Renewal) -> None:
        log.warning("number notice: %s %s: %s", renewal.e164, renewal.action, renewal.detail)


class NotifierNotices(LogNotices):
    """Notices logged and sent to the admin's notification webhook (the outbox of
    ``billing/notifications.py``, signed and retried), once per number, action and
    period: a scheduler run in every app process finds the same key."""

    def __init__(self, db: Database, notifier: Notifier) -> None:
        self._db = db
        self._notifier = notifier

    async def notify(self, renewal: Renewal) -> None:
        await super().notify(renewal)
        key = f"number:{renewal.e164}:{renewal.action}:{renewal.period_start:%Y%m%dT%H%M%S}"
        async with self._db.session() as session:
            await self._notifier.emit(
                session,
                f"number_{renewal.action}",
                key,
                number=renewal.e164,
                period_start=renewal.period_start.isoformat(),
                detail=renewal.detail,
            )


class Renewals:
    """The rent of every rented number (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        wallet: Wallet,
        numbers: NumbersService,
        policy: RentalPolicy,
        notices: Notices,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._wallet = wallet
        self._numbers = numbers
        self._policy = policy
        self._notices = notices
        self._clock = clock

    async def renew_due(self) -> list[Renewal]:
        """Charge every period that has ended; handle the unpaid ones. What changed."""
        now = self._clock()
        done: list[Renewal] = []
        seen: set[int] = set()
        while True:
            async with self._db.session() as session:
                due = [
                    r
                    for r in await OwnershipRepository(session).due(now, BATCH)
                    if r.id not in seen
                ]
            if not due:
                return done
            for rent in due:
                seen.add(rent.id)
                done += [r for r in await self._renew(rent, now) if r.changed]

    async def _renew(self, rent: RentalRow, now: datetime) -> list[Renewal]:
        done: list[Renewal] = []
        current: RentalRow | None = rent
        for _ in range(MAX_PERIODS):
            if current is None or current.paid_until > now:
                break
            step = await self._one_period(current, now)
            if step is None:  # another process moved it: read it again
                current = await self._reload(current)
                continue
            done.append(step)
            if step.action is not RenewalAction.RENEWED:
                break
            current = await self._reload(current)
        return done

    async def _reload(self, rent: RentalRow) -> RentalRow | None:
        async with self._db.session() as session:
            fresh = await OwnershipRepository(session).rental(rent.id)
        return fresh if fresh is not None and fresh.generation == rent.generation else None

    async def _one_period(self, rent: RentalRow, now: datetime) -> Renewal | None:
        """Pay the period starting at ``rent.paid_until``, or handle it as unpaid. None:
        another process changed the number first."""
        start = rent.paid_until
        until = next_paid_until(rent.bought_at, start, self._policy)
        if rent.monthly:
            try:
                await self._wallet.debit(
                    rent.monthly,
                    LedgerKind.NUMBER_RENTAL,
                    rent.e164,
                    rent_key(rent.e164, rent.generation, start),
                    f"rent of {rent.e164} from {start:%Y-%m-%d %H:%M:%S} UTC",
                )
            except InsufficientCredits as exc:
                return await self._unpaid(rent, now, str(exc))
        async with self._db.session(immediate=True) as session:
            moved = await OwnershipRepository(session).advance(rent, until)
        if not moved:
            return None
        lifted = " (suspension lifted)" if rent.state == "suspended" else ""
        log.info(
            "renewed %s: %s credits, paid until %s%s",
            rent.e164,
            format_credits(rent.monthly),
            until.isoformat(),
            lifted,
        )
        return Renewal(
            rent.e164, RenewalAction.RENEWED, start, f"paid until {until.isoformat()}{lifted}"
        )

    async def _unpaid(self, rent: RentalRow, now: datetime, why: str) -> Renewal | None:
        start = rent.paid_until
        unpaid_since = rent.unpaid_since or start
        suspend_at = unpaid_since + timedelta(seconds=self._policy.grace)
        if rent.state == "suspended":
            suspended_at = rent.suspended_at or now
            release_at = suspended_at + timedelta(seconds=self._policy.release_after)
            if now < release_at:
                return Renewal(rent.e164, RenewalAction.SUSPENDED, start, changed=False)
            try:
                await self._numbers.release(rent.e164, force=True, reason="rent unpaid")
            except CallControlError as exc:
                log.error("could not release %s for unpaid rent: %s", rent.e164, exc)
                return None
            renewal = Renewal(rent.e164, RenewalAction.RELEASED, start, "rent unpaid: released")
            await self._notices.notify(renewal)
            return renewal
        async with self._db.session(immediate=True) as session:
            owned = OwnershipRepository(session)
            first = rent.unpaid_since is None and await owned.mark_unpaid(rent)
            suspended = now >= suspend_at and await owned.suspend(rent, now)
        if suspended:
            renewal = Renewal(
                rent.e164,
                RenewalAction.SUSPENDED,
                start,
                f"rent unpaid since {unpaid_since.isoformat()}: suspended, refuses calls; "
                f"released after {self._policy.release_after} s unless credits are added ({why})",
            )
        elif first:
            renewal = Renewal(
                rent.e164,
                RenewalAction.UNPAID,
                start,
                f"rent of {format_credits(rent.monthly)} credits refused ({why}); suspended at "
                f"{suspend_at.isoformat()} unless credits are added",
            )
        else:
            return Renewal(rent.e164, RenewalAction.UNPAID, start, changed=False)
        await self._notices.notify(renewal)
        return renewal
