"""The demo data: two users, three numbers (one per kind of routing), rates, credits, and
the example number catalogue to buy more from.

``seed_demo(services)`` is idempotent: what exists is left alone, and the demo
credits are one idempotent wallet credit (``demo:initial-credits``). The schema
must be current (``callcontrol db upgrade``), and the flow ``main`` must be in
``flows_dir`` (``ivr_flows/main.yaml``). ``callcontrol demo seed`` loads the demo only
into an empty database (``existing_data`` says what is there), unless forced.

The demo users' SIP passwords are generated for each installation, never shipped: a
published password on a PBX that someone exposes is the first thing a SIP scanner
tries. They are kept (0600) in ``<data_dir>/demo-passwords``, one ``name password``
per line, for ``callcontrol demo phone`` and for ``./dev run`` to print.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from callcontrol.carrier.catalogue_file import load_catalogue_file
from callcontrol.config import Settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.domain.users import check_password
from callcontrol.errors import WeakPassword
from callcontrol.services import Services

__all__ = [
    "DEMO_CREDITS",
    "DEMO_RATES",
    "demo_passwords",
    "describe_demo",
    "existing_data",
    "seed_demo",
]

DEMO_RATES = Path(__file__).resolve().parent.parent / "rates" / "example_rates.csv"
DEMO_CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue" / "example_catalogue.csv"
DEMO_EXTENSIONS = {"alice": "1001", "bob": "1002"}
DEMO_CREDITS = 20 * MICRO


async def existing_data(services: Services) -> str:
    """What the database holds already, in words (``2 user(s), a rate table``); "" if
    it is empty."""
    found: list[str] = []
    users = len(await services.directory.list_users())
    numbers = len(await services.directory.list_numbers())
    if users:
        found.append(f"{users} user(s)")
    if numbers:
        found.append(f"{numbers} number(s)")
    if await services.charging.current_rate_set() is not None:
        found.append("a rate table")
    if await services.charging.wallet.ledger(1):
        found.append("wallet ledger entries")
    return ", ".join(found)


def demo_passwords_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-passwords"


def demo_passwords(settings: Settings) -> dict[str, str]:
    """The demo users' generated passwords ({} before the first seed)."""
    try:
        text = demo_passwords_file(settings).read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.split(" ", 1) for line in text.splitlines() if " " in line)
    return {name: password for name, password in pairs}


def _new_password(name: str, extension: str) -> str:
    """16 random URL-safe characters that pass the users' password rules."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            check_password(password, name=name, extension=extension)
        except WeakPassword:
            continue  # e.g. it happened to contain the extension
        return password


def _save_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{name} {password}\n" for name, password in passwords.items())
    os.replace(tmp, path)


async def seed_demo(services: Services) -> None:
    """Create whatever of the demo data is missing."""
    directory = services.directory
    users = {u.name for u in await directory.list_users()}
    passwords = demo_passwords(services.settings)
    for name, extension in DEMO_EXTENSIONS.items():
        if name not in users:
            passwords[name] = _new_password(name, extension)
            # written before the user exists: a password is never lost to a crash between
            _save_passwords(demo_passwords_file(services.settings), passwords)
            await directory.add_user(name, extension, passwords[name])
    numbers = {n.e164 for n in await directory.list_numbers()}
    if "+442079460000" not in numbers:
        await directory.add_number("+442079460000")
        await directory.route_to_user("+442079460000", "alice")
        await services.numbers.assign("+442079460000", "alice")
    if "+442079460001" not in numbers:
        await directory.add_number("+442079460001")
    if "+442079460002" not in numbers:
        await directory.add_number("+442079460002")
        await directory.route_to_flow("+442079460002", "main")

    if not await services.numbers.coverage():
        await services.inventory.import_offers(load_catalogue_file(DEMO_CATALOGUE))
    charging = services.charging
    if await charging.current_rate_set() is None:
        await charging.import_rates(DEMO_RATES)
    await charging.wallet.credit(
        DEMO_CREDITS, LedgerKind.PURCHASE, "demo", "demo:initial-credits", "demo credits"
    )


def describe_demo(settings: Settings) -> str:
    """What ``seed_demo`` creates, in one paragraph."""
    passwords = demo_passwords(settings)
    alice, bob = (passwords.get(name, "(not generated here)") for name in ("alice", "bob"))
    return (
        f"demo data: users alice (1001, password {alice}) and bob (1002, password {bob}; "
        f"both generated for this installation, kept in {demo_passwords_file(settings)}); "
        "+442079460000 rings alice and is hers to call out "
        "with; +442079460001 has no "
        "routing; +442079460002 runs the IVR flow 'main'; rates from "
        f"{DEMO_RATES.name}; 20 credits in the wallet; numbers to buy from "
        f"{DEMO_CATALOGUE.name}"
    )
