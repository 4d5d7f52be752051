"""The webhook endpoint over real HTTP (raw body, signature, idempotent, 2xx once stored),
the offline provider's delivery to it, and the signed notifications with retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from funding_harness import card, drain, fund, purchases, services_on
from sqlalchemy import update

from callcontrol.billing.notifications import SIGNATURE_HEADER
from callcontrol.domain.money import MICRO
from callcontrol.services import Services
from callcontrol.store.models import NotificationRow, utcnow
from callcontrol.store.offline_payments import DurableOfflineProvider
from callcontrol.web.webhooks import add_routes, deliver_offline_webhooks


@asynccontextmanager
async def endpoint(services: Services) -> AsyncIterator[TestServer]:
    app = web.Application()
    add_routes(app, services.settlement)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_the_endpoint_checks_signatures_and_stores_each_event_once(
    database_url: str, tmp_path: Path
) -> None:
    async with services_on(database_url, tmp_path) as services, endpoint(services) as server:
        await card(services)
        await drain(services)
        await services.funding.buy(10 * MICRO)
        [webhook] = await drain(services)
        url = str(server.make_url("/webhooks/offline"))
        async with ClientSession() as http:
            tampered = webhook.body.replace(b"succeeded", b"succeedes")
            async with http.post(url, data=tampered, headers=dict(webhook.headers)) as r:
                assert r.status == 400
                assert (await r.json())["error"] == "webhook_rejected"
            async with http.post(url, data=webhook.body) as r:  # no signature at all
                assert r.status == 400
            for expected in ("stored", "duplicate"):
                async with http.post(url, data=webhook.body, headers=dict(webhook.headers)) as r:
                    assert r.status == 200
                    assert (await r.json()) == {"received": expected}
            async with http.post(str(server.make_url("/webhooks/stripe")), data=b"{}") as r:
                assert r.status == 404
        assert [e.amount for e in await purchases(services)] == [10 * MICRO]


async def test_offline_webhooks_reach_the_endpoint_and_book_a_transfer(
    database_url: str, tmp_path: Path
) -> None:
    async with services_on(database_url, tmp_path) as services, endpoint(services) as server:
        provider = services.payments
        assert isinstance(provider, DurableOfflineProvider)
        method = await services.funding.add_bank_transfer("invoice")
        attempt = await services.funding.buy(3 * MICRO, method.id)
        assert attempt.provider_payment_id is not None
        await provider.pay_by_bank_transfer(attempt.provider_payment_id)  # not booked yet
        assert await purchases(services) == []
        stored = asyncio.Event()
        receive = services.settlement.receive_webhook

        async def spy(provider_name: str, body: bytes, headers: dict[str, str]) -> str:
            outcome = await receive(provider_name, body, headers)
            if b"payment_intent.succeeded" in body:
                stored.set()
            return outcome

        services.settlement.receive_webhook = spy  # type: ignore[method-assign]
        task = asyncio.create_task(
            deliver_offline_webhooks(provider, str(server.make_url("/webhooks/offline")))
        )
        try:
            await asyncio.wait_for(stored.wait(), 10)
        finally:
            task.cancel()
        assert [e.amount for e in await purchases(services)] == [3 * MICRO]


async def test_notifications_are_signed_and_retried(database_url: str, tmp_path: Path) -> None:
    received: list[tuple[bytes, str]] = []
    answers = [503, 200, 200]
    got = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers[SIGNATURE_HEADER]))
        got.set()
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    secret = "notify-secret"
    try:
        async with services_on(
            database_url,
            tmp_path,
            notify_webhook_url=str(server.make_url("/hook")),
            notify_webhook_secret=secret,
        ) as services:
            await card(services)
            await services.funding.auto_recharge_on(
                threshold_micro=2 * MICRO,
                amount_micro=10 * MICRO,
                method_id=None,
                monthly_cap_micro=None,
            )
            await fund(services, 1)
            await services.recharger.check()
            async with ClientSession() as http:
                assert await services.notifier.send_due(http) == 1  # the first answered 503
                assert await services.notifier.send_due(http) == 0  # waiting for its retry
                async with services.db.session() as session:  # the retry is due now
                    await session.execute(update(NotificationRow).values(due_at=utcnow()))
                assert await services.notifier.send_due(http) == 1
    finally:
        await server.close()
    kinds = [json.loads(body)["type"] for body, _ in received]
    assert kinds == ["low_balance", "recharge_succeeded", "low_balance"]
    for body, header in received:
        timestamp, signature = (part.split("=", 1)[1] for part in header.split(","))
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(signature, expected.hexdigest())
