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
from callcontrol.pbx.devpbx import DevPbx

pytestmark = pytest.mark.pbx

PG_ADMIN = os.environ.get(
    "CALLCONTROL_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
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
    second = AppProcess(org, "app2")
    await second.start()  # connects as the same Stasis application
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
