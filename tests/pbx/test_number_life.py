"""A number's life through the real PBX: bought, routed, assigned, rented, released;
emergency calls. The carrier is sipp (UAC calling in, UAS answering calls out)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from pbx_harness import ROUTED, USERS, AppProcess, Carrier, Org, Phones, make_org

from callcontrol.billing.errors import InsufficientCredits
from callcontrol.carrier.catalogue_file import parse_catalogue
from callcontrol.config import Settings, load_settings
from callcontrol.domain.directory import NumberState
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.pbx.sipp import (
    CARRIER_ANSWERED,
    CARRIER_REFUSED,
    HANG_UP_AFTER,
    WAIT_FOR_BYE,
    SippProcess,
    SippResult,
    free_port,
    render,
    run_sipp,
)
from callcontrol.services import Services, open_services

pytestmark = pytest.mark.pbx

T = TypeVar("T")
LONDON, LONDON_2 = "+442079460150", "+442079460151"
CATALOGUE = """\
number,type,setup_price,monthly_price
+442079460150,local,1,2
+442079460151,local,1,0.1
"""
DESTINATION = "+4930123456"
RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,0.6,0,1/1,inbound
outbound,,DE,,0.6,0,1/1,Germany
"""
CARRIER_PORT = 5070  # the carrier trunk's address in dialplan/pjsip.conf
PG_ADMIN = os.environ.get(
    "TEST_CALLCONTROL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def numbers_org(
    pbx: Settings, tmp_path: Path, *, credits: int = 10 * MICRO, db_url: str | None = None
) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    org = await make_org(pbx, tmp_path, db_url, credits=credits, rates=rates)
    await on_services(org, _import)
    return org


async def _import(services: Services) -> None:
    await services.inventory.import_offers(parse_catalogue(CATALOGUE, name="test"))


@asynccontextmanager
async def services_of(org: Org, **env: str) -> AsyncIterator[Services]:
    settings = load_settings(environ={**org.env, **env})
    async with open_services(settings) as services:
        yield services


async def on_services(org: Org, work: Callable[[Services], Awaitable[T]]) -> T:
    """What an admin's command does, on the org's database (and Asterisk)."""
    async with services_of(org) as services:
        return await work(services)


async def audit_clean(org: Org) -> None:
    wallet, db = await org.wallet()
    try:
        assert await wallet.audit() == []
    finally:
        await db.dispose()


async def fee_entries(org: Org) -> list[tuple[str, int, str]]:
    wallet, db = await org.wallet()
    try:
        entries = await wallet.ledger(200)
    finally:
        await db.dispose()
    return [
        (str(e.kind), e.amount, e.idempotency_key)
        for e in reversed(entries)
        if e.kind in (LedgerKind.NUMBER_PURCHASE, LedgerKind.NUMBER_RENTAL)
    ]


async def state_of(org: Org, e164: str) -> NumberState | None:
    directory, db = await org.directory()
    try:
        numbers = {n.e164: n for n in await directory.list_numbers()}
    finally:
        await db.dispose()
    return numbers[e164].state if e164 in numbers else None


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Until ``check`` holds: what other processes write to the database has no event
    to await, so it is polled."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.3)


async def user_dials(
    tmp_path: Path, user: str, number: str, *, hang_up_after_ms: int = 0, refused: bool = False
) -> SippProcess:
    ext, password = USERS[user]
    if refused:
        final = CARRIER_REFUSED
    else:
        final = CARRIER_ANSWERED.format(after_ack=HANG_UP_AFTER.format(ms=hang_up_after_ms))
    return await run_sipp(
        tmp_path / "sipp",
        f"call-{user}-{number}-{uuid.uuid4().hex[:6]}",
        render("phone_call.xml", extension=ext, final=final),
        service=number,
        auth=(ext, password),
        local_port=free_port(),
        timeout_s=40,
    )


async def carrier_answers(tmp_path: Path) -> SippProcess:
    xml = render("phone_answer.xml", ring_ms=200, after_ack=WAIT_FOR_BYE.format(ms=30000))
    return await run_sipp(
        tmp_path / "sipp",
        f"carrier-uas-{uuid.uuid4().hex[:6]}",
        xml,
        server=True,
        local_port=CARRIER_PORT,
        timeout_s=40,
    )


def invite_of(result: SippResult) -> str:
    """The headers of the INVITE the carrier received."""
    assert "INVITE sip:" in result.messages, result.messages[-2000:]
    return result.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]


def header(invite: str, name: str) -> str:
    for line in invite.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line
    raise AssertionError(f"no {name} header in:\n{invite}")


