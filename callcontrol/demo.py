"""The demo data: two users, three numbers (one per kind of routing), rates, credits, and
the example number catalogue to buy more from.

``seed_demo(services)`` is idempotent: what exists is left alone, and the demo
credits are one idempotent wallet credit (``demo:initial-credits``). The schema
must be current (``callcontrol db upgrade``), and the flow ``main`` must be in
``flows_dir`` (``ivr_flows/main.yaml``). The demo users' passwords are public, so
``callcontrol demo seed`` loads them only into an empty database (``existing_data``
says what is there), unless forced.
"""

from __future__ import annotations

from pathlib import Path

from callcontrol.carrier.catalogue_file import load_catalogue_file
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.services import Services

__all__ = [
    "DEMO_CREDITS",
    "DEMO_PASSWORDS",
    "DEMO_RATES",
    "describe_demo",
    "existing_data",
    "seed_demo",
]

DEMO_RATES = Path(__file__).resolve().parent.parent / "rates" / "example_rates.csv"
DEMO_CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue" / "example_catalogue.csv"
DEMO_PASSWORDS = {"alice": "wonderland-7291", "bob": "builder-5813-x"}
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


async def seed_demo(services: Services) -> None:
    """Create whatever of the demo data is missing."""
    directory = services.directory
    users = {u.name for u in await directory.list_users()}
    for name, extension in DEMO_EXTENSIONS.items():
        if name not in users:
            await directory.add_user(name, extension, DEMO_PASSWORDS[name])
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


def describe_demo() -> str:
    """What ``seed_demo`` creates, in one paragraph."""
    return (
        "demo data: users alice (1001, password wonderland-7291) and bob (1002, "
        "password builder-5813-x); +442079460000 rings alice and is hers to call out "
        "with; +442079460001 has no "
        "routing; +442079460002 runs the IVR flow 'main'; rates from "
        f"{DEMO_RATES.name}; 20 credits in the wallet; numbers to buy from "
        f"{DEMO_CATALOGUE.name}"
    )
