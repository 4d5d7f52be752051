"""The notifications outbox: written in the transaction of the change it reports, sent later.

Each notification has a unique key (``recharge_succeeded:<attempt>``...), so a change seen
by two processes is reported once. A sender takes a due row by pushing its ``due_at`` out
(a lease: a conditional UPDATE only one process wins), sends it, then marks it sent or
schedules the next try.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.store.models import NotificationRow, utcnow

__all__ = ["NotificationRepository", "Outgoing"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    id: int
    kind: str
    body: str
    attempts: int


def _rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, key: str, kind: str, body: str, *, deliver: bool) -> bool:
        """Queue a notification (``deliver=False``: nowhere to send it, kept as sent);
        False if one with this key exists."""
        now = utcnow()
        try:
            async with self._session.begin_nested():
                self._session.add(
                    NotificationRow(
                        key=key[:128],
                        kind=kind,
                        body=body,
                        created_at=now,
                        attempts=0,
                        due_at=now,
                        sent_at=None if deliver else now,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def due(self, now: datetime, limit: int = 20) -> list[Outgoing]:
        rows = await self._session.scalars(
            select(NotificationRow)
            .where(NotificationRow.sent_at.is_(None), NotificationRow.due_at <= now)
            .order_by(NotificationRow.id)
            .limit(limit)
        )
        return [Outgoing(row.id, row.kind, row.body, row.attempts) for row in rows]

    async def lease(self, notification_id: int, now: datetime, seconds: float) -> bool:
        """Take a due notification for ``seconds``; False if another sender has it."""
        result = await self._session.execute(
            update(NotificationRow)
            .where(
                NotificationRow.id == notification_id,
                NotificationRow.sent_at.is_(None),
                NotificationRow.due_at <= now,
            )
            .values(due_at=now + timedelta(seconds=seconds))
        )
        return _rowcount(result) == 1

    async def sent(self, notification_id: int) -> None:
        await self._session.execute(
            update(NotificationRow)
            .where(NotificationRow.id == notification_id)
            .values(sent_at=utcnow(), attempts=NotificationRow.attempts + 1, last_error=None)
        )

    async def failed(self, notification_id: int, error: str, due_at: datetime | None) -> None:
        """A failed try: retry at ``due_at``, or give up (None: kept, never sent)."""
        values: dict[str, Any] = {
            "attempts": NotificationRow.attempts + 1,
            "last_error": error[:256],
        }
        if due_at is None:
            values["sent_at"] = None
            values["due_at"] = datetime.max.replace(tzinfo=utcnow().tzinfo)
        else:
            values["due_at"] = due_at
        await self._session.execute(
            update(NotificationRow).where(NotificationRow.id == notification_id).values(**values)
        )
