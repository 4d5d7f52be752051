"""The Stripe adapter against a real Stripe-compatible server: localstripe, started here.

The adapter runs unchanged on the official SDK (async, aiohttp). ``localstripe_server.py``
teaches localstripe two fields of the API version the SDK speaks (see there). Where
localstripe differs from Stripe, the behaviour is shown elsewhere:

- it ignores idempotency keys: here we show that OUR key is sent on every POST (recorded
  at the SDK's HTTP client interface); "same key, same answer, never twice" and "same key,
  other amount" are shown with the offline provider (tests/unit/payments/test_offline.py);
- it answers an off-session charge on a 3-D Secure card with a PaymentIntent in
  ``requires_action`` (shown here) where Stripe answers 402 ``authentication_required``
  (shown on the SDK's own error object in tests/unit/payments/test_stripe_mapping.py);
- it does not attach a card to the customer when a SetupIntent succeeds (Stripe does), so
  the "browser" below attaches it, as Stripe would have.

If localstripe is not installed or does not start, these tests fail: CI installs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import stripe
from aiohttp import web
from funding_harness import services_on

from callcontrol.domain.money import MICRO
from callcontrol.payments.errors import PaymentUnavailable, WebhookRejected
from callcontrol.payments.port import (
    CardSetup,
    CheckoutRequest,
    Declined,
    NeedsCustomer,
    OffSessionCharge,
    PaymentMethod,
    PaymentProvider,
    Succeeded,
    Unknown,
)
from callcontrol.payments.stripe_provider import StripeProvider, StripeSettings
from callcontrol.store.payments import MethodRepository

API_KEY = "sk_test_callcontrol"
WEBHOOK_SECRET = "whsec_callcontrol_test"
LAUNCHER = Path(__file__).with_name("localstripe_server.py")
READY_WITHIN = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """localstripe's base URL; the server runs for the session and is stopped at the end."""
    if importlib.util.find_spec("localstripe") is None:
        pytest.fail("localstripe is not installed: .venv/bin/pip install -e '.[test]'")
    port = free_port()
    log = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_WITHIN
    try:
        while not answers(f"{base}/v1/customers"):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"localstripe exited with status {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"localstripe did not answer on {base} within {READY_WITHIN} s")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RecordingHTTPClient(stripe.AIOHTTPClient):
    """The SDK's own aiohttp client, noting each request's method, path and headers."""

    def __init__(self, timeout: float = 10.0) -> None:
        super().__init__(timeout=aiohttp.ClientTimeout(total=timeout))
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def request_async(  # type: ignore[override]
        self, method: str, url: str, headers: dict[str, str], post_data: object = None
    ) -> tuple[bytes, int, object]:
        self.requests.append((method.upper(), url, dict(headers)))
        return await super().request_async(method, url, headers, post_data)  # type: ignore[no-any-return]

    def posts(self) -> list[tuple[str, str | None]]:
        return [
            (url, headers.get("Idempotency-Key"))
            for method, url, headers in self.requests
            if method == "POST"
        ]


@pytest.fixture
async def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient()


@pytest.fixture
async def provider(
    localstripe: str, recorder: RecordingHTTPClient
) -> AsyncIterator[StripeProvider]:
    settings = StripeSettings(API_KEY, WEBHOOK_SECRET, api_base=localstripe)
    stripe_provider = StripeProvider(settings, http_client=recorder)
    yield stripe_provider
    await stripe_provider.close()


@pytest.fixture
async def browser(localstripe: str) -> AsyncIterator[stripe.StripeClient]:
    """What Stripe.js does in the admin's browser (tokenise a card, confirm a setup)."""
    http = stripe.AIOHTTPClient()
    yield stripe.StripeClient(API_KEY, http_client=http, base_addresses={"api": localstripe})
    await http.close_async()  # type: ignore[no-untyped-call]


async def save_card(
    provider: StripeProvider, browser: stripe.StripeClient, customer: str, number: str
) -> PaymentMethod:
    setup = await provider.start_card_setup(customer, f"setup-{uuid.uuid4()}")
    card = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    created = await browser.v1.payment_methods.create_async({"type": "card", "card": card})  # type: ignore[typeddict-item]
    await browser.v1.setup_intents.confirm_async(setup.setup_id, {"payment_method": created.id})
    await browser.v1.payment_methods.attach_async(created.id, {"customer": customer})
    (method,) = [
        m for m in await provider.list_payment_methods(customer) if m.provider_ref == created.id
    ]
    return method


