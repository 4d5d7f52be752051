"""The charging service: importing rate files, quoting calls, versions of the rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.billing.errors import NoRate, RatesFileError
from callcontrol.billing.service import ChargingService
from callcontrol.domain.money import parse_credits
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction
from callcontrol.errors import InvalidInput
from callcontrol.store.db import Database

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "rates" / "example_rates.csv"
HEADER = (
    "direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description\n"
)


async def test_no_rates_means_no_call_is_free(database: Database) -> None:
    service = ChargingService(database)
    assert await service.load_rates() == []
    with pytest.raises(NoRate, match=r"no outbound rate for \+442079460000 \(GB, local\)"):
        await service.quote("+442079460000", Direction.OUTBOUND)


async def test_the_example_rates_price_calls_by_place_type_and_direction(
    database: Database,
) -> None:
    service = ChargingService(database)
    rate_set = await service.import_rates(EXAMPLE)
    assert rate_set.rate_count == len(await service.load_rates()) > 20

    async def price(number: str, direction: Direction, **kw: NumberType) -> str:
        quote = await service.quote(number, direction, **kw)
        return f"{quote.rate.location} {quote.number_type} {quote.rate.price_per_minute}"

    assert await price("+442079460000", Direction.OUTBOUND) == "+4420 local 8000"
    assert await price("+441134960000", Direction.OUTBOUND) == "GB local 10000"
    assert await price("+447400123456", Direction.OUTBOUND) == "GB mobile 60000"
    assert await price("+4915112345678", Direction.OUTBOUND) == "+49151 mobile 90000"
    assert await price("+4917612345678", Direction.OUTBOUND) == "DE mobile 120000"
    # inbound toll-free costs more than inbound local
    assert await price("+448081570000", Direction.INBOUND) == "GB toll_free 25000"
    assert await price("+441134960000", Direction.INBOUND) == "GB local 2000"
    # the stored type of our number overrides phonenumbers' guess
    assert (
        await price("+441134960000", Direction.INBOUND, number_type=NumberType.NATIONAL)
        == "GB national 4000"
    )
    with pytest.raises(NoRate):
        await service.quote("+81312345678", Direction.OUTBOUND)  # Japan is not priced
    with pytest.raises(InvalidInput):
        await service.quote("12345", Direction.OUTBOUND)


async def test_a_bad_file_imports_nothing_and_the_old_rates_stay(
    database: Database, tmp_path: Path
) -> None:
    service = ChargingService(database)
    first = await service.import_rates(EXAMPLE)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "outbound,,GB,,0.5,0,60/60,ok\noutbound,,GB,,0.6,0,60/60,dup\n")
    with pytest.raises(RatesFileError, match=r"bad\.csv:3: duplicate rate outbound GB"):
        await service.import_rates(bad)
    assert (await service.current_rate_set()) == first
    fresh = ChargingService(database)
    assert len(await fresh.load_rates()) == first.rate_count


async def test_a_new_import_replaces_the_rates_but_old_rates_stay_readable(
    database: Database, tmp_path: Path
) -> None:
    service = ChargingService(database)
    await service.import_rates(EXAMPLE)
    old = (await service.quote("+441134960000", Direction.OUTBOUND)).rate
    new_file = tmp_path / "new.yaml"
    new_file.write_text(
        "- {direction: outbound, country: GB, price_per_minute: 0.02, increments: 1/1}\n"
    )
    other = ChargingService(database)  # another process, with the old rates cached
    await other.load_rates()
    rate_set = await service.import_rates(new_file)
    assert rate_set.rate_count == 1
    new = (await service.quote("+441134960000", Direction.OUTBOUND)).rate
    assert new.price_per_minute == parse_credits("0.02") and new.id != old.id
    # Its very next quote sees the import: no call is priced by a replaced table.
    assert (await other.quote("+441134960000", Direction.OUTBOUND)).rate == new
    assert old.id is not None and await service.rate(old.id) == old  # call records keep it


async def test_a_rate_by_id_comes_from_memory_when_it_is_in_force(database: Database) -> None:
    """An AGI call's settle reads its rate by id: one of the rates in force is served
    from the cache (rates never change once imported); any other from the database."""
    service = ChargingService(database)
    await service.import_rates(EXAMPLE)
    in_force = (await service.quote("+441134960000", Direction.OUTBOUND)).rate
    assert in_force.id is not None
    before = database.transactions
    assert await service.rate(in_force.id) is in_force
    assert database.transactions == before  # no database read
    other = ChargingService(database)  # nothing cached yet: read from the database
    assert await other.rate(in_force.id) == in_force
    assert database.transactions == before + 1
    assert await service.rate(10**9) is None
