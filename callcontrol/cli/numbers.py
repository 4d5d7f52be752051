"""``callcontrol numbers ...``: the organisation's numbers, from the catalogue to release.

search --country GB --type local [--prefix 20] [--contains 7946] [--limit 20]
buy NUMBER                 setup fee + first month from the wallet; no routing yet
route NUMBER --user NAME | --flow NAME | --none
assign NUMBER --user NAME [--default], unassign NUMBER --user NAME
release NUMBER [--force]   routing and assignments removed; refuses calls at once
renew --due                charge the rent that is due now (serve does it by itself)
list, catalogue import FILE, catalogue coverage
add NUMBER, remove NUMBER  operators' tools: a number held outside any catalogue
                           (ported in, or from a carrier without an adapter): no
                           fees, no rent; `remove` refuses a bought number (release it)
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from typing import Any

from callcontrol.carrier.catalogue_file import load_catalogue_file
from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.directory import Number, NumberState
from callcontrol.domain.money import format_credits
from callcontrol.domain.text import printable
from callcontrol.numbers.rental import Renewal
from callcontrol.numbers.service import Purchase, Release
from callcontrol.services import Services

__all__ = ["register"]

TYPES = ["local", "national", "mobile", "toll_free"]


def _route_text(number: Number) -> str:
    route = number.route
    if route is None:
        return "no routing (refuses calls)"
    if route.kind == "user":
        return f"rings user {printable(route.user_name or '')}"
    return f"runs flow {printable(route.flow_name or '')}"


def _assigned_text(number: Number) -> str:
    if not number.assigned:
        return "assigned to nobody"
    names = [f"{a.user_name}{' (default)' if a.default else ''}" for a in number.assigned]
    return "assigned to " + printable(", ".join(names))


def _rent_text(number: Number) -> str:
    if number.paid_until is None:
        return "no rent"
    state = "SUSPENDED (rent unpaid), " if number.state is NumberState.SUSPENDED else ""
    return (
        f"{state}{format_credits(number.monthly)}/month, paid until "
        f"{number.paid_until:%Y-%m-%d %H:%M} UTC"
    )


def cmd_numbers_add(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> Number:
        return await services.directory.add_number(args.number, args.type)

    number = with_services(settings, go)
    print(f"added {number.e164} ({number.country}, {number.number_type}); {_route_text(number)}")
    return 0


def cmd_numbers_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> list[Number]:
        return await services.directory.list_numbers()

    numbers = with_services(settings, go)
    if not numbers:
        print("no numbers")
    for n in numbers:
        routing = "needs routing: no routing (refuses calls)" if n.needs_routing else _route_text(n)
        print(
            f"{n.e164:<18} {n.country:<3} {n.number_type!s:<10} {_assigned_text(n)}; "
            f"{_rent_text(n)}; {routing}"
        )
    return 0


def cmd_numbers_remove(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> None:
        await services.directory.remove_number(args.number)

    with_services(settings, go)
    print(f"removed {args.number}")
    return 0


def cmd_numbers_route(settings: Settings, args: argparse.Namespace) -> int:
    def route(services: Services) -> Awaitable[Number]:
        directory = services.directory
        if args.user is not None:  # '' is a bad name, not "no routing": only --none clears
            return directory.route_to_user(args.number, args.user)
        if args.flow is not None:
            return directory.route_to_flow(args.number, args.flow)
        return directory.clear_route(args.number)

    number = with_services(settings, route)
    print(f"{number.e164}: {_route_text(number)}")
    return 0


def cmd_numbers_search(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> list[Any]:
        return await services.numbers.search(
            args.country, args.type, prefix=args.prefix, contains=args.contains, limit=args.limit
        )

    offers = with_services(settings, go)
    if not offers:
        print("no numbers match: try another area code or fewer digits")
    for offer in offers:
        print(
            f"{offer.e164:<18} {offer.country:<3} {offer.number_type!s:<10} "
            f"setup {format_credits(offer.setup)}  monthly {format_credits(offer.monthly)}"
        )
    return 0


def cmd_numbers_buy(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> Purchase:
        return await services.numbers.buy(args.number)

    bought = with_services(settings, go)
    offer = bought.offer
    print(
        f"bought {offer.e164} ({offer.country}, {offer.number_type}): charged "
        f"{format_credits(offer.setup + offer.monthly)} credits (setup "
        f"{format_credits(offer.setup)} + first month {format_credits(offer.monthly)}); "
        f"paid until {bought.paid_until:%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"it needs routing before it receives calls: callcontrol numbers route {offer.e164} "
        "--user NAME | --flow NAME"
    )
    return 0


def cmd_numbers_release(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> Release:
        return await services.numbers.release(args.number, force=args.force)

    done = with_services(settings, go)
    print(f"released {done.e164}: it refuses calls from now on")
    if done.route:
        print(
            f"routing removed (it rang {printable(done.route)})"
            if done.route.startswith("user")
            else f"routing removed (it ran {printable(done.route)})"
        )
    if done.users:
        print(f"unassigned from {printable(', '.join(done.users))}")
    if done.to_catalogue:
        print("the catalogue offers it again after its ageing period")
    return 0


def cmd_numbers_assign(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> Number:
        return await services.numbers.assign(args.number, args.user, default=args.default)

    number = with_services(settings, go)
    print(f"{number.e164}: {_assigned_text(number)}")
    return 0


def cmd_numbers_unassign(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> Number:
        return await services.numbers.unassign(args.number, args.user)

    number = with_services(settings, go)
    print(f"{number.e164}: {_assigned_text(number)}")
    return 0


def cmd_numbers_renew(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> list[Renewal]:
        return await services.renewals.renew_due()

    done = with_services(settings, go)
    if not done:
        print("no rent due")
    for renewal in done:
        print(f"{renewal.e164}: {renewal.action}: {printable(renewal.detail)}")
    return 0


def cmd_catalogue_import(settings: Settings, args: argparse.Namespace) -> int:
    offers = load_catalogue_file(args.file)

    async def go(services: Services) -> tuple[int, int]:
        return await services.inventory.import_offers(offers)

    added, updated = with_services(settings, go)
    print(f"imported {len(offers)} numbers: {added} new, {updated} re-priced")
    return 0


def cmd_catalogue_coverage(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> list[Any]:
        return await services.numbers.coverage()

    rows = with_services(settings, go)
    if not rows:
        print("the catalogue offers nothing: import one (callcontrol numbers catalogue import)")
    for c in rows:
        print(
            f"{c.country:<3} {c.number_type!s:<10} {c.available:>6} available, from setup "
            f"{format_credits(c.lowest_setup)}  monthly {format_credits(c.lowest_monthly)}"
        )
    return 0


def register(sub: Any, add: AddCommand) -> None:
    numbers = sub.add_parser("numbers", help="the organisation's numbers").add_subparsers(
        required=True
    )
    p = add(numbers, "search", cmd_numbers_search, "search the catalogue for numbers to buy")
    p.add_argument("--country", required=True, help="ISO 3166 code, e.g. GB")
    p.add_argument("--type", required=True, help=", ".join(TYPES))
    p.add_argument("--prefix", default="", help="area code (20) or E.164 prefix (+4420)")
    p.add_argument("--contains", default="", help="digits the number must contain")
    p.add_argument("--limit", type=int, default=20, help="at most this many (1-100)")
    p = add(numbers, "buy", cmd_numbers_buy, "buy a number: setup fee and first month")
    p.add_argument("number")
    p = add(numbers, "release", cmd_numbers_release, "give a number back: it refuses calls")
    p.add_argument("number")
    p.add_argument("--force", action="store_true", help="even if it runs an IVR flow")
    p = add(numbers, "assign", cmd_numbers_assign, "let a user present a number calling out")
    p.add_argument("number")
    p.add_argument("--user", required=True)
    p.add_argument("--default", action="store_true", help="make it the user's default")
    p = add(numbers, "unassign", cmd_numbers_unassign, "take a number from a user")
    p.add_argument("number")
    p.add_argument("--user", required=True)
    p = add(numbers, "renew", cmd_numbers_renew, "charge the numbers' rent that is due")
    p.add_argument("--due", action="store_true", required=True, help="every rent due now")
    add(numbers, "list", cmd_numbers_list, "list numbers, routing, assignments and rent")
    p = add(numbers, "route", cmd_numbers_route, "set or remove a number's incoming routing")
    p.add_argument("number")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="ring this user")
    target.add_argument(
        "--flow", help="run this IVR flow (it must exist in flows_dir and validate)"
    )
    target.add_argument("--none", action="store_true", help="no routing: refuse calls")
    catalogue = numbers.add_parser(
        "catalogue", help="the number inventory numbers are bought from"
    ).add_subparsers(required=True)
    p = add(catalogue, "import", cmd_catalogue_import, "import a catalogue file (CSV)")
    p.add_argument("file", help="number,type,setup_price,monthly_price per line")
    add(catalogue, "coverage", cmd_catalogue_coverage, "countries and types on offer")
    p = add(numbers, "add", cmd_numbers_add, "operators: add a number held outside the catalogue")
    p.add_argument("number", help="E.164, e.g. +442079460000")
    p.add_argument("--type", choices=TYPES, help="number type (inferred when omitted)")
    p = add(numbers, "remove", cmd_numbers_remove, "operators: remove a number added with add")
    p.add_argument("number")
