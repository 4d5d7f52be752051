"""``callcontrol users add|list|remove|set-password``: users and their SIP phones.

A change is pushed to Asterisk at once when it answers; otherwise the app applies
it when it connects (it re-checks every endpoint anyway).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.directory.service import EndpointUpdate
from callcontrol.domain.directory import User
from callcontrol.domain.text import printable
from callcontrol.errors import InvalidInput
from callcontrol.numbers.service import UserNumber
from callcontrol.services import Services

__all__ = ["register"]


def _password(args: argparse.Namespace) -> str:
    if args.password == "-":
        return sys.stdin.readline().rstrip("\n")
    if args.password == "":
        raise InvalidInput(
            "--password is empty: give the password, or --password - to read it from standard input"
        )
    if args.password is not None:
        return str(args.password)
    if not sys.stdin.isatty():
        raise InvalidInput("give --password PW, or --password - to read it from standard input")
    first = getpass.getpass("SIP password: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the passwords differ")
    return first


def _print_update(update: EndpointUpdate | None) -> None:
    if update is None:  # no ARI password: nothing to tell Asterisk from here
        return
    if update.applied:
        state = "removed" if update.removed else "ready"
        print(f"Asterisk updated: endpoint {update.extension} {state}")
    else:
        print(
            f"note: Asterisk not updated now ({update.error}); the app applies it when it connects"
        )


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)

    async def go(services: Services) -> None:
        user = await services.directory.add_user(args.name, args.extension, password)
        print(
            f"added user {user.name}, extension {user.extension} "
            f"(SIP user {user.extension}, realm {user.realm})"
        )
        _print_update(await services.directory.apply_endpoint(user))

    with_services(settings, go)
    return 0


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> tuple[list[User], dict[str, list[UserNumber]]]:
        return await services.directory.list_users(), await services.numbers.numbers_of_users()

    users, numbers = with_services(settings, go)
    if not users:
        print("no users")
    for user in users:
        owned = [
            f"{n.e164}{' (default)' if n.default else ''}{'' if n.active else ' (suspended)'}"
            for n in numbers.get(user.name, [])
        ]
        shown = ", ".join(owned) or "none (cannot call out)"
        print(printable(f"{user.name:<20} extension {user.extension}  numbers: {shown}"))
    return 0


def cmd_users_remove(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> None:
        user = await services.directory.get_user(args.name)
        flows = await services.directory.remove_user(args.name, force=args.force)
        print(f"removed user {user.name}")
        if flows:
            print(
                f"note: the flow(s) {', '.join(flows)} still ring {user.name}: they fail "
                "validation until edited (callcontrol ivr validate)"
            )
        _print_update(await services.directory.apply_endpoint(user, removed=True))

    with_services(settings, go)
    return 0


def cmd_users_set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)

    async def go(services: Services) -> None:
        user = await services.directory.set_password(args.name, password)
        print(f"password of {user.name} changed")
        _print_update(await services.directory.apply_endpoint(user))

    with_services(settings, go)
    return 0


def register(sub: Any, add: AddCommand) -> None:
    users = sub.add_parser("users", help="users and their SIP phones").add_subparsers(required=True)
    p = add(users, "add", cmd_users_add, "add a user with a SIP endpoint")
    p.add_argument("name")
    p.add_argument("--extension", required=True, help="2-6 digits; also the SIP user name")
    p.add_argument("--password", help="SIP password (- reads it from standard input)")
    add(users, "list", cmd_users_list, "list users")
    p = add(users, "remove", cmd_users_remove, "remove a user and their SIP endpoint")
    p.add_argument("name")
    p.add_argument(
        "--force",
        action="store_true",
        help="also remove numbers' routes to them, even if IVR flows ring them",
    )
    p = add(users, "set-password", cmd_users_set_password, "change a user's SIP password")
    p.add_argument("name")
    p.add_argument("--password", help="SIP password (- reads it from standard input)")
