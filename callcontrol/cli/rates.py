"""``callcontrol rates import|list|quote``: the rate table.

    callcontrol rates import FILE             validate, then make it the rate table in force
    callcontrol rates list                    the rates in force
    callcontrol rates quote NUMBER --direction in|out
    callcontrol rates prune [--keep N]        delete old rate sets nothing refers to

Every import adds a rate set (the newest is in force); old ones stay until pruned.
``prune`` keeps the newest N sets (default 3), every set with a rate a call record
was charged at, and every set in force since the oldest call still open started.

Amounts are printed with ``format_credits`` (6 decimals).
"""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.charging import authorize
from callcontrol.domain.money import format_credits
from callcontrol.domain.rating import Direction, Rate, call_cost
from callcontrol.domain.text import printable
from callcontrol.services import Services

__all__ = ["register"]


def _rate_line(rate: Rate) -> str:
    price, fee = format_credits(rate.price_per_minute), format_credits(rate.connection_fee)
    return (
        f"{rate.direction!s:<8} {rate.location:<10} {rate.number_type or '*':<9} "
        f"{price:>12}/min  fee {fee}  {rate.increments:<7} {printable(rate.description)}"
    )


def cmd_rates_import(settings: Settings, args: argparse.Namespace) -> int:
    rate_set = with_services(settings, lambda s: s.charging.import_rates(args.file))
    print(
        f"imported {rate_set.rate_count} rates from {printable(rate_set.source)} "
        f"(rate set {rate_set.id}, sha256 {rate_set.sha256[:12]}); they apply to new calls"
    )
    return 0


def cmd_rates_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        rate_set = await services.charging.current_rate_set()
        rates = await services.charging.load_rates()
        if rate_set is None:
            print("no rates: every charged call is refused (callcontrol rates import FILE)")
            return 0
        print(
            f"rate set {rate_set.id}: {printable(rate_set.source)}, "
            f"imported {rate_set.imported_at:%c}"
        )
        for rate in rates:
            print(_rate_line(rate))
        return 0

    return with_services(settings, work)


def cmd_rates_quote(settings: Settings, args: argparse.Namespace) -> int:
    direction = Direction.INBOUND if args.direction in {"in", "inbound"} else Direction.OUTBOUND
    quote = with_services(settings, lambda s: s.charging.quote(args.number, direction))
    rate = quote.rate
    print(f"{quote.e164} {quote.direction}: {quote.country} {quote.number_type}")
    print(f"rate #{rate.id}: {_rate_line(rate)}")
    print(f"to start a call: {format_credits(authorize(rate, 0).required)} credits")
    for seconds in (30, 60, 300):
        print(f"  {seconds:>4} s costs {format_credits(call_cost(rate, seconds))}")
    return 0


def cmd_rates_prune(settings: Settings, args: argparse.Namespace) -> int:
    pruned = with_services(settings, lambda s: s.charging.prune_rates(args.keep))
    if not pruned:
        print("no rate set to prune: each is recent, in force or named by a call")
    for rate_set in pruned:
        print(
            f"pruned rate set {rate_set.id} ({rate_set.rate_count} rates from "
            f"{printable(rate_set.source)}, imported {rate_set.imported_at:%c})"
        )
    return 0


def register(sub: Any, add: AddCommand) -> None:
    rates = sub.add_parser("rates", help="the rate table").add_subparsers(required=True)
    p = add(rates, "import", cmd_rates_import, "import a rate file (CSV or YAML) as the rates")
    p.add_argument("file", help="e.g. rates/example_rates.csv")
    add(rates, "list", cmd_rates_list, "the rates in force")
    p = add(rates, "quote", cmd_rates_quote, "which rate prices a call, and what it costs")
    p.add_argument("number", help="E.164, e.g. +442079460000")
    p.add_argument("--direction", required=True, choices=["in", "out", "inbound", "outbound"])
    p = add(rates, "prune", cmd_rates_prune, "delete old rate sets no call refers to")
    p.add_argument(
        "--keep", type=int, default=3, help="the newest rate sets to keep (default 3, at least 1)"
    )
