"""Several PBXes on one database: each app sees its own PBX's open calls, and
``calls close-lost`` settles those of a PBX gone for good, once (SQLite, PostgreSQL)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callcontrol.billing.service import ChargingService
from callcontrol.billing.session import CallCharging, CallChargingSession
from callcontrol.calls.call import utcnow
from callcontrol.calls.records import CallStore
from callcontrol.cli import calls
from callcontrol.config import Settings
from callcontrol.domain.call_records import CallDirection, EndedBy
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.domain.rating import Direction
from callcontrol.errors import InvalidInput
from callcontrol.store.db import Database

RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,,6,0,1/1,0.1 a second
"""
NUMBER = "+442079460000"


class NoLimits:
    async def set_paid_time(self, seconds: float, channel_id: str | None = None) -> None:
        pass

    async def warn_low_credit(self, seconds: int) -> None:
        pass


async def _answered_call(db: Database, node: str | None, call_id: str) -> None:
    """A call of PBX ``node`` (None: written before records named their PBX), answered
    a second ago, its first block held."""
    store = CallStore(db, node)
    service = ChargingService(db)
    await store.start(
        call_id=call_id,
        direction=CallDirection.INBOUND,
        caller="+15551234567",
        callee=NUMBER,
        channel_id=f"chan-{call_id}",
        started_at=utcnow(),
    )
    session = await CallCharging(service, store).authorize(
        call_id, await service.quote(NUMBER, Direction.INBOUND), NoLimits()
    )
    assert isinstance(session, CallChargingSession)
    await store.mark_answered(call_id, utcnow())


async def _setup(url: str, tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    db = Database.from_url(url)
    try:
        service = ChargingService(db)
        await service.import_rates(rates)
        await service.wallet.credit(10 * MICRO, LedgerKind.PURCHASE, "t", "t:funds", "test")
        await _answered_call(db, "pbx-a", "call-a")
        await _answered_call(db, "pbx-b", "call-b")
        await _answered_call(db, None, "call-old")
    finally:
        await db.dispose()


async def _open_ids(url: str, node: str | None) -> list[str]:
    db = Database.from_url(url)
    try:
        return sorted(r.call_id for r in await CallStore(db, node).open_records())
    finally:
        await db.dispose()


def _run(url: str, *argv: str, node: str = "pbx-z") -> int:
    top = argparse.ArgumentParser(prog="callcontrol")
    sub = top.add_subparsers(dest="command", required=True)

    def add(group: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    calls.register(sub, add)
    args = top.parse_args(argv)
    code: int = args.fn(Settings(database_url=url, pbx_node=node), args)
    return code


def test_each_pbx_sees_its_own_open_calls_and_a_retired_one_is_closed_once(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_setup(database_url, tmp_path))
    assert asyncio.run(_open_ids(database_url, "pbx-a")) == ["call-a", "call-old"]
    assert asyncio.run(_open_ids(database_url, "pbx-b")) == ["call-b", "call-old"]
    assert asyncio.run(_open_ids(database_url, None)) == ["call-a", "call-b", "call-old"]

    with pytest.raises(InvalidInput, match="this host's own PBX node"):
        _run(database_url, "calls", "close-lost", "--pbx-node", "pbx-a", node="pbx-a")
    assert _run(database_url, "calls", "close-lost", "--pbx-node", "pbx-a") == 0
    out = capsys.readouterr().out
    assert "PBX node pbx-a: 1 calls in progress settled and closed" in out and "call-a" in out
    assert _run(database_url, "calls", "close-lost", "--pbx-node", "pbx-a") == 0  # again
    assert "PBX node pbx-a: 0 calls" in capsys.readouterr().out
    with pytest.raises(InvalidInput, match="--pbx-node 'two words'"):
        _run(database_url, "calls", "close-lost", "--pbx-node", "two words")
    assert asyncio.run(_open_ids(database_url, None)) == ["call-b", "call-old"]

    async def check() -> None:
        db = Database.from_url(database_url)
        try:
            store, wallet = CallStore(db), ChargingService(db).wallet
            closed = await store.get("call-a")
            assert closed is not None and closed.ended_by is EndedBy.PBX
            assert closed.charge_state == "settled" and closed.cost_micro is not None
            assert await wallet.charged_for("call-a") == closed.cost_micro
            assert await wallet.hold_of("call-a") == 0
            assert await wallet.hold_of("call-b") > 0  # the live PBX's call: untouched
            assert await wallet.audit() == []
        finally:
            await db.dispose()

    asyncio.run(check())
