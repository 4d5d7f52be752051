"""``callcontrol credits balance|ledger|adjust|audit``: the wallet.

    callcontrol credits balance               balance, held, available
    callcontrol credits ledger [--limit N]    newest entries first
    callcontrol credits adjust AMOUNT --reason TEXT   a correction (either sign)
    callcontrol credits audit [--anchor ID:HASH]  exit 1 and list the problems unless clean;
                                              clean: prints the ledger's chain head
    callcontrol credits buy | auto-recharge   funding (cli/funding.py)

Amounts are printed with ``format_credits`` (6 decimals).
"""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli import funding
from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.money import ChainHead, format_credits, parse_credits
from callcontrol.domain.text import printable
from callcontrol.services import Services

__all__ = ["register"]


def cmd_credits_balance(settings: Settings, args: argparse.Namespace) -> int:
    state = with_services(settings, lambda s: s.charging.wallet.balance())
    print(f"balance   {format_credits(state.balance):>20}")
    print(f"held      {format_credits(state.held):>20}")
    print(f"available {format_credits(state.available):>20}")
    funding.print_funding(settings)
    return 0


def cmd_credits_ledger(settings: Settings, args: argparse.Namespace) -> int:
    entries = with_services(settings, lambda s: s.charging.wallet.ledger(args.limit))
    if not entries:
        print("no ledger entries")
    for entry in entries:
        print(
            f"#{entry.id:<6} {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.kind!s:<15} "
            f"{format_credits(entry.amount):>16} -> {format_credits(entry.balance_after):>16}  "
            f"{printable(entry.reference or '-')}  {printable(entry.description)}"
        )
    return 0


def cmd_credits_adjust(settings: Settings, args: argparse.Namespace) -> int:
    amount = parse_credits(args.amount, allow_negative=True)
    entry = with_services(settings, lambda s: s.charging.wallet.adjust(amount, args.reason))
    print(
        f"adjusted by {format_credits(entry.amount)} (entry #{entry.id}); "
        f"balance {format_credits(entry.balance_after)}"
    )
    return 0


def cmd_credits_audit(settings: Settings, args: argparse.Namespace) -> int:
    anchor = None if args.anchor is None else ChainHead.parse(args.anchor)

    async def audit(services: Services) -> tuple[list[str], ChainHead]:
        wallet = services.charging.wallet
        return await wallet.audit(anchor=anchor), await wallet.chain_head()

    problems, head = with_services(settings, audit)
    if not problems:
        print("wallet audit: clean" + ("" if anchor is None else f" (anchor {anchor} holds)"))
        # Kept outside the database, the head is what a later `--anchor` checks against:
        # the one forgery a hash chain cannot see alone is a rewrite of the whole chain.
        print(f"chain head: {head}")
        return 0
    print(f"wallet audit: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  - {printable(problem)}")
    return 1


def register(sub: Any, add: AddCommand) -> None:
    credits = sub.add_parser("credits", help="the wallet").add_subparsers(required=True)
    add(credits, "balance", cmd_credits_balance, "balance, held and available credits")
    p = add(credits, "ledger", cmd_credits_ledger, "the latest ledger entries")
    p.add_argument("--limit", type=int, default=20)
    p = add(credits, "adjust", cmd_credits_adjust, "correct the balance (recorded in the ledger)")
    p.add_argument("amount", help="credits, e.g. 10 or -2.5 (at most 6 decimals)")
    p.add_argument("--reason", required=True, help="why (kept in the ledger)")
    p = add(credits, "audit", cmd_credits_audit, "check every wallet invariant; exit 1 if broken")
    p.add_argument(
        "--anchor",
        metavar="ID:HASH",
        help="a chain head printed by an earlier audit: check it is still in the ledger",
    )
    funding.register(credits, add)