async def call_out_presenting(tmp_path: Path, user: str) -> str:
    """``user`` calls out; the INVITE the carrier got (asserted answered)."""
    far_end = await carrier_answers(tmp_path)
    call = await user_dials(tmp_path, user, DESTINATION, hang_up_after_ms=500)
    c, f = await call.wait(40), await far_end.wait(40)
    assert c.ok, c.explain()
    assert f.ok, f.explain()
    return invite_of(f)


# ---- buying, routing, releasing ---------------------------------------------------------


async def test_a_bought_number_refuses_calls_until_routed_then_rings_the_user(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await numbers_org(pbx, tmp_path)
    offers = await on_services(org, lambda s: s.numbers.search("GB", "local", contains="0150"))
    assert [o.e164 for o in offers] == [LONDON]
    bought = await on_services(org, lambda s: s.numbers.buy(LONDON))
    assert bought.number.needs_routing
    app = await AppProcess(org).start()
    try:
        c = await (await carrier.call(LONDON, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        await app.wait_log(r"call ended: refused_no_route")
        assert (await org.latest_record()).disposition == "refused_no_route"
        await on_services(org, lambda s: s.directory.route_to_user(LONDON, "alice"))
        phone = await phones.answering("alice")
        c = await (await carrier.call(LONDON, hang_up_after_ms=500)).wait(30)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
        await app.wait_log(r"call ended: answered")
    finally:
        await app.stop()
    record = await org.latest_record()
    assert (record.number_e164, record.disposition, record.user_name) == (
        LONDON,
        "answered",
        "alice",
    )
    assert await fee_entries(org) == [("number_purchase", -3 * MICRO, f"number:{LONDON}:g1:buy")]
    await audit_clean(org)


async def test_buying_without_credits_is_refused_and_charges_nothing(
    pbx: Settings, tmp_path: Path
) -> None:
    org = await numbers_org(pbx, tmp_path, credits=2 * MICRO)
    with pytest.raises(InsufficientCredits, match="Nothing was reserved or charged"):
        await on_services(org, lambda s: s.numbers.buy(LONDON))
    assert await fee_entries(org) == []
    offers = await on_services(org, lambda s: s.numbers.search("GB", "local"))
    assert LONDON in [o.e164 for o in offers]  # not left reserved
    await audit_clean(org)


async def test_a_released_number_refuses_calls_at_once(
    pbx: Settings, tmp_path: Path, carrier: Carrier
) -> None:
    org = await numbers_org(pbx, tmp_path)
    await on_services(org, lambda s: s.numbers.buy(LONDON))
    await on_services(org, lambda s: s.directory.route_to_user(LONDON, "alice"))
    app = await AppProcess(org).start()
    try:
        await on_services(org, lambda s: s.numbers.release(LONDON))
        c = await (await carrier.call(LONDON, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        await app.wait_log(r"call ended: refused_unknown_number")
        assert (await org.latest_record()).disposition == "refused_unknown_number"
    finally:
        await app.stop()
    await audit_clean(org)


# ---- assignment and the caller ID ---------------------------------------------------------


async def test_a_user_without_an_assigned_number_is_refused_before_the_carrier(
    pbx: Settings, tmp_path: Path
) -> None:
    org = await numbers_org(pbx, tmp_path)
    await on_services(org, lambda s: s.numbers.buy(LONDON))
    await on_services(org, lambda s: s.directory.route_to_user(LONDON, "bob"))  # routed only
    app = await AppProcess(org).start()
    try:
        far_end = await carrier_answers(tmp_path)
        c = await (await user_dials(tmp_path, "bob", DESTINATION, refused=True)).wait(40)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")
        await app.wait_log(r"call ended: not_allowed")
        assert (await org.latest_record()).disposition == "not_allowed"
        far_end.kill()
        f = await far_end.wait(10)
        assert "INVITE" not in f.messages  # the carrier never saw the call
    finally:
        await app.stop()
    await audit_clean(org)


async def test_the_carrier_sees_the_users_default_assigned_number_in_from_and_pai(
    pbx: Settings, tmp_path: Path
) -> None:
    org = await numbers_org(pbx, tmp_path)
    await on_services(org, lambda s: s.numbers.buy(LONDON))
    await on_services(org, lambda s: s.numbers.buy(LONDON_2))
    await on_services(org, lambda s: s.numbers.assign(LONDON, "bob"))
    app = await AppProcess(org).start()
    try:
        invite = await call_out_presenting(tmp_path, "bob")
        assert LONDON in header(invite, "From")
        assert LONDON in header(invite, "P-Asserted-Identity")
        await on_services(org, lambda s: s.numbers.assign(LONDON_2, "bob"))  # not default
        invite = await call_out_presenting(tmp_path, "bob")
        assert LONDON in header(invite, "From") and LONDON_2 not in invite
        await on_services(org, lambda s: s.numbers.assign(LONDON_2, "bob", default=True))
        invite = await call_out_presenting(tmp_path, "bob")
        assert LONDON_2 in header(invite, "From")
        assert LONDON_2 in header(invite, "P-Asserted-Identity")
        await app.wait_count(r"call ended: answered", 3)
    finally:
        await app.stop()
    await audit_clean(org)


# ---- rent -----------------------------------------------------------------------------------

RENT_ENV = {
    "CALLCONTROL_NUMBER_RENTAL_PERIOD": "3",
    "CALLCONTROL_NUMBER_GRACE_PERIOD": "0",
    "CALLCONTROL_NUMBER_RENEW_INTERVAL": "0.5",
}


async def test_unpaid_rent_suspends_the_number_and_a_top_up_renews_it(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await numbers_org(pbx, tmp_path, credits=1_100_000)  # setup 1 + first 0.1
    async with services_of(org, **RENT_ENV) as services:
        await services.numbers.buy(LONDON_2)
        await services.directory.route_to_user(LONDON_2, "alice")
    app = await AppProcess(org, env=RENT_ENV).start()
    try:
        await app.wait_log(r"number notice: \+442079460151 suspended", timeout=20)
        assert await state_of(org, LONDON_2) is NumberState.SUSPENDED
        c = await (await carrier.call(LONDON_2, refused=True)).wait(30)
        assert c.ok, c.explain()
        assert c.received()[-1].startswith("SIP/2.0 404")  # not in service
        await app.wait_log(r"call ended: refused_suspended")
        assert (await org.latest_record()).disposition == "refused_suspended"
        wallet, db = await org.wallet()
        try:
            await wallet.credit(20 * MICRO, LedgerKind.PURCHASE, "test", "test:top-up")
        finally:
            await db.dispose()
        await app.wait_log(r"renewed \+442079460151: .*\(suspension lifted\)", timeout=20)
        assert await state_of(org, LONDON_2) is NumberState.ACTIVE
        phone = await phones.answering("alice")
        c = await (await carrier.call(LONDON_2, hang_up_after_ms=500)).wait(30)
        assert c.ok, c.explain()
        assert (await phone.wait(30)).ok
    finally:
        await app.stop()
    rents = [key for kind, _, key in await fee_entries(org) if kind == "number_rental"]
    assert rents and len(rents) == len(set(rents))
    await audit_clean(org)


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


async def test_two_app_processes_on_one_postgresql_renew_each_period_once(
    pbx: Settings, tmp_path: Path, pg_database: str
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    org = await numbers_org(pbx, tmp_path, credits=50 * MICRO, db_url=url)
    env = {**RENT_ENV, "CALLCONTROL_NUMBER_RENEW_INTERVAL": "0.2"}
    async with services_of(org, **env) as services:
        await services.numbers.buy(LONDON)
        await services.numbers.buy(LONDON_2)
    first = await AppProcess(org, "app1", env=env).start()
    # a second process: its own Stasis application and prompt port, the same database
    second = AppProcess(
        org,
        "app2",
        env={
            **env,
            "CALLCONTROL_ARI_APP": "callcontrol2",
            "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8098",
            "CALLCONTROL_CONSOLE_LISTEN": "127.0.0.1:8081",
        },
    )
    await second.start()
    try:

        async def six_rents() -> bool:
            return len([k for k, _, _ in await fee_entries(org) if k == "number_rental"]) >= 6

        await eventually(six_rents)
    finally:
        await first.stop()
        await second.stop()
    rents = [key for kind, _, key in await fee_entries(org) if kind == "number_rental"]
    assert len(rents) == len(set(rents))  # every number and period charged once
    assert {key.split(":")[1] for key in rents} == {LONDON, LONDON_2}
    await audit_clean(org)


# ---- emergency ------------------------------------------------------------------------------


async def test_an_emergency_call_with_no_credits_and_no_number_reaches_the_carrier_free(
    pbx: Settings, tmp_path: Path
) -> None:
    """Even with the app stopped: the dialplan sends 999 (GB) to the carrier itself,
    presenting the organisation's main number for bob, who has no number."""
    org = await numbers_org(pbx, tmp_path, credits=0)
    env = {"CALLCONTROL_MAIN_NUMBER": ROUTED}
    app = await AppProcess(org, env=env).start()  # provisions bob's caller ID
    await app.stop()
    far_end = await carrier_answers(tmp_path)
    call = await user_dials(tmp_path, "bob", "999", hang_up_after_ms=1000)
    c, f = await call.wait(40), await far_end.wait(40)
    assert c.ok, c.explain()
    assert f.ok, f.explain()
    invite = invite_of(f)
    assert invite.startswith("999@")
    assert ROUTED in header(invite, "From")
    wallet, db = await org.wallet()
    try:
        assert (await wallet.balance()).balance == 0
        assert await wallet.ledger(10) == []  # charged nothing
    finally:
        await db.dispose()
    await audit_clean(org)
