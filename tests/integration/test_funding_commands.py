"""The funding commands, run in-process on SQLite and PostgreSQL: what an admin types and
reads back."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from callcontrol.cli import credits, payments
from callcontrol.config import Settings
from callcontrol.errors import ConfigError, InvalidInput


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="callcontrol")
    sub = top.add_subparsers(dest="command", required=True)

    def add(group: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    credits.register(sub, add)
    payments.register(sub, add)
    return top


def run(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = parser().parse_args(argv)
    code: int = args.fn(settings, args)
    return code, capsys.readouterr().out


def test_cards_purchases_and_auto_recharge_from_the_command_line(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=database_url)
    assert run(settings, capsys, "payments", "methods", "list")[1].startswith("no payment methods")
    code, out = run(settings, capsys, "payments", "methods", "add-test-card", "4242 4242 4242 4242")
    assert (code, out) == (0, "saved * #1    card visa ****4242 (12/2034)  (offline)\n")
    run(settings, capsys, "payments", "methods", "add-test-card", "declined")
    run(settings, capsys, "payments", "methods", "add-bank-transfer", "--label", "ACME invoices")
    code, out = run(settings, capsys, "credits", "buy", "12.5")
    assert code == 0 and out.startswith("bought 12.500000 credits for 12.50 EUR (payment ")
    code, out = run(settings, capsys, "credits", "buy", "5", "--method", "2")
    assert code == 1 and "declined: card_declined" in out and "nothing was credited" in out
    code, out = run(settings, capsys, "credits", "buy", "5", "--method", "3")
    assert code == 0 and "when the bank transfer of 5.00 EUR arrives" in out
    with pytest.raises(InvalidInput, match="card only"):
        run(settings, capsys, "credits", "auto-recharge", "--on", "--amount", "10", "--method", "3")
    code, out = run(
        settings,
        capsys,
        "credits",
        "auto-recharge",
        "--on",
        "--amount",
        "10",
        "--monthly-cap",
        "200",
    )
    assert out == (
        "auto-recharge: on, below 2.000000 -> +10.000000, card visa ****4242 (12/2034), "
        "at most 200.000000 a month\n"
    )
    code, out = run(settings, capsys, "credits", "balance")
    assert "balance              12.500000" in out and "auto-recharge: on, below 2" in out
    code, out = run(settings, capsys, "credits", "auto-recharge", "--off")
    assert out.startswith("auto-recharge: off since ") and "switched off by the admin" in out
    code, out = run(settings, capsys, "payments", "methods", "default", "2")
    assert out == "default: * #2    card visa ****0341 (12/2034)  (offline)\n"
    assert run(settings, capsys, "credits", "audit")[0] == 0


def test_stripe_without_keys_leaves_the_wallet_commands_working(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=database_url, payment_provider="stripe")
    code, out = run(settings, capsys, "credits", "balance")
    assert code == 0 and out.endswith("auto-recharge: off\n")
    with pytest.raises(ConfigError, match="Stripe API key"):
        run(settings, capsys, "credits", "buy", "10")