async def new_customer(provider: StripeProvider) -> str:
    return await provider.ensure_customer(f"org-{uuid.uuid4()}", "Acme")


def charge(customer: str, method: PaymentMethod, key: str) -> OffSessionCharge:
    return OffSessionCharge(
        customer, method.provider_ref, 2000, "eur", "20 credits", key, {"purchase": key}
    )


async def test_the_stripe_provider_is_a_payment_provider(provider: StripeProvider) -> None:
    as_port: PaymentProvider = provider
    assert as_port.name == "stripe"


async def test_a_customer_is_created_once_and_found_again_by_organisation(
    provider: StripeProvider, recorder: RecordingHTTPClient
) -> None:
    org = f"org-{uuid.uuid4()}"

    created = await provider.ensure_customer(org, "Acme")
    found = await provider.ensure_customer(org, "Acme")
    other = await provider.ensure_customer(f"{org}-2", "Other")

    assert created.startswith("cus_") and found == created and other != created
    assert [key for _, key in recorder.posts()] == [
        f"callcontrol-customer-{org}",
        f"callcontrol-customer-{org}-2",
    ]


async def test_a_card_saved_through_a_setup_intent_is_listed_without_its_number(
    provider: StripeProvider, browser: stripe.StripeClient
) -> None:
    customer = await new_customer(provider)

    setup = await provider.start_card_setup(customer, f"setup-{uuid.uuid4()}")
    intent = await browser.v1.setup_intents.retrieve_async(setup.setup_id)
    method = await save_card(provider, browser, customer, "4242424242424242")

    assert setup.client_secret.startswith(setup.setup_id)
    assert (intent.usage, intent.customer) == ("off_session", customer)
    assert method == PaymentMethod(method.provider_ref, "card", "visa", "4242", 12, 2030)


async def test_a_detached_card_is_no_longer_listed(
    provider: StripeProvider, browser: stripe.StripeClient, recorder: RecordingHTTPClient
) -> None:
    customer = await new_customer(provider)
    kept = await save_card(provider, browser, customer, "4242424242424242")
    removed = await save_card(provider, browser, customer, "5555555555554444")

    await provider.detach_payment_method(removed.provider_ref)

    assert await provider.list_payment_methods(customer) == [kept]
    url, key = recorder.posts()[-1]
    assert url.endswith(f"/v1/payment_methods/{removed.provider_ref}/detach")
    assert key == f"callcontrol-detach-{removed.provider_ref}"


async def test_an_off_session_charge_succeeds_and_reads_back(
    provider: StripeProvider, browser: stripe.StripeClient
) -> None:
    customer = await new_customer(provider)
    card = await save_card(provider, browser, customer, "4242424242424242")

    result = await provider.charge_off_session(charge(customer, card, "recharge-1"))

    assert isinstance(result, Succeeded) and result.payment_id.startswith("pi_")
    record = await provider.retrieve_payment(result.payment_id)
    assert (record.amount_minor, record.currency, record.customer_id) == (2000, "eur", customer)
    assert record.metadata == {"purchase": "recharge-1"}
    assert record.status == result
    intent = await browser.v1.payment_intents.retrieve_async(result.payment_id)
    assert (intent.description, intent.payment_method) == ("20 credits", card.provider_ref)


async def test_a_declined_card_is_a_soft_decline(
    provider: StripeProvider, browser: stripe.StripeClient
) -> None:
    """4000000000000341: localstripe (like Stripe) saves it, then declines every charge."""
    customer = await new_customer(provider)
    card = await save_card(provider, browser, customer, "4000000000000341")

    result = await provider.charge_off_session(charge(customer, card, "recharge-2"))

    assert isinstance(result, Declined)
    assert (result.code, result.retryable, result.hard) == ("card_declined", True, False)


async def test_a_card_needing_3d_secure_needs_the_customer(
    provider: StripeProvider, browser: stripe.StripeClient
) -> None:
    """localstripe answers with a PaymentIntent in requires_action (Stripe: a 402 error)."""
    customer = await new_customer(provider)
    card = await save_card(provider, browser, customer, "4000002500003155")

    result = await provider.charge_off_session(charge(customer, card, "recharge-3"))

    assert isinstance(result, NeedsCustomer)
    assert result.reason == "authentication_required"
    assert result.client_secret.startswith(result.payment_id)


