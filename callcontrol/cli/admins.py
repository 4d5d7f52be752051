"""``callcontrol admins add|list|remove|set-password|token|revoke-tokens|audit``: console admins.

callcontrol admins add NAME --generate    a random password, printed once
callcontrol admins add NAME [--password -]  read it (standard input with -, else asked)
callcontrol admins token NAME             an API bearer token, printed once (kept hashed)
callcontrol admins audit [--limit N]      what admins changed, newest first
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.errors import InvalidInput

__all__ = ["register"]


def _password(args: argparse.Namespace) -> str:
    if args.password == "-":
        return sys.stdin.readline().rstrip("\n")
    if args.password:
        return str(args.password)
    if not sys.stdin.isatty():
        raise InvalidInput("give --generate, or --password - to read it from standard input")
    first = getpass.getpass("admin password: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the passwords differ")
    return first


def cmd_admins_add(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.admins.service import generate_password

    password = generate_password() if args.generate else _password(args)
    admin = with_services(settings, lambda s: s.admins.add(args.name, password))
    print(f"added admin {admin.name}")
    if args.generate:
        print(f"password (shown once): {password}")
    return 0


def cmd_admins_list(settings: Settings, args: argparse.Namespace) -> int:
    admins = with_services(settings, lambda s: s.admins.list())
    if not admins:
        print("no admins")
    for admin in admins:
        print(f"{admin.name:<20} since {admin.created_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_admins_remove(settings: Settings, args: argparse.Namespace) -> int:
    with_services(settings, lambda s: s.admins.remove(args.name))
    print(f"removed admin {args.name} (their sessions and API tokens end)")
    return 0


def cmd_admins_set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)
    with_services(settings, lambda s: s.admins.set_password(args.name, password))
    print(f"password of admin {args.name} changed (their console sessions end)")
    return 0


def cmd_admins_token(settings: Settings, args: argparse.Namespace) -> int:
    token = with_services(settings, lambda s: s.admins.issue_token(args.name))
    print(f"API token of {args.name} (shown once; send it as 'Authorization: Bearer TOKEN'):")
    print(token)
    return 0


def cmd_admins_revoke_tokens(settings: Settings, args: argparse.Namespace) -> int:
    count = with_services(settings, lambda s: s.admins.revoke_tokens(args.name))
    print(f"revoked {count} API token(s) of {args.name}")
    return 0


def cmd_admins_audit(settings: Settings, args: argparse.Namespace) -> int:
    entries = with_services(settings, lambda s: s.admins.audit_log(args.limit))
    if not entries:
        print("no admin actions recorded")
    for e in entries:
        print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.admin:<12} {e.action:<20} {e.target}  {e.details}")
    return 0


def register(sub: Any, add: AddCommand) -> None:
    admins = sub.add_parser("admins", help="console admins and API tokens").add_subparsers(
        required=True
    )
    p = add(admins, "add", cmd_admins_add, "add a console admin")
    p.add_argument("name")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--generate", action="store_true", help="generate a password, print it once")
    how.add_argument("--password", help="the password (- reads it from standard input)")
    add(admins, "list", cmd_admins_list, "list console admins")
    p = add(admins, "remove", cmd_admins_remove, "remove an admin, their sessions and tokens")
    p.add_argument("name")
    p = add(admins, "set-password", cmd_admins_set_password, "change an admin's password")
    p.add_argument("name")
    p.add_argument("--password", help="the password (- reads it from standard input)")
    p = add(admins, "token", cmd_admins_token, "issue an API bearer token (printed once)")
    p.add_argument("name")
    p = add(admins, "revoke-tokens", cmd_admins_revoke_tokens, "revoke an admin's API tokens")
    p.add_argument("name")
    p = add(admins, "audit", cmd_admins_audit, "what admins changed, newest first")
    p.add_argument("--limit", type=int, default=50)
