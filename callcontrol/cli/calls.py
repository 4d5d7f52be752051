"""``callcontrol calls list``: the latest call records, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import format_credits
from callcontrol.domain.text import printable
from callcontrol.services import Services

__all__ = ["register"]


def _record_line(r: CallRecord) -> str:
    answered = r.answered_at.strftime("%H:%M:%S") if r.answered_at else "-"
    ended = r.ended_at.strftime("%H:%M:%S") if r.ended_at else "(in progress)"
    return printable(
        f"{r.started_at:%Y-%m-%d %H:%M:%S} {r.call_id[:12]} {r.direction!s:<8} "
        f"{r.caller} -> {r.callee} user={r.user_name or '-'} answered={answered} "
        f"ended={ended} {r.disposition or ''} by={r.ended_by or '-'}"
        + (
            f" billed={r.billable_seconds}s cost={format_credits(r.cost_micro)}"
            if r.cost_micro is not None
            else ""
        )
    )


def cmd_calls_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go(services: Services) -> list[CallRecord]:
        return await services.store.recent(args.limit)

    records = with_services(settings, go)
    if not records:
        print("no calls")
    for record in records:
        print(_record_line(record))
    return 0


def register(sub: Any, add: AddCommand) -> None:
    calls = sub.add_parser("calls", help="call records").add_subparsers(required=True)
    p = add(calls, "list", cmd_calls_list, "the latest call records")
    p.add_argument("--limit", type=int, default=20)
