"""``callcontrol numbers add|list|remove|route``: the organisation's numbers and their routing."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.directory import Number
from callcontrol.domain.text import printable
from callcontrol.services import Services

__all__ = ["register"]


def _route_text(number: Number) -> str:
    route = number.route
    if route is None:
        return "no routing (refuses calls)"
    if route.kind == "user":
        return f"rings user {printable(route.user_name or '')}"
    return f"runs flow {printable(route.flow_name or '')}"


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
        print(f"{n.e164:<18} {n.country:<3} {n.number_type!s:<10} {_route_text(n)}")
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


def register(sub: Any, add: AddCommand) -> None:
    numbers = sub.add_parser("numbers", help="the organisation's numbers").add_subparsers(
        required=True
    )
    p = add(numbers, "add", cmd_numbers_add, "add a number the organisation holds")
    p.add_argument("number", help="E.164, e.g. +442079460000")
    p.add_argument(
        "--type",
        choices=["local", "national", "mobile", "toll_free"],
        help="number type (inferred when omitted)",
    )
    add(numbers, "list", cmd_numbers_list, "list numbers and their routing")
    p = add(numbers, "remove", cmd_numbers_remove, "remove a number")
    p.add_argument("number")
    p = add(numbers, "route", cmd_numbers_route, "set or remove a number's incoming routing")
    p.add_argument("number")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="ring this user")
    target.add_argument(
        "--flow", help="run this IVR flow (it must exist in flows_dir and validate)"
    )
    target.add_argument("--none", action="store_true", help="no routing: refuse calls")
