"""``callcontrol config show|doc``: the effective settings, and every setting's documentation."""

from __future__ import annotations

import argparse
from typing import Any

from callcontrol.cli.common import AddCommand
from callcontrol.config import Settings

__all__ = ["register"]


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    for key, value in settings.redacted().items():
        print(f"{key} = {value}")
    return 0


def cmd_config_doc(settings: Settings, args: argparse.Namespace) -> int:
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else field.default  # an optional file: none
        print(f"{name} (CALLCONTROL_{name.upper()}), default {default!s}")
        if field.description:
            print(f"    {field.description}")
    return 0


def register(sub: Any, add: AddCommand) -> None:
    config = sub.add_parser("config", help="show the settings").add_subparsers(required=True)
    add(config, "show", cmd_config_show, "the effective settings, secrets masked")
    add(config, "doc", cmd_config_doc, "every setting, its variable and default")