async def test_a_checkout_waits_for_the_customer(provider: StripeProvider) -> None:
    customer = await new_customer(provider)
    request = CheckoutRequest(
        customer,
        5000,
        "eur",
        "50 credits",
        f"buy-{uuid.uuid4()}",
        {"purchase": "b1"},
        frozenset({"card", "bank_transfer"}),
    )

    checkout = await provider.start_checkout(request)
    record = await provider.retrieve_payment(checkout.payment_id)

    assert checkout.client_secret.startswith(checkout.payment_id)
    assert isinstance(record.status, NeedsCustomer)
    assert record.status.reason == "awaiting_payment"
    assert (record.amount_minor, record.metadata) == (5000, {"purchase": "b1"})


async def test_every_post_carries_our_own_idempotency_key(
    provider: StripeProvider, browser: stripe.StripeClient, recorder: RecordingHTTPClient
) -> None:
    org = f"org-{uuid.uuid4()}"
    customer = await provider.ensure_customer(org, "Acme")
    card = await save_card(provider, browser, customer, "4242424242424242")
    await provider.charge_off_session(charge(customer, card, "our-charge-key"))
    await provider.start_checkout(CheckoutRequest(customer, 100, "eur", "c", "our-checkout-key"))
    await provider.detach_payment_method(card.provider_ref)

    posts = recorder.posts()

    assert len(posts) == 5
    keys = [key for _, key in posts]
    assert keys[0] == f"callcontrol-customer-{org}"
    assert keys[1] is not None and keys[1].startswith("setup-")
    assert keys[2:] == [
        "our-charge-key",
        "our-checkout-key",
        f"callcontrol-detach-{card.provider_ref}",
    ]


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A server that accepts requests and never answers: a charge whose answer is lost."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(-1)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    for writer in connections:
        writer.close()
        await writer.wait_closed()
    await server.wait_closed()


async def test_a_charge_without_answer_is_unknown_and_retried_with_the_same_key(
    black_hole: str,
) -> None:
    """No localstripe needed: the SDK's retry after a timeout must reuse our key."""
    base = black_hole
    recorder = RecordingHTTPClient(timeout=0.3)
    settings = StripeSettings(API_KEY, WEBHOOK_SECRET, api_base=base, max_network_retries=1)
    silent = StripeProvider(settings, http_client=recorder)
    try:
        request = OffSessionCharge("cus_x", "pm_x", 2000, "eur", "20 credits", "lost-answer")
        result = await silent.charge_off_session(request)
        with pytest.raises(PaymentUnavailable, match="could not be reached"):
            await silent.ensure_customer("org-1", "Acme")
    finally:
        await silent.close()

    assert isinstance(result, Unknown)
    assert recorder.posts()[:2] == [(f"{base}/v1/payment_intents", "lost-answer")] * 2


@pytest.fixture
async def webhooks(localstripe: str) -> AsyncIterator[asyncio.Queue[tuple[bytes, dict[str, str]]]]:
    """Webhooks localstripe sends (signed with WEBHOOK_SECRET) to a receiver started here."""
    received: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((await request.read(), dict(request.headers)))
        return web.Response()

    app = web.Application()
    app.router.add_post("/webhooks/stripe", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    registration = {
        "url": f"http://127.0.0.1:{port}/webhooks/stripe",
        "secret": WEBHOOK_SECRET,
        "events[]": "payment_intent.succeeded",
    }
    async with aiohttp.ClientSession() as session:
        hook = f"{localstripe}/_config/webhooks/test-{port}"
        async with session.post(hook, data=registration) as response:
            assert response.status == 200
    yield received
    await runner.cleanup()


async def succeeded_webhook(
    provider: StripeProvider,
    browser: stripe.StripeClient,
    webhooks: asyncio.Queue[tuple[bytes, dict[str, str]]],
) -> tuple[str, bytes, dict[str, str]]:
    customer = await new_customer(provider)
    card = await save_card(provider, browser, customer, "4242424242424242")
    result = await provider.charge_off_session(charge(customer, card, f"hook-{uuid.uuid4()}"))
    assert isinstance(result, Succeeded)
    while True:
        body, headers = await asyncio.wait_for(webhooks.get(), timeout=15)
        if result.payment_id.encode() in body:
            return result.payment_id, body, headers


async def test_a_webhook_signed_by_the_server_is_verified_and_read(
    provider: StripeProvider,
    browser: stripe.StripeClient,
    webhooks: asyncio.Queue[tuple[bytes, dict[str, str]]],
) -> None:
    payment_id, body, headers = await succeeded_webhook(provider, browser, webhooks)

    event = provider.parse_webhook(body, headers)

    assert (event.type, event.object_type, event.object_id) == (
        "payment_intent.succeeded",
        "payment_intent",
        payment_id,
    )
    assert event.metadata["purchase"].startswith("hook-")
    with pytest.raises(WebhookRejected, match="signature"):
        provider.parse_webhook(body.replace(b"succeeded", b"failed", 1), headers)
    settings = StripeSettings(API_KEY, "whsec_someone_else")
    with pytest.raises(WebhookRejected, match="signature"):
        StripeProvider(settings).parse_webhook(body, headers)


async def test_an_old_webhook_is_rejected_as_a_replay(provider: StripeProvider) -> None:
    body = b'{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded"}'
    old = int(time.time()) - 600
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{old}.".encode() + body, hashlib.sha256)
    headers = {"Stripe-Signature": f"t={old},v1={mac.hexdigest()}"}

    with pytest.raises(WebhookRejected, match="tolerance"):
        provider.parse_webhook(body, headers)
    with pytest.raises(WebhookRejected, match="No Stripe-Signature header"):
        provider.parse_webhook(body, {})


# ---- the console's card form, server side (the test plays Stripe.js) ---------------------


def signed(body: bytes) -> dict[str, str]:
    now = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256)
    return {"Stripe-Signature": f"t={now},v1={mac.hexdigest()}"}


