"""The payment provider's webhooks: ``POST /webhooks/<provider>`` (stripe or offline).

The raw body is read as received (the signature covers its bytes, not a re-serialised
JSON) and handed with the headers to ``Settlement.receive_webhook``, which verifies it,
stores the event once by its id and acts on it (re-reading the payment from the
provider). Answers: 200 once the event is stored (also for a redelivery), 400 for a bad
signature or body, 404 for another provider, 503 when the database cannot store it
(the provider delivers it again later).

``deliver_offline_webhooks`` plays Stripe's part for the offline provider: it POSTs the
webhooks the offline provider has waiting to this very endpoint, over HTTP.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from callcontrol.billing.settlement import Settlement
from callcontrol.errors import CallControlError, NotFound, StoreError
from callcontrol.payments.errors import WebhookRejected
from callcontrol.store.offline_payments import DurableOfflineProvider

__all__ = ["add_routes", "deliver_offline_webhooks"]

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = 1.0


def add_routes(app: web.Application, settlement: Settlement) -> None:
    """Serve ``POST /webhooks/{provider}`` on ``app``."""

    async def receive(request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        body = await request.read()
        try:
            outcome = await settlement.receive_webhook(provider, body, dict(request.headers))
        except WebhookRejected as exc:
            log.warning("webhook for %s refused: %s", provider, exc)
            return web.json_response({"error": "webhook_rejected", "message": str(exc)}, status=400)
        except NotFound as exc:
            return web.json_response({"error": "not_found", "message": str(exc)}, status=404)
        except CallControlError as exc:  # the database, or payments not configured
            log.error("webhook for %s not stored: %s", provider, exc)
            return web.json_response({"error": exc.error_id}, status=503)
        return web.json_response({"received": outcome})

    app.router.add_post("/webhooks/{provider}", receive)


async def deliver_offline_webhooks(provider: DurableOfflineProvider, url: str) -> None:
    """Send the offline provider's webhooks to ``url``, forever; kept when not accepted."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            waiting = []
            try:
                waiting = await provider.take_webhooks()
            except StoreError as exc:
                log.warning("offline webhooks: %s", exc)
            for webhook in waiting:
                try:
                    async with http.post(
                        url, data=webhook.body, headers=dict(webhook.headers)
                    ) as r:
                        if r.status >= 300:  # the reconciler re-reads the payment later
                            log.warning("offline webhook answered %d: dropped", r.status)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("offline webhook not delivered: %s", exc)
            await asyncio.sleep(DELIVERY_INTERVAL)
