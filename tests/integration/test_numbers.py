"""The life of a number against real databases: catalogue, buy, assign, release, rent.

Accounting stories with a manual clock: each fee is one ledger entry with its own
key, the audit stays clean, and two services on one database (two processes, on
PostgreSQL) charge each period once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callcontrol.billing.errors import InsufficientCredits
from callcontrol.billing.notifications import Notifier
from callcontrol.billing.wallet import Wallet
from callcontrol.carrier.catalogue_file import CatalogueFileError, parse_catalogue
from callcontrol.carrier.inventory import InventoryCatalogue
from callcontrol.directory import DirectoryService
from callcontrol.domain.directory import Assignment, NumberState
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.domain.rental import RentalPolicy
from callcontrol.errors import Conflict, InvalidInput, NotFound
from callcontrol.numbers.rental import NotifierNotices, RenewalAction, Renewals
from callcontrol.numbers.service import NumbersService
from callcontrol.store.db import Database
from callcontrol.store.models import NotificationRow

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = """\
number,type,setup_price,monthly_price
+442079460150,local,1,2
+442079460151,local,1,2
+441614960150,local,1,2
+448081570150,toll_free,5,10
+12125550150,local,0.5,1.5
"""
LONDON = "+442079460150"
PERIOD = 100  # seconds: a short rental period
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Org:
    db: Database
    clock: Clock
    directory: DirectoryService
    wallet: Wallet
    inventory: InventoryCatalogue
    numbers: NumbersService
    renewals: Renewals


def org_on(db: Database, clock: Clock, policy: RentalPolicy) -> Org:
    directory = DirectoryService(db, "callcontrol")
    wallet = Wallet(db)
    inventory = InventoryCatalogue(db, clock)
    numbers = NumbersService(db, inventory, wallet, directory, policy, clock)
    notices: list[object] = []

    class Notes:
        async def notify(self, renewal: object) -> None:
            notices.append(renewal)

    renewals = Renewals(db, wallet, numbers, policy, Notes(), clock)
    return Org(db, clock, directory, wallet, inventory, numbers, renewals)


POLICY = RentalPolicy(period_seconds=PERIOD, grace=50, release_after=200, ageing=1000)


@pytest.fixture
async def org(database: Database) -> Org:
    o = org_on(database, Clock(), POLICY)
    await o.inventory.import_offers(parse_catalogue(CATALOGUE, name="test.csv"))
    await o.directory.add_user("alice", "1001", "correct horse battery")
    await o.directory.add_user("bob", "1002", "correct horse battery")
    return o


async def credit(org: Org, credits: int, key: str) -> None:
    await org.wallet.credit(credits * MICRO, LedgerKind.PURCHASE, "test", key)


async def fees(org: Org) -> list[tuple[str, int, str]]:
    entries = await org.wallet.ledger(100)
    return [
        (str(e.kind), e.amount, e.idempotency_key)
        for e in reversed(entries)
        if e.kind in (LedgerKind.NUMBER_PURCHASE, LedgerKind.NUMBER_RENTAL, LedgerKind.REFUND)
    ]


# ---- catalogue ---------------------------------------------------------------------------


async def test_search_by_country_type_prefix_and_digits(org: Org) -> None:
    offers = await org.numbers.search("gb", "local")
    assert [o.e164 for o in offers] == ["+441614960150", LONDON, "+442079460151"]
    assert (offers[1].setup, offers[1].monthly) == (MICRO, 2 * MICRO)
    assert [o.e164 for o in await org.numbers.search("GB", "local", prefix="20")] == [
        LONDON,
        "+442079460151",
    ]
    assert [o.e164 for o in await org.numbers.search("GB", "local", prefix="0161")] == [
        "+441614960150"
    ]
    assert [o.e164 for o in await org.numbers.search("GB", "local", contains="0151")] == [
        "+442079460151"
    ]
    assert len(await org.numbers.search("GB", "local", limit=1)) == 1
    coverage = {(c.country, str(c.number_type)): c.available for c in await org.numbers.coverage()}
    assert coverage == {("GB", "local"): 3, ("GB", "toll_free"): 1, ("US", "local"): 1}


@pytest.mark.parametrize(
    ("country", "kind", "error", "message"),
    [
        ("ZZ", "local", InvalidInput, "unknown country 'ZZ'"),
        ("GB", "premium", InvalidInput, "unknown number type 'premium'"),
        ("IT", "local", NotFound, "no numbers in IT; it covers GB, US"),
        ("GB", "mobile", NotFound, "no mobile numbers in GB; it offers local, toll_free"),
    ],
)
async def test_search_refuses_what_the_catalogue_cannot_answer(
    org: Org, country: str, kind: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await org.numbers.search(country, kind)


async def test_search_refuses_bad_digits_and_limits(org: Org) -> None:
    with pytest.raises(InvalidInput, match="digits"):
        await org.numbers.search("GB", "local", contains="79x")
    with pytest.raises(InvalidInput, match="limit"):
        await org.numbers.search("GB", "local", limit=0)


def test_catalogue_file_reports_every_error_with_its_line() -> None:
    text = (
        "number,type,setup_price,monthly_price\n"
        "+442079460150,toll_free,1,2\n"  # a London number is not toll-free
        "+99123,local,1,2\n"
        "+442079460151,premium,1,-2\n"
        "+442079460152,local,1,2\n"
        "+44 20 7946 0152,local,1,2\n"
    )
    with pytest.raises(CatalogueFileError) as caught:
        parse_catalogue(text, name="c.csv")
    errors = caught.value.errors
    assert errors[0].startswith("c.csv:2: type: +442079460150 is a local number in GB")
    assert errors[1].startswith("c.csv:3: number:")
    assert any(e.startswith("c.csv:4: type:") for e in errors)
    assert any(e.startswith("c.csv:4: monthly_price:") for e in errors)
    assert errors[-1] == "c.csv:6: number: +442079460152 is already on line 5"


def test_the_example_catalogue_is_valid_and_covers_several_countries_and_types() -> None:
    path = REPO / "catalogue" / "example_catalogue.csv"
    offers = parse_catalogue(path.read_text(), name=str(path))
    kinds = {(o.country, str(o.number_type)) for o in offers}
    assert {c for c, _ in kinds} >= {"GB", "US", "DE", "FR", "AU"}
    assert {t for _, t in kinds} == {"local", "national", "mobile", "toll_free"}


# ---- buying ------------------------------------------------------------------------------


async def test_buy_charges_setup_and_first_month_once_and_needs_routing(org: Org) -> None:
    await credit(org, 10, "c1")
    bought = await org.numbers.buy("+44 20 7946 0150")
    assert bought.number.e164 == LONDON and bought.number.needs_routing
    assert bought.paid_until == START + timedelta(seconds=PERIOD)
    assert await fees(org) == [("number_purchase", -3 * MICRO, f"number:{LONDON}:g1:buy")]
    assert (await org.wallet.balance()).balance == 7 * MICRO
    with pytest.raises(Conflict, match="already one of the organisation's numbers"):
        await org.numbers.buy(LONDON)
    assert LONDON not in [o.e164 for o in await org.numbers.search("GB", "local")]
    assert await org.wallet.audit() == []


async def test_buy_refuses_unknown_and_taken_numbers(org: Org) -> None:
    await credit(org, 10, "c1")
    with pytest.raises(NotFound, match="not in the catalogue"):
        await org.numbers.buy("+442079469999")
    await org.numbers.buy(LONDON)
    async with org.db.session() as session:  # as if another organisation had bought it
        from sqlalchemy import text

        await session.execute(text("DELETE FROM numbers WHERE e164 = :n"), {"n": LONDON})
    with pytest.raises(Conflict, match="already taken"):
        await org.numbers.buy(LONDON)


async def test_buy_without_credits_reserves_and_charges_nothing(org: Org) -> None:
    await credit(org, 2, "c1")
    with pytest.raises(InsufficientCredits, match=r"costs 3\.000000 credits .* only 2\.000000"):
        await org.numbers.buy(LONDON)
    assert await fees(org) == []
    assert LONDON in [o.e164 for o in await org.numbers.search("GB", "local")]
    assert await org.directory.list_numbers() == []
    await credit(org, 1, "c2")
    await org.numbers.buy(LONDON)  # the number was not left reserved
    assert await org.wallet.audit() == []


async def test_two_purchases_of_one_number_sell_it_once(org: Org) -> None:
    await credit(org, 10, "c1")
    results = await asyncio.gather(
        org.numbers.buy(LONDON), org.numbers.buy(LONDON), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert len(await fees(org)) == 1


# ---- assignment --------------------------------------------------------------------------


async def test_assign_first_number_is_the_default_and_a_new_default_replaces_it(
    org: Org,
) -> None:
    await credit(org, 10, "c1")
    await org.numbers.buy(LONDON)
    await org.numbers.buy("+442079460151")
    assert await org.directory.presented_number("alice") is None
    await org.numbers.assign(LONDON, "alice")
    number = await org.numbers.assign("+442079460151", "alice")
    assert number.assigned == (Assignment("alice", False),)
    assert await org.directory.presented_number("alice") == LONDON
    await org.numbers.assign("+442079460151", "alice", default=True)
    assert await org.directory.presented_number("alice") == "+442079460151"
    shared = await org.numbers.assign(LONDON, "bob")  # a number may be shared
    assert shared.assigned == (Assignment("bob", True), Assignment("alice", False))
    await org.numbers.unassign("+442079460151", "alice")
    assert await org.directory.presented_number("alice") == LONDON  # promoted
    with pytest.raises(NotFound, match="not assigned to alice"):
        await org.numbers.unassign("+442079460151", "alice")


async def test_assign_refuses_numbers_the_organisation_does_not_own(org: Org) -> None:
    with pytest.raises(NotFound, match="not one of the organisation's numbers: buy it first"):
        await org.numbers.assign(LONDON, "alice")
    await credit(org, 10, "c1")
    await org.numbers.buy(LONDON)
    with pytest.raises(NotFound, match="no user named 'zed'"):
        await org.numbers.assign(LONDON, "zed")


async def test_assignment_is_independent_of_routing(org: Org) -> None:
    await credit(org, 10, "c1")
    await org.numbers.buy(LONDON)
    await org.directory.route_to_flow(LONDON, "main")  # no flow catalogue in this test
    number = await org.numbers.assign(LONDON, "alice")
    assert number.route is not None and number.route.flow_name == "main"
    assert await org.directory.presented_number("alice") == LONDON


# ---- release -----------------------------------------------------------------------------


async def test_release_names_the_flow_then_removes_routing_and_assignments(org: Org) -> None:
    await credit(org, 10, "c1")
    await org.numbers.buy(LONDON)
    await org.directory.route_to_flow(LONDON, "main")
    await org.numbers.assign(LONDON, "alice")
    with pytest.raises(Conflict, match=r"runs the IVR flow 'main'.*--force"):
        await org.numbers.release(LONDON)
    done = await org.numbers.release(LONDON, force=True)
    assert (done.route, done.users, done.to_catalogue) == ("flow main", ["alice"], True)
    assert await org.directory.list_numbers() == []
    assert await org.directory.presented_number("alice") is None
    with pytest.raises(NotFound):
        await org.numbers.release(LONDON)


async def test_a_released_number_ages_then_sells_again_with_new_fee_keys(org: Org) -> None:
    await credit(org, 20, "c1")
    await org.numbers.buy(LONDON)
    await org.numbers.release(LONDON)
    with pytest.raises(Conflict, match="ageing until"):
        await org.numbers.buy(LONDON)
    assert LONDON not in [o.e164 for o in await org.numbers.search("GB", "local")]
    org.clock.advance(POLICY.ageing)
    await org.numbers.buy(LONDON)
    assert [key for _, _, key in await fees(org)] == [
        f"number:{LONDON}:g1:buy",
        f"number:{LONDON}:g2:buy",
    ]
    assert await org.wallet.audit() == []


async def test_an_operators_number_is_released_outside_the_catalogue(org: Org) -> None:
    await org.directory.add_number("+442079460000")
    await org.numbers.assign("+442079460000", "alice")
    done = await org.numbers.release("+442079460000")
    assert (done.users, done.to_catalogue) == (["alice"], False)


async def test_remove_refuses_a_bought_number(org: Org) -> None:
    await credit(org, 10, "c1")
    await org.numbers.buy(LONDON)
    with pytest.raises(Conflict, match="bought from the catalogue: release it"):
        await org.directory.remove_number(LONDON)


# ---- rent --------------------------------------------------------------------------------


async def test_rent_is_charged_once_per_period_and_catches_up(org: Org) -> None:
    await credit(org, 20, "c1")
    await org.numbers.buy(LONDON)
    assert await org.renewals.renew_due() == []
    org.clock.advance(PERIOD)
    done = await org.renewals.renew_due()
    assert [r.action for r in done] == [RenewalAction.RENEWED]
    assert await org.renewals.renew_due() == []
    org.clock.advance(3 * PERIOD)  # downtime: three periods due
    assert len(await org.renewals.renew_due()) == 3
    keys = [key for kind, _, key in await fees(org) if kind == "number_rental"]
    stamps = [START + timedelta(seconds=PERIOD * k) for k in range(1, 5)]
    assert keys == [f"number:{LONDON}:g1:rent:{s:%Y%m%dT%H%M%SZ}" for s in stamps]
    (number,) = await org.directory.list_numbers()
    assert number.paid_until == START + timedelta(seconds=5 * PERIOD)
    assert (await org.wallet.balance()).balance == (20 - 3 - 4 * 2) * MICRO
    assert await org.wallet.audit() == []


async def test_unpaid_rent_suspends_after_grace_a_top_up_lifts_it_later_release(
    org: Org,
) -> None:
    await credit(org, 3, "c1")
    await org.numbers.buy(LONDON)
    org.clock.advance(PERIOD)
    assert [r.action for r in await org.renewals.renew_due()] == [RenewalAction.UNPAID]
    assert await org.renewals.renew_due() == []  # nothing new: no second notice
    org.clock.advance(POLICY.grace)
    assert [r.action for r in await org.renewals.renew_due()] == [RenewalAction.SUSPENDED]
    (number,) = await org.directory.list_numbers()
    assert number.state is NumberState.SUSPENDED
    await credit(org, 2, "c2")
    assert [r.action for r in await org.renewals.renew_due()] == [RenewalAction.RENEWED]
    (number,) = await org.directory.list_numbers()
    assert number.state is NumberState.ACTIVE
    org.clock.advance(PERIOD)  # unpaid again, and this time nobody pays
    await org.renewals.renew_due()
    org.clock.advance(POLICY.grace)
    await org.renewals.renew_due()
    org.clock.advance(POLICY.release_after)
    assert [r.action for r in await org.renewals.renew_due()] == [RenewalAction.RELEASED]
    assert await org.directory.list_numbers() == []
    assert await org.wallet.audit() == []


async def test_a_suspended_number_is_not_presented(org: Org) -> None:
    await credit(org, 3, "c1")
    await org.numbers.buy(LONDON)
    await org.numbers.assign(LONDON, "alice")
    org.clock.advance(PERIOD + POLICY.grace)
    await org.renewals.renew_due()
    assert await org.directory.presented_number("alice") is None


async def test_two_processes_renew_a_number_once(database_url: str) -> None:
    """Two services, each on its own engine and pool (as two app processes), race on
    the same due periods: every period is charged once."""
    clock = Clock()
    first, second = Database.from_url(database_url), Database.from_url(database_url)
    try:
        a, b = org_on(first, clock, POLICY), org_on(second, clock, POLICY)
        await a.inventory.import_offers(parse_catalogue(CATALOGUE, name="t.csv"))
        await credit(a, 50, "c1")
        await a.numbers.buy(LONDON)
        await a.numbers.buy("+442079460151")
        clock.advance(3 * PERIOD)
        done_a, done_b = await asyncio.gather(a.renewals.renew_due(), b.renewals.renew_due())
        assert len(done_a) + len(done_b) == 6
        rents = [key for kind, _, key in await fees(a) if kind == "number_rental"]
        assert len(rents) == len(set(rents)) == 6
        assert (await a.wallet.balance()).balance == (50 - 6 - 6 * 2) * MICRO
        assert await a.wallet.audit() == []
    finally:
        await first.dispose()
        await second.dispose()


def _months(clock_start: datetime) -> Callable[[int], datetime]:
    from callcontrol.domain.rental import next_paid_until

    policy = RentalPolicy()

    def nth(n: int) -> datetime:
        paid = clock_start
        for _ in range(n):
            paid = next_paid_until(clock_start, paid, policy)
        return paid

    return nth


def test_calendar_months_renew_on_the_anniversary() -> None:
    nth = _months(datetime(2027, 1, 31, 9, 30, tzinfo=UTC))
    assert [nth(n).date().isoformat() for n in (1, 2, 3, 13)] == [
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
        "2028-02-29",
    ]


async def test_migration_assigns_numbers_routed_to_users_lowest_as_default(
    database_url: str,
) -> None:
    """0006 keeps what users presented: each number routed to a user is assigned to them,
    the lowest (the old rule's choice) as their default."""
    from sqlalchemy import text

    from callcontrol.store import migrate

    migrate.downgrade(database_url, "0004")
    db = Database.from_url(database_url)
    try:
        directory = DirectoryService(db, "callcontrol")
        await directory.add_user("alice", "1001", "correct horse battery")
        async with db.session() as session:
            for e164 in ("+442079460002", "+442079460001", "+442079460003"):
                await session.execute(
                    text(
                        "INSERT INTO numbers (e164, country, number_type, created_at) "
                        "VALUES (:n, 'GB', 'local', CURRENT_TIMESTAMP)"
                    ),
                    {"n": e164},
                )
            await session.execute(
                text(
                    "INSERT INTO routes (number_id, kind, user_id, updated_at) "
                    "SELECT n.id, 'user', u.id, CURRENT_TIMESTAMP FROM numbers n, users u "
                    "WHERE n.e164 IN ('+442079460002', '+442079460001')"
                )
            )
    finally:
        await db.dispose()
    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    try:
        numbers = {n.e164: n for n in await DirectoryService(db, "callcontrol").list_numbers()}
        assert numbers["+442079460001"].assigned == (Assignment("alice", True),)
        assert numbers["+442079460002"].assigned == (Assignment("alice", False),)
        assert numbers["+442079460003"].assigned == ()
        assert all(n.state is NumberState.ACTIVE and n.paid_until is None for n in numbers.values())
    finally:
        await db.dispose()


async def test_rent_notices_reach_the_admins_notification_webhook_once(database: Database) -> None:
    """Unpaid rent and the suspension are queued for the signed notification webhook
    (billing/notifications.py), once each, however many scheduler runs see them."""
    clock = Clock()
    o = org_on(database, clock, POLICY)
    notifier = Notifier(database, "http://127.0.0.1:9/hook", "s3cret")
    o.renewals = Renewals(
        database, o.wallet, o.numbers, POLICY, NotifierNotices(database, notifier), clock
    )
    await o.inventory.import_offers(parse_catalogue(CATALOGUE, name="test.csv"))
    await credit(o, 3, "c1")
    await o.numbers.buy(LONDON)
    clock.advance(PERIOD)
    await o.renewals.renew_due()
    await o.renewals.renew_due()  # a second run (or another process): no second notice
    clock.advance(POLICY.grace)
    await o.renewals.renew_due()
    async with database.session() as session:
        rows = (await session.execute(select(NotificationRow.kind, NotificationRow.body))).all()
    kinds = [kind for kind, _ in rows]
    assert kinds == ["number_unpaid", "number_suspended"]
    assert all(json.loads(body)["data"]["number"] == LONDON for _, body in rows)
