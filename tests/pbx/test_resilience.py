"""The PBX, the database and other instances fail; calls and records survive."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from conftest import ROUTED, UNROUTED, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO
from callcontrol.pbx.devpbx import DevPbx

pytestmark = pytest.mark.pbx

PG_ADMIN = os.environ.get(
    "TEST_CALLCONTROL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def test_asterisk_restart_reprovisions_the_phones(
    pbx: Settings, app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    devpbx = DevPbx(pbx)
    await asyncio.to_thread(devpbx.down)  # memory-backed endpoints are gone with it
    await app.wait_log(r"ARI events: .*; reconnecting in")
    mark = app.mark()
    await asyncio.to_thread(devpbx.up)
    await app.wait_log(r"provisioned 3 users", after=mark, timeout=60)
    phone = await phones.answering("alice")  # registers with the re-provisioned credentials
    c = await (await carrier.call(ROUTED, hang_up_after_ms=500)).wait(30)
    assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    await app.wait_log(r"call ended: answered, ended by caller", after=mark)


async def test_a_second_instance_takes_over_and_the_first_stops(
    app: AppProcess, org: Org, carrier: Carrier
) -> None:
    # The same Stasis application, its prompts on another port of this host.
    second = AppProcess(org, "app2", env={"CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8098"})
    await second.start()
    try:
        assert app.proc is not None
        assert await asyncio.wait_for(app.proc.wait(), 15) == 1
        await app.wait_log(r"error: .*replaced")
        c = await (await carrier.call(UNROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()
        await second.wait_log(r"call ended: refused_no_route")
    finally:
        await second.stop()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    name = f"cc_pbx_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _set_connections(name: str, allowed: bool) -> None:
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await admin.execute(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


async def test_database_outage_fails_closed_and_recovers(
    pbx: Settings, tmp_path: Path, pg_database: str, carrier: Carrier
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    org = await make_org(pbx, tmp_path, url)
    app = await AppProcess(org).start()
    try:
        await _set_connections(pg_database, allowed=False)
        try:
            c = await (await carrier.call(ROUTED, refused=True)).wait(30)
            assert c.ok, c.explain()
            received = c.received()
            assert "SIP/2.0 183 Session Progress" in received  # all circuits are busy
            assert received[-1].startswith("SIP/2.0 503")
            await app.wait_log(r"the database failed: database unavailable")
        finally:
            await _set_connections(pg_database, allowed=True)
        mark = app.mark()
        c = await (await carrier.call(UNROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        await app.wait_log(r"call ended: refused_no_route", after=mark)
        assert (await org.record()).disposition == "refused_no_route"
    finally:
        await app.stop()


STEEP_RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,6,0,1/1,0.1 credit a second
"""


async def test_database_lost_mid_call_pbx_ends_it_at_the_held_limit_and_it_is_charged_once(
    pbx: Settings, tmp_path: Path, pg_database: str, phones: Phones, carrier: Carrier
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(STEEP_RATES)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    org = await make_org(
        pbx,
        tmp_path,
        url,
        credits=100 * MICRO,
        rates=rates,
        env={"CALLCONTROL_CHARGE_INTERVAL": "10"},
    )
    app = await AppProcess(org).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED)  # waits for the PBX's BYE
        await app.wait_log(r"paid until 10 s")
        await app.wait_log(r"connected \S+ with alice")
        await _set_connections(pg_database, allowed=False)
        try:
            await app.wait_log(r"cannot charge .*the PBX ends the call at 10 s")
            c = await call.wait(40)  # Asterisk ends it at the 10 s it holds credits for
            assert c.ok, c.explain()
            assert (await phone.wait(30)).ok
            await app.wait_log(r"the call's charge and record wait for the database")
        finally:
            await _set_connections(pg_database, allowed=True)
        await app.wait_log(r"settled: (9|10) s talk", timeout=60)
        await app.wait_log(r"call ended: answered", timeout=30)
    finally:
        await app.stop()
    record = await org.record()
    assert record.answered_at is not None and record.ended_at is not None
    assert 9.0 <= (record.ended_at - record.answered_at).total_seconds() <= 11.5
    assert record.cost_micro in (9 * MICRO // 10, MICRO)
    wallet, db = await org.wallet()
    try:
        state = await wallet.balance()
        assert state.balance == 100 * MICRO - record.cost_micro
        assert state.held == 0
        assert await wallet.audit() == []
    finally:
        await db.dispose()