async def confirm_in_browser(
    browser: stripe.StripeClient, setup: CardSetup, number: str, exp_year: int
) -> str:
    """What stripe.confirmCardSetup does: the card goes to Stripe, its id comes back."""
    intent = await browser.v1.setup_intents.retrieve_async(setup.setup_id)
    card = {"number": number, "exp_month": 11, "exp_year": exp_year, "cvc": "123"}
    created = await browser.v1.payment_methods.create_async({"type": "card", "card": card})  # type: ignore[typeddict-item]
    await browser.v1.setup_intents.confirm_async(setup.setup_id, {"payment_method": created.id})
    await browser.v1.payment_methods.attach_async(created.id, {"customer": str(intent.customer)})
    return created.id


async def test_a_card_saved_with_the_card_form_is_recorded_and_buys_credits(
    database_url: str, tmp_path: Path, provider: StripeProvider, browser: stripe.StripeClient
) -> None:
    async with services_on(database_url, tmp_path, payment_provider="stripe") as services:
        services._payments = provider  # the Stripe adapter on localstripe
        funding = services.funding
        async with services.db.session() as session:  # a customer of this test's own
            await MethodRepository(session).set_customer("stripe", await new_customer(provider))

        setup = await funding.start_card_setup()
        intent = await browser.v1.setup_intents.retrieve_async(setup.setup_id)
        ref = await confirm_in_browser(browser, setup, "4242424242424242", 2031)
        [added] = await funding.take_in_cards()
        again = await funding.take_in_cards()
        attempt = await funding.buy(10 * MICRO, added.id)

        assert (intent.usage, intent.customer) == ("off_session", await funding.customer_id())
        assert setup.client_secret not in repr(setup)
        assert (added.kind, added.brand, added.last4) == ("card", "visa", "4242")
        assert (added.exp_month, added.exp_year, added.provider_ref) == (11, 2031, ref)
        assert again == [] and [m.id for m in await funding.methods()] == [added.id]
        assert attempt.state == "succeeded" and attempt.method_id == added.id

        # a card saved while the page was closed: the setup_intent.succeeded webhook
        later = await funding.start_card_setup()
        ref = await confirm_in_browser(browser, later, "5555555555554444", 2032)
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "setup_intent.succeeded",
            "created": int(time.time()),
            # the body's claims are not read: the cards are re-read from Stripe
            "data": {"object": {"id": later.setup_id, "object": "setup_intent", "brand": "x"}},
        }
        body = json.dumps(event).encode()
        first = await services.settlement.receive_webhook("stripe", body, signed(body))
        repeat = await services.settlement.receive_webhook("stripe", body, signed(body))
        left = await funding.take_in_cards()  # nothing: the webhook recorded it
        saved = {m.provider_ref: m for m in await funding.methods()}

        assert (first, repeat, left) == ("stored", "duplicate", [])
        assert (saved[ref].last4, saved[ref].exp_year) == ("4444", 2032)  # localstripe: visa
        assert len(saved) == 2
