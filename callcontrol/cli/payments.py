"""``callcontrol payments methods ...``: the ways the organisation pays for credits.

    callcontrol payments methods list
    callcontrol payments methods add-test-card visa|declined|...   (offline provider only)
    callcontrol payments methods add-bank-transfer [--label TEXT]  (bank transfer / invoice)
    callcontrol payments methods remove ID
    callcontrol payments methods default ID
    callcontrol payments transfer-arrives PAYMENT   (offline provider: the bank pays a
                                                     pending purchase)

A card is kept as the provider's reference plus brand, last four digits and expiry; a
card number is never asked for, stored or printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.cli.funding import money
from callcontrol.config import Settings
from callcontrol.domain.funding import StoredMethod
from callcontrol.domain.money import format_credits
from callcontrol.payments.offline_cards import TEST_CARDS

__all__ = ["register"]


def _line(method: StoredMethod) -> str:
    mark = "*" if method.is_default else " "
    return f"{mark} #{method.id:<4} {method.describe()}  ({method.provider})"


def cmd_methods_list(settings: Settings, args: argparse.Namespace) -> int:
    methods = with_services(settings, lambda s: s.funding.methods())
    if not methods:
        print("no payment methods (add one: `callcontrol payments methods add-test-card visa`)")
    for method in methods:
        print(_line(method))
    return 0


def cmd_methods_add_test_card(settings: Settings, args: argparse.Namespace) -> int:
    method = with_services(settings, lambda s: s.funding.add_test_card(args.card))
    print(f"saved {_line(method).strip()}")
    return 0


def cmd_methods_add_bank_transfer(settings: Settings, args: argparse.Namespace) -> int:
    method = with_services(settings, lambda s: s.funding.add_bank_transfer(args.label))
    print(f"saved {_line(method).strip()}")
    return 0


def cmd_methods_remove(settings: Settings, args: argparse.Namespace) -> int:
    method = with_services(settings, lambda s: s.funding.remove_method(args.id))
    print(f"removed #{method.id} {method.describe()}")
    return 0


def cmd_methods_default(settings: Settings, args: argparse.Namespace) -> int:
    method = with_services(settings, lambda s: s.funding.set_default(args.id))
    print(f"default: {_line(method).strip()}")
    return 0


def cmd_transfer_arrives(settings: Settings, args: argparse.Namespace) -> int:
    attempt = with_services(settings, lambda s: s.funding.offline_transfer_arrives(args.payment))
    credits, paid = (
        format_credits(attempt.credits_micro),
        money(attempt.amount_minor, attempt.currency),
    )
    print(f"payment {attempt.id}: {attempt.state} ({credits} credits for {paid})")
    return 0 if attempt.state == "succeeded" else 1


def register(sub: Any, add: AddCommand) -> None:
    payments = sub.add_parser("payments", help="payment methods").add_subparsers(required=True)
    methods = payments.add_parser("methods", help="saved payment methods").add_subparsers(
        required=True
    )
    add(methods, "list", cmd_methods_list, "the saved payment methods (* marks the default)")
    names = ", ".join(card.name for card in TEST_CARDS if card.kind == "card")
    p = add(methods, "add-test-card", cmd_methods_add_test_card, "save an offline test card")
    p.add_argument("card", help=f"a test card's name ({names}) or its Stripe test number")
    p = add(
        methods,
        "add-bank-transfer",
        cmd_methods_add_bank_transfer,
        "record that the organisation pays by bank transfer / invoice",
    )
    p.add_argument("--label", default="", help="e.g. the invoice address or a reference")
    p = add(methods, "remove", cmd_methods_remove, "remove a saved method")
    p.add_argument("id", type=int)
    p = add(methods, "default", cmd_methods_default, "make a method the default one")
    p.add_argument("id", type=int)
    p = add(
        payments,
        "transfer-arrives",
        cmd_transfer_arrives,
        "offline provider: the bank transfer for a pending purchase arrives",
    )
    p.add_argument("payment", help="the payment (attempt) id `credits buy` printed")
