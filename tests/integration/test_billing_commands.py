"""The rates and credits commands, run in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callcontrol.cli import credits, rates
from callcontrol.config import Settings
from callcontrol.errors import CallControlError

REPO = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="callcontrol")
    sub = top.add_subparsers(dest="command", required=True)

    def add(group: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    rates.register(sub, add)
    credits.register(sub, add)
    return top


def run(url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = parser().parse_args(argv)
    code: int = args.fn(Settings(database_url=url), args)
    return code, capsys.readouterr().out


def test_rates_and_credits_from_the_command_line(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(database_url, capsys, "rates", "list")
    assert (code, "no rates") == (0, out[:8])
    code, out = run(database_url, capsys, "rates", "import", str(REPO / "rates/example_rates.csv"))
    assert code == 0 and "imported 32 rates" in out
    code, out = run(database_url, capsys, "rates", "list")
    assert "+49151" in out and "0.090000/min" in out
    code, out = run(database_url, capsys, "rates", "quote", "+447400123456", "--direction", "out")
    assert "GB mobile" in out and "to start a call: 0.040000 credits" in out  # 0.01 + 30 s

    code, out = run(database_url, capsys, "credits", "adjust", "12.5", "--reason", "opening")
    assert code == 0 and "balance 12.500000" in out
    code, out = run(database_url, capsys, "credits", "adjust", "-2.5", "--reason", "typo")
    assert "adjusted by -2.500000" in out
    code, out = run(database_url, capsys, "credits", "balance")
    assert "available            10.000000" in out
    code, out = run(database_url, capsys, "credits", "ledger", "--limit", "1")
    assert "adjustment" in out and "typo" in out and "opening" not in out
    code, out = run(database_url, capsys, "credits", "audit")
    clean, head = out.strip().splitlines()
    assert (code, clean) == (0, "wallet audit: clean")
    assert re.fullmatch(r"chain head: \d+:[0-9a-f]{64}", head)
    # The head kept outside the database is a later audit's anchor.
    code, out = run(database_url, capsys, "credits", "audit", "--anchor", head.split(": ")[1])
    assert code == 0 and "anchor" in out and "holds" in out
    forged = head.split(": ")[1][:-1] + ("0" if head[-1] != "0" else "1")
    code, out = run(database_url, capsys, "credits", "audit", "--anchor", forged)
    assert code == 1 and "anchor" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("credits", "adjust", "1.0000001", "--reason", "x"), "too many decimal places"),
        (("credits", "adjust", "5000000", "--reason", "x"), "too large"),
        (("credits", "adjust", "-1", "--reason", "x"), "only 0.000000 available"),
        (("credits", "adjust", "1", "--reason", " "), "needs a reason"),
        (("credits", "ledger", "--limit", "0"), "limit"),
        (("rates", "quote", "+4420", "--direction", "in"), "not a valid number"),
        (("rates", "quote", "+442079460000", "--direction", "in"), "no inbound rate"),
        (("rates", "import", "/nonexistent.csv"), "cannot read"),
    ],
)
def test_bad_input_is_a_clear_error(
    database_url: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CallControlError, match=message):
        run(database_url, capsys, *argv)


def test_the_audit_exits_1_and_lists_problems(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from sqlalchemy import text

    from callcontrol.store.db import Database

    async def break_it() -> None:
        db = Database.from_url(database_url)
        try:
            async with db.session() as session:
                await session.execute(text("UPDATE wallets SET balance_micro = 5"))
        finally:
            await db.dispose()

    asyncio.run(break_it())
    code, out = run(database_url, capsys, "credits", "audit")
    assert code == 1
    assert "wallet audit: 1 problem(s)" in out
    assert "- balance 0.000005 != sum of the ledger 0.000000" in out
