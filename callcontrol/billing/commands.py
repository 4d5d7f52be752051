"""The ``rates`` and ``credits`` commands (registered into cli.py's parser).

    callcontrol rates import FILE             validate, then make it the rate table in force
    callcontrol rates list                    the rates in force
    callcontrol rates quote NUMBER --direction in|out
    callcontrol credits balance               balance, held, available
    callcontrol credits ledger [--limit N]    newest entries first
    callcontrol credits adjust AMOUNT --reason TEXT   a correction (either sign)
    callcontrol credits audit                 exit 1 and list the problems unless clean

Amounts are printed with ``format_credits`` (6 decimals). Errors are project
errors; cli.py prints them as ``error: <message>``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callcontrol.billing.service import ChargingService
from callcontrol.config import Settings
from callcontrol.domain.charging import authorize
from callcontrol.domain.money import format_credits, parse_credits
from callcontrol.domain.rating import Direction, Rate, call_cost
from callcontrol.store.db import Database

__all__ = ["register"]

T = TypeVar("T")
AddCommand = Callable[[Any, str, Callable[..., int], str], argparse.ArgumentParser]


def _run(settings: Settings, work: Callable[[ChargingService], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database.from_url(settings.effective_database_url)
        try:
            return await work(ChargingService(db))
        finally:
            await db.dispose()

    return asyncio.run(main())


def _rate_line(rate: Rate) -> str:
    price, fee = format_credits(rate.price_per_minute), format_credits(rate.connection_fee)
    return (
        f"{rate.direction!s:<8} {rate.location:<10} {rate.number_type or '*':<9} "
        f"{price:>12}/min  fee {fee}  {rate.increments:<7} {rate.description}"
    )


def cmd_rates_import(settings: Settings, args: argparse.Namespace) -> int:
    rate_set = _run(settings, lambda service: service.import_rates(args.file))
    print(
        f"imported {rate_set.rate_count} rates from {rate_set.source} "
        f"(rate set {rate_set.id}, sha256 {rate_set.sha256[:12]}); they apply to new calls"
    )
    return 0


def cmd_rates_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(service: ChargingService) -> int:
        rate_set = await service.current_rate_set()
        rates = await service.load_rates()
        if rate_set is None:
            print("no rates: every charged call is refused (callcontrol rates import FILE)")
            return 0
        print(f"rate set {rate_set.id}: {rate_set.source}, imported {rate_set.imported_at:%c}")
        for rate in rates:
            print(_rate_line(rate))
        return 0

    return _run(settings, work)


def cmd_rates_quote(settings: Settings, args: argparse.Namespace) -> int:
    direction = Direction.INBOUND if args.direction in {"in", "inbound"} else Direction.OUTBOUND
    quote = _run(settings, lambda service: service.quote(args.number, direction))
    rate = quote.rate
    print(f"{quote.e164} {quote.direction}: {quote.country} {quote.number_type}")
    print(f"rate #{rate.id}: {_rate_line(rate)}")
    print(f"to start a call: {format_credits(authorize(rate, 0).required)} credits")
    for seconds in (30, 60, 300):
        print(f"  {seconds:>4} s costs {format_credits(call_cost(rate, seconds))}")
    return 0


def cmd_credits_balance(settings: Settings, args: argparse.Namespace) -> int:
    state = _run(settings, lambda service: service.wallet.balance())
    print(f"balance   {format_credits(state.balance):>20}")
    print(f"held      {format_credits(state.held):>20}")
    print(f"available {format_credits(state.available):>20}")
    return 0


def cmd_credits_ledger(settings: Settings, args: argparse.Namespace) -> int:
    entries = _run(settings, lambda service: service.wallet.ledger(args.limit))
    if not entries:
        print("no ledger entries")
    for entry in entries:
        print(
            f"#{entry.id:<6} {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.kind!s:<15} "
            f"{format_credits(entry.amount):>16} -> {format_credits(entry.balance_after):>16}  "
            f"{entry.reference or '-'}  {entry.description}"
        )
    return 0


def cmd_credits_adjust(settings: Settings, args: argparse.Namespace) -> int:
    amount = parse_credits(args.amount, allow_negative=True)
    entry = _run(settings, lambda service: service.wallet.adjust(amount, args.reason))
    print(
        f"adjusted by {format_credits(entry.amount)} (entry #{entry.id}); "
        f"balance {format_credits(entry.balance_after)}"
    )
    return 0


def cmd_credits_audit(settings: Settings, args: argparse.Namespace) -> int:
    problems = _run(settings, lambda service: service.wallet.audit())
    if not problems:
        print("wallet audit: clean")
        return 0
    print(f"wallet audit: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def register(sub: Any, add: AddCommand) -> None:
    """Add ``rates`` and ``credits`` to the top parser's subparsers ``sub``."""
    rates = sub.add_parser("rates", help="the rate table").add_subparsers(required=True)
    p = add(rates, "import", cmd_rates_import, "import a rate file (CSV or YAML) as the rates")
    p.add_argument("file", help="e.g. rates/example_rates.csv")
    add(rates, "list", cmd_rates_list, "the rates in force")
    p = add(rates, "quote", cmd_rates_quote, "which rate prices a call, and what it costs")
    p.add_argument("number", help="E.164, e.g. +442079460000")
    p.add_argument("--direction", required=True, choices=["in", "out", "inbound", "outbound"])

    credits = sub.add_parser("credits", help="the wallet").add_subparsers(required=True)
    add(credits, "balance", cmd_credits_balance, "balance, held and available credits")
    p = add(credits, "ledger", cmd_credits_ledger, "the latest ledger entries")
    p.add_argument("--limit", type=int, default=20)
    p = add(credits, "adjust", cmd_credits_adjust, "correct the balance (recorded in the ledger)")
    p.add_argument("amount", help="credits, e.g. 10 or -2.5 (at most 6 decimals)")
    p.add_argument("--reason", required=True, help="why (kept in the ledger)")
    add(credits, "audit", cmd_credits_audit, "check every wallet invariant; exit 1 if broken")
