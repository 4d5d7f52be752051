"""The PBX, the database and other instances fail; calls and records survive."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from log_contract import READY, REPLACED
from pbx_harness import ROUTED, UNROUTED, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO
from callcontrol.pbx.devpbx import DevPbx

pytestmark = pytest.mark.pbx

PG_ADMIN = os.environ.get(
    "TEST_CALLCONTROL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def test_asterisk_restart_reprovisions_the_phones(
    pbx: Settings, app: AppProcess, org: Org, phones: Phones, carrier: Carrier
) -> None:
    devpbx = DevPbx(pbx)
    await asyncio.to_thread(devpbx.down)  # memory-backed endpoints are gone with it
    mark = app.mark()
    await asyncio.to_thread(devpbx.up)
    ready = await app.wait_log(READY, after=mark, timeout=60)  # after the reconnect
    assert ready["users"] == "3"
    phone = await phones.answering("alice")  # registers with the re-provisioned credentials
    c = await (await carrier.call(ROUTED, hang_up_after_ms=500)).wait(30)
    assert c.ok, c.explain()
    assert (await phone.wait(30)).ok
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by, record.user_name) == (
        "answered",
        "caller",
        "alice",
    )


async def test_a_second_instance_takes_over_and_the_first_stops(
    app: AppProcess, org: Org, carrier: Carrier
) -> None:
    # The same Stasis application, its prompts on another port of this host.
    second = AppProcess(org, "app2", env={"CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8098"})
    await second.start()
    try:
        assert app.proc is not None
        assert await asyncio.wait_for(app.proc.wait(), 15) == 1
        stopped = await app.wait_log(REPLACED)  # why it stopped: only its output tells
        assert stopped["app"] == "callcontrol"
        c = await (await carrier.call(UNROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()
        [call_id] = await second.calls_released(1)
    finally:
        await second.stop()
    assert (await org.record(call_id)).disposition == "refused_no_route"


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
            await app.calls_released(1)  # over, though the database never answered
        finally:
            await _set_connections(pg_database, allowed=True)
        c = await (await carrier.call(UNROUTED, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        second_id = (await app.calls_released(2))[1]
    finally:
        await app.stop()
    # The refused call could leave no record; the next one, after the outage, did.
    assert [r.call_id for r in await org.records()] == [second_id]
    assert (await org.record(second_id)).disposition == "refused_no_route"


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
        call_id = await app.connected("alice")
        assert await org.paid_for(call_id) == MICRO  # paid until 10 s
        await _set_connections(pg_database, allowed=False)
        try:
            c = await call.wait(40)  # Asterisk ends it at the 10 s it holds credits for
            assert c.ok, c.explain()
            assert (await phone.wait(30)).ok
            # The call is over though its charge and record could not be written.
            assert await app.calls_released(1) == [call_id]
        finally:
            await _set_connections(pg_database, allowed=True)
        # A retry settles it once the database is back: no event tells when.
        record = await org.wait_record(call_id, lambda r: r.ended_at is not None, timeout=60)
    finally:
        await app.stop()
    assert (record.disposition, record.ended_by, record.charge_state) == (
        "answered",
        "system",
        "settled",
    )
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
