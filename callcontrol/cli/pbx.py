"""``callcontrol pbx up|down|status``: the development PBX (a real Asterisk 22)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
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
        ami_ok = status.running and _print_ami_health(settings)
        return 0 if status.running and status.ari_ok and ami_ok else 3
    return 0


def _print_ami_health(settings: Settings) -> bool:
    """One line: the PBX's health over AMI, or why AMI could not tell it."""
    from callcontrol.ami.health import ask_pbx_health
    from callcontrol.errors import CallControlError

    host, port = settings.effective_ami_address
    try:
        secret = settings.effective_ami_password
        health = asyncio.run(
            ask_pbx_health(host, port, settings.ami_username, secret, settings.ari_timeout)
        )
    except CallControlError as exc:
        print(f"AMI: error: {exc}")
        return False
    print(health.describe(datetime.now(UTC)))
    return True


def register(sub: Any, add: AddCommand) -> None:
    pbx = add(sub, "pbx", cmd_pbx, "the development PBX (a real Asterisk 22)")
    pbx.add_argument("action", choices=["up", "down", "status"])
