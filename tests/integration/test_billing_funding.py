"""Buying credits, told as stories on SQLite and PostgreSQL with the offline provider (its
memory in the database, so a "restart" is simply new services on the same database).

Every story ends with the same two checks: each paid attempt is credited exactly once
(one ledger entry, key ``purchase:<attempt>``) and ``credits audit`` is clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from funding_harness import (
    Crash,
    around_charge,
    attempt_states,
    card,
    deliver,
    drain,
    purchases,
    services_on,
)

from callcontrol.domain.money import MICRO
from callcontrol.errors import InvalidInput, NotFound
from callcontrol.payments.offline_state import SignedWebhook
from callcontrol.payments.port import ChargeResult
from callcontrol.services import Services


async def assert_credited_once(services: Services, credits: int) -> None:
    entries = await purchases(services)
    assert [e.amount for e in entries] == ([credits * MICRO] if credits else [])
    if entries:
        assert entries[0].idempotency_key == f"purchase:{entries[0].reference}"
    assert (await services.charging.wallet.balance()).balance == credits * MICRO
    assert await services.charging.wallet.audit() == []


async def test_a_card_pays_and_the_credits_arrive(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        method = await card(services)
        assert method.is_default and method.describe() == "card visa ****4242 (12/2034)"
        attempt = await services.funding.buy(10 * MICRO)
        assert attempt.state == "succeeded" and attempt.amount_minor == 1000
        assert attempt.currency == "eur" and attempt.provider_payment_id is not None
        await assert_credited_once(services, 10)


async def test_a_declined_card_credits_nothing(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        method = await card(services, "declined")
        attempt = await services.funding.buy(10 * MICRO, method.id)
        assert (attempt.state, attempt.decline_code) == ("failed", "card_declined")
        await deliver(services, await drain(services))  # the payment_failed webhook
        await assert_credited_once(services, 0)


async def test_authentication_required_credits_nothing(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await card(services, "authentication_required")
        attempt = await services.funding.buy(10 * MICRO)
        assert attempt.state == "needs_customer"
        await assert_credited_once(services, 0)


async def test_a_timeout_is_resolved_after_a_restart(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await card(services, "timeout_after_charge")  # the charge is applied, the answer lost
        attempt = await services.funding.buy(10 * MICRO)
        assert attempt.state == "unknown"
        await assert_credited_once(services, 0)
    async with services_on(database_url, tmp_path) as restarted:
        assert await restarted.settlement.reconcile() == 1  # sent again, same key
        assert await attempt_states(restarted) == ["succeeded"]
        await restarted.settlement.reconcile()
        await deliver(restarted, await drain(restarted))
        await assert_credited_once(restarted, 10)


async def test_a_crash_between_the_payment_and_the_ledger(
    database_url: str, tmp_path: Path
) -> None:
    async with services_on(database_url, tmp_path) as services:
        await card(services)

        async def die(result: ChargeResult) -> ChargeResult:
            raise Crash

        around_charge(services, die)
        with pytest.raises(Crash):
            await services.funding.buy(10 * MICRO)
        assert await attempt_states(services) == ["created"]
        await assert_credited_once(services, 0)
    async with services_on(database_url, tmp_path) as restarted:
        await restarted.settlement.reconcile()
        await restarted.settlement.reconcile()
        assert await attempt_states(restarted) == ["succeeded"]
        await assert_credited_once(restarted, 10)


@pytest.mark.parametrize("when", ["before", "after", "twice around"])
async def test_the_webhook_and_the_answer_credit_once(
    database_url: str, tmp_path: Path, when: str
) -> None:
    """The webhook arrives before the charge's answer is booked, after it, or both."""
    async with services_on(database_url, tmp_path) as services:
        await card(services)
        await drain(services)  # the card's setup_intent.succeeded: not this story's
        sent: list[SignedWebhook] = []
        answers: list[str] = []

        async def webhook_first(result: ChargeResult) -> ChargeResult:
            sent.extend(await drain(services))
            answers.extend(await deliver(services, sent))
            return result

        if when != "after":
            around_charge(services, webhook_first)
        attempt = await services.funding.buy(10 * MICRO)
        assert attempt.state == "succeeded"
        sent.extend(await drain(services))
        if when != "before":
            answers.extend(await deliver(services, sent))
        assert answers[0] == "stored" and set(answers[1:]) <= {"duplicate"}
        assert len(answers) == (2 if when == "twice around" else 1)
        await assert_credited_once(services, 10)


async def test_a_bank_transfer_is_credited_when_it_arrives(
    database_url: str, tmp_path: Path
) -> None:
    async with services_on(database_url, tmp_path) as services:
        method = await services.funding.add_bank_transfer("invoice to Acme Ltd")
        attempt = await services.funding.buy(5 * MICRO, method.id)
        assert attempt.state == "pending"
        await assert_credited_once(services, 0)
        paid = await services.funding.offline_transfer_arrives(attempt.id)
        assert paid.state == "succeeded"
        await deliver(services, await drain(services))
        await assert_credited_once(services, 5)


async def test_amounts_are_checked_before_anything_is_asked(
    database_url: str, tmp_path: Path
) -> None:
    async with services_on(database_url, tmp_path, credit_price_minor=3) as services:
        with pytest.raises(InvalidInput, match="no payment method"):
            await services.funding.buy(10 * MICRO)
        await card(services)
        with pytest.raises(InvalidInput, match="not a whole amount"):
            await services.funding.buy(MICRO + MICRO // 2)  # 4.5 cents
        with pytest.raises(InvalidInput, match="between"):
            await services.funding.buy(20_000 * MICRO)
        with pytest.raises(NotFound):
            await services.funding.buy(10 * MICRO, 99)
        assert await attempt_states(services) == []
