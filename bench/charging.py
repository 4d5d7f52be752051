"""Charging throughput: holds and debits per second on one wallet, many calls at once.

    .venv/bin/python bench/charging.py [--calls 50] [--seconds 5]

For each database (SQLite file; PostgreSQL on 127.0.0.1:5432 when it answers) it runs
``--calls`` concurrent "calls", each repeating what a live call does per debit
interval: ``charge`` what was used and ``hold_up_to`` the next slice, then at the end
``release``. Two baselines, in the same run on the same engine, do the cheapest write
that could do the job, one ``UPDATE wallets SET held_micro = held_micro + 0`` per
operation:

- "session": in a session of its own (BEGIN, UPDATE, COMMIT), as the app's other
  writes run (and as the wallet ran before its writes became single statements);
- "statement": the way ``Wallet`` runs its writes: on PostgreSQL in autocommit with
  at most the pool's size at once, on SQLite in one writer's BEGIN IMMEDIATE at a time.

The table prints operations per second and the ratios to both (the ratio to
"statement" is what the ledger, idempotency keys and atomic checks cost).

    .venv/bin/python bench/charging.py --auto-recharge [--calls 50] [--seconds 5]

runs the same calls twice per database with the app's auto-recharger running beside them
(offline provider, a test card): once with auto-recharge off, once on with a threshold the
calls cross at once and a recharge of one credit, so it is crossed again right after each
recharge (recharges back to back for the whole run). It prints both rates, their ratio and
the recharges made: auto-recharge must add nothing to the charging path.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from callcontrol.billing.wallet import Wallet
from callcontrol.config import Settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.services import Services, open_services
from callcontrol.store import migrate
from callcontrol.store.db import Database

T = TypeVar("T")
ROUNDS = (False, True, True, False)  # auto-recharge off/on, interleaved against drift
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RECHARGES = text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'auto_recharge'")
BASELINE = text("UPDATE wallets SET held_micro = held_micro + 0 WHERE id = 1")


async def _calls(wallet: Wallet, calls: int, seconds: float, charge: int = 1000) -> int:
    await wallet.credit(10**6 * MICRO, LedgerKind.PURCHASE, "bench", f"bench:{uuid.uuid4()}", "")
    deadline = time.monotonic() + seconds
    done = 0

    async def call() -> None:
        nonlocal done
        call_id = uuid.uuid4().hex
        await wallet.hold(call_id, 1000)
        second = 0
        while time.monotonic() < deadline:
            second += 1
            await wallet.charge(call_id, charge, f"call:{call_id}:at:{second}")
            await wallet.hold_up_to(call_id, 1000)
            done += 2
        await wallet.release(call_id)

    await asyncio.gather(*(call() for _ in range(calls)))
    return done


async def _baseline(db: Database, calls: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with db.session() as session:
                await session.execute(BASELINE)
            done += 1

    await asyncio.gather(*(worker() for _ in range(calls)))
    return done


async def _statement_baseline(db: Database, calls: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    done = 0
    pool = db.engine.pool
    gate = asyncio.Semaphore(pool.size() if isinstance(pool, QueuePool) else 5)
    autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    writer = asyncio.Lock()

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            if db.dialect == "sqlite":
                async with writer, db.session(immediate=True) as session:
                    await session.execute(BASELINE)
            else:
                async with gate, autocommit.connect() as connection:
                    await connection.execute(BASELINE)
            done += 1

    await asyncio.gather(*(worker() for _ in range(calls)))
    return done


async def _with_recharger(
    services: Services, calls: int, seconds: float, on: bool
) -> tuple[float, int]:
    """ops/s of the calls with the recharger running, auto-recharge on or off; recharges."""
    wallet, funding = services.charging.wallet, services.funding
    method = await funding.add_test_card("visa")
    start = (await wallet.balance()).available
    await funding.auto_recharge_on(
        threshold_micro=start + 10**6 * MICRO,  # what _calls credits: the first charge crosses
        amount_micro=MICRO,
        method_id=method.id,
        monthly_cap_micro=None,
    )
    if not on:
        await funding.auto_recharge_off()
    before = await _recharges(services.db)
    recharger = asyncio.create_task(services.recharger.run())
    try:
        # 0.1 credit a charge: a one-credit recharge is used up within a few dozen writes
        ops = await _calls(wallet, calls, seconds, charge=MICRO // 10) / seconds
    finally:
        recharger.cancel()
    return ops, await _recharges(services.db) - before


async def _recharges(db: Database) -> int:
    async with db.session() as session:
        count = await session.scalar(RECHARGES)
    return int(count or 0)


async def measure_recharge(
    name: str, url: str, calls: int, seconds: float
) -> tuple[str, float, float, int]:
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(database_url=url, purchase_min_credits=1)
    async with open_services(settings) as services:
        runs = [await _with_recharger(services, calls, seconds, on=on) for on in ROUNDS]
        off = sum(ops for (ops, _), on in zip(runs, ROUNDS, strict=True) if not on) / 2
        on = sum(ops for (ops, _), on in zip(runs, ROUNDS, strict=True) if on) / 2
        recharges = sum(made for _, made in runs)
        problems = await services.charging.wallet.audit()
        if problems:
            raise SystemExit(f"{name}: audit failed after the run: {problems}")
    return name, off, on, recharges


async def measure(
    name: str, url: str, calls: int, seconds: float
) -> tuple[str, float, float, float]:
    await asyncio.to_thread(migrate.upgrade, url)
    async with open_services(Settings(database_url=url)) as services:
        db, wallet = services.db, services.charging.wallet
        session = await _baseline(db, calls, seconds) / seconds
        statement = await _statement_baseline(db, calls, seconds) / seconds
        # 0.1 credit a charge: a one-credit recharge is used up within a few dozen writes
        ops = await _calls(wallet, calls, seconds, charge=MICRO // 10) / seconds
        problems = await wallet.audit()
        if problems:
            raise SystemExit(f"{name}: audit failed after the run: {problems}")
    return name, ops, session, statement


async def _each_database(
    measure_one: Callable[[str, str], Awaitable[T]],
) -> list[T]:
    """``measure_one(name, url)`` on a fresh SQLite file and a fresh PostgreSQL database."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(await measure_one("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"))
    name = f"cc_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgresql: skipped ({exc})")
        return rows
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        rows.append(await measure_one("postgresql", url))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--auto-recharge", action="store_true", help="auto-recharge off vs on")
    args = parser.parse_args()
    calls, seconds = args.calls, args.seconds
    print(f"\n{calls} concurrent calls on one wallet, {seconds:.0f} s per measurement")
    if args.auto_recharge:
        funded = await _each_database(lambda n, url: measure_recharge(n, url, calls, seconds))
        print(
            f"{'database':<12}{'auto-recharge off ops/s':>25}{'on ops/s':>10}{'ratio':>7}", end=""
        )
        print(f"{'recharges':>11}")
        for db_name, off, on, recharges in funded:
            print(f"{db_name:<12}{off:>25.0f}{on:>10.0f}{on / off:>7.2f}{recharges:>11}")
        return
    rows = await _each_database(lambda n, url: measure(n, url, calls, seconds))
    print(
        f"{'database':<12}{'charge+hold ops/s':>19}{'session UPDATE/s':>18}{'ratio':>7}"
        f"{'statement UPDATE/s':>20}{'ratio':>7}"
    )
    for db_name, ops, session, statement in rows:
        print(
            f"{db_name:<12}{ops:>19.0f}{session:>18.0f}{ops / session:>7.2f}"
            f"{statement:>20.0f}{ops / statement:>7.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
