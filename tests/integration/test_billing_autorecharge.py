"""Auto-recharge on SQLite and PostgreSQL: the single-flight claim across tasks and across
processes (two sets of services, each its own engine and pool, on one database), declines,
back-off and the monthly cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from funding_harness import attempt_states, card, fund, purchases, services_on
from sqlalchemy import select

from callcontrol.domain.money import MICRO
from callcontrol.errors import Conflict, InvalidInput
from callcontrol.services import Services
from callcontrol.store.autorecharge import AutoRechargeRepository
from callcontrol.store.models import NotificationRow, utcnow


async def switch_on(services: Services, name: str = "visa", cap: int | None = None) -> None:
    method = await card(services, name)
    await services.funding.auto_recharge_on(
        threshold_micro=2 * MICRO,
        amount_micro=10 * MICRO,
        method_id=method.id,
        monthly_cap_micro=cap * MICRO if cap else None,
    )


async def notifications(services: Services) -> list[str]:
    async with services.db.session() as session:
        rows = await session.scalars(select(NotificationRow).order_by(NotificationRow.id))
        return [row.kind for row in rows]


async def clear_back_off(services: Services) -> None:
    async with services.db.session() as session:
        await AutoRechargeRepository(session).back_off(utcnow() - timedelta(seconds=1))


async def test_below_the_threshold_buys_once(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await switch_on(services)
        await fund(services, 3)
        assert await services.recharger.check() is None  # 3 >= 2: nothing to do
        await services.charging.wallet.adjust(-2 * MICRO, "spent")  # 1 left: below 2
        attempt = await services.recharger.check()
        assert attempt is not None and attempt.state == "succeeded"
        assert attempt.kind == "auto_recharge"
        assert await services.recharger.check() is None  # 11 now
        assert [e.amount for e in await purchases(services)] == [10 * MICRO]
        assert await notifications(services) == ["low_balance", "recharge_succeeded"]
        status = await services.funding.status()
        assert status.auto_recharge.in_flight is None and status.auto_recharge.enabled
        assert await services.charging.wallet.audit() == []


async def test_twenty_tasks_and_two_processes_make_one_recharge(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        services_on(database_url, tmp_path) as one,
        services_on(database_url, tmp_path) as two,
    ):
        await switch_on(one)
        await fund(one, 1)
        checks = [s.recharger.check() for s in (one, two) for _ in range(10)]
        made = [a for a in await asyncio.gather(*checks) if a is not None]
        assert len(made) == 1
        assert await attempt_states(one) == ["succeeded"]
        assert (await one.charging.wallet.balance()).balance == 11 * MICRO
        assert await one.charging.wallet.audit() == []


async def test_a_hard_decline_switches_it_off(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await switch_on(services, "expired")
        await fund(services, 1)
        attempt = await services.recharger.check()
        assert attempt is not None and attempt.state == "failed"
        auto = (await services.funding.status()).auto_recharge
        assert not auto.enabled and auto.in_flight is None
        assert auto.off_reason is not None and "expired_card" in auto.off_reason
        assert await services.recharger.check() is None
        assert await purchases(services) == []
        assert await notifications(services) == ["low_balance", "auto_recharge_off"]


async def test_authentication_required_switches_it_off(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await switch_on(services, "authentication_required")
        await fund(services, 1)
        attempt = await services.recharger.check()
        assert attempt is not None and attempt.state == "needs_customer"
        auto = (await services.funding.status()).auto_recharge
        assert not auto.enabled and auto.off_reason == "authentication required by the bank"


async def test_soft_declines_back_off_then_switch_it_off(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await switch_on(services, "insufficient_funds")
        await fund(services, 1)
        for tries in (1, 2):
            before = utcnow()
            attempt = await services.recharger.check()
            assert attempt is not None and attempt.state == "failed"
            auto = (await services.funding.status()).auto_recharge
            assert auto.enabled and auto.failures == tries and auto.retry_at is not None
            delay = (3600, 21600)[tries - 1]
            assert before + timedelta(seconds=delay) <= auto.retry_at
            assert await services.recharger.check() is None  # waiting: not a tight loop
            await clear_back_off(services)
        assert await services.recharger.check() is not None  # the third in a row
        auto = (await services.funding.status()).auto_recharge
        assert not auto.enabled and auto.off_reason is not None
        assert auto.off_reason.startswith("3 declines in a row")
        assert await attempt_states(services) == ["failed"] * 3
        kinds = await notifications(services)
        assert kinds == ["low_balance", "recharge_failed", "recharge_failed", "auto_recharge_off"]


async def test_the_monthly_cap_is_never_exceeded(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        await switch_on(services, cap=25)
        await fund(services, 1)
        for _ in range(2):
            assert await services.recharger.check() is not None
            await services.charging.wallet.adjust(-10 * MICRO, "spent")
        assert await services.recharger.check() is None  # 20 + 10 > 25
        auto = (await services.funding.status()).auto_recharge
        assert auto.enabled and auto.retry_at is not None and auto.retry_at.day == 1
        assert await services.recharger.check() is None
        assert [e.amount for e in await purchases(services)] == [10 * MICRO] * 2
        assert (await notifications(services)).count("auto_recharge_capped") == 1


async def test_only_a_card_pays_for_it(database_url: str, tmp_path: Path) -> None:
    async with services_on(database_url, tmp_path) as services:
        transfer = await services.funding.add_bank_transfer("invoice")
        with pytest.raises(InvalidInput, match="card only"):
            await services.funding.auto_recharge_on(
                threshold_micro=2 * MICRO,
                amount_micro=10 * MICRO,
                method_id=transfer.id,
                monthly_cap_micro=None,
            )
        await switch_on(services)
        status = await services.funding.status()
        assert status.method is not None and status.method.kind == "card"
        with pytest.raises(Conflict, match="auto-recharge pays with"):
            await services.funding.remove_method(status.method.id)
        await services.funding.auto_recharge_off()
        await services.funding.remove_method(status.method.id)
        assert [m.kind for m in await services.funding.methods()] == ["bank_transfer"]
