"""``callcontrol calls list``: the latest call records, newest first.
``callcontrol calls close-lost --pbx-node NODE``: settle and close the calls in progress
of a PBX that is gone for good (scale-out: no app of that node will start to do it)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from callcontrol.billing.session import CallCharging
from callcontrol.calls.call import utcnow
from callcontrol.calls.lost import close_lost
from callcontrol.calls.records import CallStore
from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import format_credits
from callcontrol.domain.text import printable, shown
from callcontrol.errors import InvalidInput
from callcontrol.services import Services

__all__ = ["register"]

# as the setting pbx_node, or a worker's node <pbx_node>/<K> (setting workers)
_NODE = re.compile(r"(?=.{1,64}$)[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[1-9][0-9]?)?")


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
        + (f" pbx={r.pbx_node}" if r.pbx_node else "")
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


def cmd_calls_close_lost(settings: Settings, args: argparse.Namespace) -> int:
    node: str = args.pbx_node

    async def go(services: Services) -> list[CallRecord]:
        store = CallStore(services.db, node)
        charging = CallCharging(services.charging, store)
        closed = []
        for record in await store.open_records():
            if record.pbx_node == node and await close_lost(store, charging, record, utcnow()):
                closed.append(record)
        return closed

    if not _NODE.fullmatch(node):
        raise InvalidInput(
            f"--pbx-node {shown(node)}: a PBX node is 1 to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (the setting pbx_node of its app), "
            "and a worker's is <node>/<K>"
        )
    own = settings.effective_pbx_node
    if (node == own or node.startswith(own + "/")) and not args.force:
        raise InvalidInput(
            f"{node} is this host's own PBX node: its app closes its calls at start; "
            "add --force if that PBX is gone for good"
        )
    closed = with_services(settings, go)
    for record in closed:
        print("closed " + _record_line(record))
    print(f"PBX node {node}: {len(closed)} calls in progress settled and closed")
    return 0


def register(sub: Any, add: AddCommand) -> None:
    calls = sub.add_parser("calls", help="call records").add_subparsers(required=True)
    p = add(calls, "list", cmd_calls_list, "the latest call records")
    p.add_argument("--limit", type=int, default=20)
    p = add(
        calls,
        "close-lost",
        cmd_calls_close_lost,
        "settle (crash rule) and close the open calls of a PBX that is gone for good",
    )
    p.add_argument("--pbx-node", required=True, help="the retired PBX's pbx_node")
    p.add_argument("--force", action="store_true", help="even if it is this host's node")
