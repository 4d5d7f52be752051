"""``callcontrol pbx up|down|status``: the development PBX (a real Asterisk 22)."""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand
from callcontrol.config import Settings

__all__ = ["register"]


def cmd_pbx(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.pbx.devpbx import DevPbx

    pbx = DevPbx(settings)
    status = {"up": pbx.up, "down": pbx.down, "status": pbx.status}[args.action]()
    print(status.describe())
    if args.action == "status":
        return 0 if status.running and status.ari_ok else 3
    return 0


def register(sub: Any, add: AddCommand) -> None:
    pbx = add(sub, "pbx", cmd_pbx, "the development PBX (a real Asterisk 22)")
    pbx.add_argument("action", choices=["up", "down", "status"])
