"""Notifications to the admin: low balance, recharge succeeded, recharge failed, auto-recharge
switched off or capped.

``Notifier.emit`` writes one to the outbox (``store.notifications``) in the caller's
transaction, so it exists exactly when the change it reports was committed, and logs it.
``Notifier.run`` (a task of ``serve``) POSTs each to ``notify_webhook_url`` as JSON, signed
the way payment providers sign theirs: ``Callcontrol-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" keyed with notify_webhook_secret>``. A failed delivery is tried
again after 10 s, 20 s, 40 s ... (at most an hour apart), 12 times, then given up (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.errors import StoreError
from callcontrol.payments.webhook_signature import sign
from callcontrol.store.db import Database
from callcontrol.store.models import utcnow
from callcontrol.store.notifications import NotificationRepository, Outgoing

__all__ = ["SIGNATURE_HEADER", "Notifier"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Callcontrol-Signature"
MAX_ATTEMPTS = 12
FIRST_DELAY = 10.0
MAX_DELAY = 3600.0
LEASE_SECONDS = 60.0
POLL_SECONDS = 1.0


class Notifier:
    def __init__(
        self,
        db: Database,
        url: str,
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._url = url
        self._secret = secret
        self._clock = clock
        self._pending = asyncio.Event()

    async def emit(self, session: AsyncSession, kind: str, key: str, **data: Any) -> None:
        """Queue notification ``kind`` (once per ``key``) in the caller's transaction."""
        body = json.dumps(
            {"type": kind, "id": key, "created": int(self._clock()), "data": data},
            separators=(",", ":"),
            default=str,
        )
        added = await NotificationRepository(session).add(key, kind, body, deliver=bool(self._url))
        if added:
            log.info("notification %s: %s", kind, json.dumps(data, default=str))
            self._pending.set()

    def signature(self, body: bytes) -> str:
        return sign(body, self._secret, int(self._clock()))

    async def run(self) -> None:
        """Send the due notifications, until cancelled (nothing to do without a URL)."""
        if not self._url:
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                try:
                    await self.send_due(http)
                except StoreError as exc:
                    log.warning("notifications: %s", exc)
                self._pending.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pending.wait(), POLL_SECONDS)

    async def send_due(self, http: aiohttp.ClientSession) -> int:
        """Send every due notification this process can lease; how many were sent."""
        now = utcnow()
        async with self._db.session() as session:
            due = await NotificationRepository(session).due(now)
        sent = 0
        for item in due:
            async with self._db.session() as session:
                if not await NotificationRepository(session).lease(item.id, now, LEASE_SECONDS):
                    continue
            error = await self._post(http, item)
            async with self._db.session() as session:
                repo = NotificationRepository(session)
                if error is None:
                    await repo.sent(item.id)
                    sent += 1
                    continue
                tries = item.attempts + 1
                if tries >= MAX_ATTEMPTS:
                    log.error("notification %s #%d given up: %s", item.kind, item.id, error)
                    await repo.failed(item.id, error, None)
                else:
                    delay = min(FIRST_DELAY * 2 ** (tries - 1), MAX_DELAY)
                    log.warning(
                        "notification %s #%d: %s; again in %.0f s", item.kind, item.id, error, delay
                    )
                    await repo.failed(item.id, error, utcnow() + timedelta(seconds=delay))
        return sent

    async def _post(self, http: aiohttp.ClientSession, item: Outgoing) -> str | None:
        body = item.body.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: self.signature(body)}
        try:
            async with http.post(self._url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"the webhook URL answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"cannot reach the webhook URL: {type(exc).__name__} {exc}".strip()
