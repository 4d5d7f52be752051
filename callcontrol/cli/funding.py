"""``callcontrol credits buy|auto-recharge`` and the funding lines of ``credits balance``.

    callcontrol credits buy AMOUNT [--method ID]
    callcontrol credits auto-recharge --on --below 2 --amount 10 [--method ID] [--monthly-cap 200]
    callcontrol credits auto-recharge --off

Kept apart from ``cli/credits.py`` (the wallet's own commands), which registers these.
"""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.billing.funding import FundingStatus
from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.funding import Attempt
from callcontrol.domain.money import format_credits, parse_credits
from callcontrol.errors import InvalidInput

__all__ = ["auto_recharge_line", "money", "register"]


def money(minor: int, currency: str) -> str:
    """``1050, "eur"`` -> ``10.50 EUR`` (two decimals: the currencies credits are sold in)."""
    return f"{minor // 100}.{minor % 100:02d} {currency.upper()}"


def auto_recharge_line(status: FundingStatus) -> str:
    auto = status.auto_recharge
    if not auto.enabled:
        if auto.off_reason is None:
            return "auto-recharge: off"
        return (
            f"auto-recharge: off since {auto.changed_at:%Y-%m-%d %H:%M:%S} UTC: {auto.off_reason}"
        )
    method = status.method.describe() if status.method else "no card"
    line = (
        f"auto-recharge: on, below {format_credits(auto.threshold_micro)} -> "
        f"+{format_credits(auto.amount_micro)}, {method}"
    )
    if auto.monthly_cap_micro is not None:
        line += f", at most {format_credits(auto.monthly_cap_micro)} a month"
    if auto.in_flight:
        line += f"; recharge {auto.in_flight} under way"
    if auto.retry_at is not None:
        line += f"; next try after {auto.retry_at:%Y-%m-%d %H:%M:%S} UTC"
        if auto.failures:
            line += f" ({auto.failures} decline(s) in a row)"
    return line


def _outcome(attempt: Attempt) -> tuple[str, int]:
    paid = money(attempt.amount_minor, attempt.currency)
    credits = format_credits(attempt.credits_micro)
    what = f"payment {attempt.id}"
    if attempt.state == "succeeded":
        return f"bought {credits} credits for {paid} ({what})", 0
    if attempt.state == "pending":
        return (
            f"{what} pending: {credits} credits are credited when the bank transfer of "
            f"{paid} arrives",
            0,
        )
    if attempt.state == "needs_customer":
        return (
            f"{what}: the bank asks the card holder to confirm the payment (3-D Secure); "
            "nothing was credited",
            1,
        )
    if attempt.state == "failed":
        return (
            f"{what} declined: {attempt.decline_code} ({attempt.message}); nothing was credited",
            1,
        )
    return (
        f"{what}: no final answer from the provider ({attempt.message}); the running app "
        "asks again with the same idempotency key and credits it once if it was paid",
        1,
    )


def cmd_credits_buy(settings: Settings, args: argparse.Namespace) -> int:
    amount = parse_credits(args.amount)
    attempt = with_services(settings, lambda s: s.funding.buy(amount, args.method))
    line, code = _outcome(attempt)
    print(line)
    return code


def cmd_credits_auto_recharge(settings: Settings, args: argparse.Namespace) -> int:
    if args.off:
        status = with_services(settings, lambda s: s.funding.auto_recharge_off())
    else:
        if args.amount is None:
            raise InvalidInput("--on needs --amount (the credits each recharge buys)")
        threshold = parse_credits(args.below)
        amount = parse_credits(args.amount)
        cap = parse_credits(args.monthly_cap) if args.monthly_cap else None
        status = with_services(
            settings,
            lambda s: s.funding.auto_recharge_on(
                threshold_micro=threshold,
                amount_micro=amount,
                method_id=args.method,
                monthly_cap_micro=cap,
            ),
        )
    print(auto_recharge_line(status))
    return 0


def print_funding(settings: Settings) -> None:
    """The auto-recharge line under ``credits balance``."""
    status = with_services(settings, lambda s: s.funding.status())
    print(auto_recharge_line(status))


def register(credits: Any, add: AddCommand) -> None:
    """Add ``buy`` and ``auto-recharge`` to the ``credits`` group's subparsers."""
    p = add(credits, "buy", cmd_credits_buy, "buy credits with a saved payment method")
    p.add_argument("amount", help="credits to buy, e.g. 10")
    p.add_argument("--method", type=int, help="payment method id (default: the default one)")
    p = add(
        credits,
        "auto-recharge",
        cmd_credits_auto_recharge,
        "buy credits by card automatically when the available credits run low",
    )
    switch = p.add_mutually_exclusive_group(required=True)
    switch.add_argument("--on", action="store_true", help="turn it on (card only)")
    switch.add_argument("--off", action="store_true", help="turn it off")
    p.add_argument("--below", default="2", help="threshold of available credits (default 2)")
    p.add_argument("--amount", help="credits each recharge buys, e.g. 10")
    p.add_argument("--method", type=int, help="card id (default: the default method)")
    p.add_argument("--monthly-cap", help="most credits auto-recharge may buy in a month")
