"""The auto-recharge row and its single-flight claim, inside the caller's session.

``claim`` is ONE conditional UPDATE of the one ``auto_recharge`` row: it sets ``in_flight``
only if auto-recharge is on, nothing is in flight, no back-off is pending and the wallet's
available credits (read in the same statement) are below the threshold. Two processes
(or tasks) claiming at once: on PostgreSQL the second waits for the first's row lock and
then finds ``in_flight`` set; on SQLite the claim runs in a BEGIN IMMEDIATE transaction,
so claims are serialized by the write lock. Either way exactly one wins, and a recharge
that completed (credited, then released) is seen by the next claim.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.funding import AutoRecharge
from callcontrol.errors import StoreError
from callcontrol.store.models import WALLET_ID, AutoRechargeRow, WalletRow, utcnow
from callcontrol.store.unit import UnitSession

__all__ = ["AUTO_RECHARGE_ROW", "AutoRechargeRepository"]

#: The row migration 0005 creates: off, below 2 credits -> +10 (tests that empty the
#: tables create it again).
AUTO_RECHARGE_ROW = (
    "INSERT INTO auto_recharge (id, enabled, threshold_micro, amount_micro, failures, "
    "low_notified, changed_at) VALUES (1, false, 2000000, 10000000, 0, false, CURRENT_TIMESTAMP)"
)

_MISSING = "the auto-recharge row is missing: run `callcontrol db upgrade`"


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def _mine(attempt_id: str) -> Any:
    return (AutoRechargeRow.id == WALLET_ID) & (AutoRechargeRow.in_flight == attempt_id)


async def auto_recharge(session: AsyncSession | UnitSession) -> AutoRecharge:
    """The auto-recharge settings and state (any session, also a unit's)."""
    row = await session.get(AutoRechargeRow, WALLET_ID, populate_existing=True)
    if row is None:
        raise StoreError(_MISSING)
    return AutoRecharge(
        enabled=row.enabled,
        threshold_micro=row.threshold_micro,
        amount_micro=row.amount_micro,
        method_id=row.method_id,
        monthly_cap_micro=row.monthly_cap_micro,
        in_flight=row.in_flight,
        failures=row.failures,
        retry_at=row.retry_at,
        low_notified=row.low_notified,
        off_reason=row.off_reason,
        changed_at=row.changed_at,
    )


class AutoRechargeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self) -> AutoRecharge:
        return await auto_recharge(self._session)

    async def switch_on(
        self, *, threshold: int, amount: int, method_id: int, monthly_cap: int | None
    ) -> None:
        await self._update(
            enabled=True,
            threshold_micro=threshold,
            amount_micro=amount,
            method_id=method_id,
            monthly_cap_micro=monthly_cap,
            failures=0,
            retry_at=None,
            off_reason=None,
        )

    async def switch_off(self, reason: str, attempt_id: str | None = None) -> bool:
        """Turn auto-recharge off with the reason; with ``attempt_id``, only if that attempt
        is the one in flight (and release it). Whether it changed."""
        where = _mine(attempt_id) if attempt_id else AutoRechargeRow.id == WALLET_ID
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(where)
            .values(enabled=False, off_reason=reason[:256], in_flight=None, changed_at=utcnow())
        )
        return _rowcount(result) == 1

    async def claim(self, attempt_id: str, now: datetime) -> bool:
        """Set ``in_flight`` to ``attempt_id`` if a recharge is due now (see the module)."""
        available = (
            select(WalletRow.balance_micro - WalletRow.held_micro)
            .where(WalletRow.id == WALLET_ID)
            .scalar_subquery()
        )
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(
                AutoRechargeRow.id == WALLET_ID,
                AutoRechargeRow.enabled.is_(True),
                AutoRechargeRow.in_flight.is_(None),
                or_(AutoRechargeRow.retry_at.is_(None), AutoRechargeRow.retry_at <= now),
                available < AutoRechargeRow.threshold_micro,
            )
            .values(in_flight=attempt_id)
        )
        if _rowcount(result) != 1:
            return False
        # PostgreSQL: an UPDATE that waited for the row lock re-checks its WHERE on the
        # newest auto_recharge row but reads the wallet from its first snapshot, so a
        # recharge booked meanwhile can look unbooked. Look again (this statement's
        # snapshot is new, READ COMMITTED) and give the claim back if it is not due.
        config = await self._session.scalar(
            select(AutoRechargeRow.threshold_micro).where(AutoRechargeRow.id == WALLET_ID)
        )
        now_available = await self._session.scalar(
            select(WalletRow.balance_micro - WalletRow.held_micro).where(WalletRow.id == WALLET_ID)
        )
        if config is not None and now_available is not None and now_available >= config:
            await self.release(attempt_id)
            return False
        return True

    async def release(self, attempt_id: str) -> bool:
        """Nothing in flight any more (a claim that did not lead to a charge)."""
        result = await self._session.execute(
            update(AutoRechargeRow).where(_mine(attempt_id)).values(in_flight=None)
        )
        return _rowcount(result) == 1

    async def succeeded(self, attempt_id: str) -> bool:
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(_mine(attempt_id))
            .values(in_flight=None, failures=0, retry_at=None)
        )
        return _rowcount(result) == 1

    async def soft_declined(self, attempt_id: str) -> int:
        """Count a soft decline and release the claim; the declines in a row (0: not ours)."""
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(_mine(attempt_id))
            .values(in_flight=None, failures=AutoRechargeRow.failures + 1)
        )
        if _rowcount(result) != 1:
            return 0
        return (await self.get()).failures

    async def back_off(self, until: datetime) -> None:
        await self._session.execute(
            update(AutoRechargeRow).where(AutoRechargeRow.id == WALLET_ID).values(retry_at=until)
        )

    async def low_balance_seen(self, low: bool) -> bool:
        """Record whether the balance is below the threshold; True if that just changed
        (once per crossing, whichever process sees it first)."""
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(AutoRechargeRow.id == WALLET_ID, AutoRechargeRow.low_notified.is_(not low))
            .values(low_notified=low)
        )
        return _rowcount(result) == 1

    async def _update(self, **values: Any) -> None:
        result = await self._session.execute(
            update(AutoRechargeRow)
            .where(AutoRechargeRow.id == WALLET_ID)
            .values(changed_at=utcnow(), **values)
        )
        if _rowcount(result) != 1:
            raise StoreError(_MISSING)
