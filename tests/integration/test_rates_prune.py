"""Pruning old rate sets: what a call record or a live call refers to always stays."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from callcontrol.billing.service import ChargingService
from callcontrol.domain.call_records import CallDirection, Disposition
from callcontrol.domain.rating import RateSet
from callcontrol.errors import InvalidInput
from callcontrol.store.db import Database
from callcontrol.store.repositories import CallRecordRepository

HEADER = (
    "direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description\n"
)


async def import_sets(
    service: ChargingService, tmp_path: Path, count: int
) -> list[tuple[RateSet, int]]:
    """``count`` imports of a one-rate file: each set with its rate's id."""
    sets = []
    for i in range(1, count + 1):
        path = tmp_path / f"rates-{i}.csv"
        path.write_text(HEADER + f"outbound,,GB,,0.0{i},0,60/60,version {i}\n")
        rate_set = await service.import_rates(path)
        (rate,) = await service.load_rates()
        assert rate.id is not None
        sets.append((rate_set, rate.id))
    return sets


async def call(
    database: Database, call_id: str, started_at: datetime, rate_id: int | None, ended: bool
) -> None:
    async with database.session() as session:
        records = CallRecordRepository(session)
        await records.start(
            call_id=call_id,
            direction=CallDirection.OUTBOUND,
            caller="1001",
            callee="+442079460000",
            channel_id=f"ch-{call_id}",
            started_at=started_at,
        )
        if rate_id is not None:
            await records.set_charge(call_id, charge_state="settled", rate_id=rate_id)
        if ended:
            await records.finish(
                call_id,
                ended_at=started_at,
                disposition=Disposition.ANSWERED,
                hangup_cause=16,
                ended_by=None,
            )


async def test_prune_keeps_the_newest_and_what_call_records_name(
    database: Database, tmp_path: Path
) -> None:
    service = ChargingService(database)
    (one, one_rate), (two, two_rate), (three, _), (four, _) = await import_sets(
        service, tmp_path, 4
    )
    await call(database, "old", one.imported_at, one_rate, ended=True)

    pruned = await service.prune_rates(keep=1)
    assert [s.id for s in pruned] == [two.id, three.id]
    kept = await service.rate(one_rate)
    assert kept is not None and kept.description == "version 1"  # the record's price
    assert await service.rate(two_rate) is None
    current = await service.current_rate_set()
    assert current is not None and current.id == four.id
    assert await service.prune_rates(keep=1) == []


async def test_prune_keeps_every_set_a_live_call_may_use(
    database: Database, tmp_path: Path
) -> None:
    service = ChargingService(database)
    sets = await import_sets(service, tmp_path, 4)
    await call(database, "live", sets[1][0].imported_at, None, ended=False)  # set 2 in force
    pruned = await service.prune_rates(keep=1)
    assert [s.id for s in pruned] == [sets[0][0].id]


async def test_prune_keeps_at_least_the_rates_in_force(database: Database) -> None:
    with pytest.raises(InvalidInput, match="--keep must be at least 1"):
        await ChargingService(database).prune_rates(keep=0)
