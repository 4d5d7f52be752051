"""``callcontrol demo seed|phone|call``: demo data, a sipp phone, a call as the carrier."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from callcontrol.cli.common import AddCommand, with_services
from callcontrol.config import Settings
from callcontrol.demo import demo_passwords, describe_demo, existing_data, seed_demo
from callcontrol.domain.directory import User
from callcontrol.errors import Conflict, InvalidInput
from callcontrol.services import Services

__all__ = ["register"]


def cmd_demo_seed(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate

    migrate.upgrade(settings.effective_database_url)

    async def go(services: Services) -> str:
        found = await existing_data(services)
        if found and not args.force:
            if args.if_empty:
                return found
            raise Conflict(
                f"the database already has data ({found}): demo seed adds users alice and "
                "bob, routes a number to alice and "
                "books 20 credits; give --force to add the demo data anyway (--if-empty "
                "skips it, as ./dev run does)"
            )
        await seed_demo(services)
        return ""

    found = with_services(settings, go)
    if found:
        print(f"demo data not loaded: the database already has data ({found})")
    else:
        print(describe_demo(settings))
    return 0


def cmd_demo_phone(settings: Settings, args: argparse.Namespace) -> int:
    """A sipp phone for a user: registers, then answers every call until Ctrl-C."""
    from callcontrol.pbx import sipp

    password = args.password or demo_passwords(settings).get(args.name)
    if not password:
        raise InvalidInput(
            f"give --password for {args.name} (the demo users' passwords are in "
            f"{settings.data_dir / 'demo-passwords'})"
        )

    async def get_user(services: Services) -> User:
        return await services.directory.get_user(args.name)

    user = with_services(settings, get_user)

    async def go() -> int:
        workdir = settings.data_dir / "sipp"
        reg = await sipp.run_sipp(
            workdir,
            f"register-{user.extension}",
            sipp.render("register.xml", expires=3600, contact_port=args.port),
            service=user.extension,
            auth=(user.extension, password),
            local_port=args.port,
            timeout_s=10,
            pbx=settings.sip_bind,
        )
        result = await reg.wait(15)
        if not result.ok:
            raise InvalidInput(f"registration of {user.extension} failed:\n{result.explain()}")
        print(
            f"{user.name}'s phone registered as {user.extension} on 127.0.0.1:{args.port}; "
            "answering calls (Ctrl-C stops it)"
        )
        after = sipp.WAIT_FOR_BYE.format(ms=3_600_000)
        phone = await sipp.run_sipp(
            workdir,
            f"phone-{user.extension}",
            sipp.render("phone_answer.xml", ring_ms=1000, after_ack=after),
            server=True,
            local_port=args.port,
            timeout_s=86400,
            calls=0,
        )
        try:
            await phone.proc.wait()
        finally:
            phone.kill()
        return 0

    return asyncio.run(go())


def cmd_demo_call(settings: Settings, args: argparse.Namespace) -> int:
    """Call one of the organisation's numbers as the carrier, with sipp."""
    from callcontrol.pbx import sipp

    async def go() -> int:
        after = sipp.HANG_UP_AFTER.format(ms=int(args.seconds * 1000))
        xml = sipp.render(
            "carrier.xml", caller=args.caller, final=sipp.CARRIER_ANSWERED.format(after_ack=after)
        )
        call = await sipp.run_sipp(
            settings.data_dir / "sipp",
            "carrier-demo",
            xml,
            service=args.number,
            timeout_s=int(args.seconds) + 60,
            pbx=settings.sip_bind,
        )
        print(f"calling {args.number} from {args.caller} as the carrier...")
        result = await call.wait(args.seconds + 70)
        for line in result.received():
            print(f"  <- {line}")
        print("answered and hung up" if result.ok else "not answered (see the app's log)")
        return 0 if result.ok else 1

    return asyncio.run(go())


def register(sub: Any, add: AddCommand) -> None:
    demo = sub.add_parser("demo", help="demo data").add_subparsers(required=True)
    p = add(demo, "seed", cmd_demo_seed, "create demo users and numbers in an empty database")
    p.add_argument(
        "--force",
        action="store_true",
        help="also when the database has data (adds the demo users, routes, credits)",
    )
    p.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing, successfully, when the database has data",
    )
    p = add(demo, "phone", cmd_demo_phone, "a sipp phone for a user: register and answer")
    p.add_argument("name")
    p.add_argument(
        "--password", help="the user's SIP password (demo users: from <data_dir>/demo-passwords)"
    )
    p.add_argument("--port", type=int, default=5081, help="local SIP port of the phone")
    p = add(demo, "call", cmd_demo_call, "call a number as the carrier (sipp)")
    p.add_argument("number")
    p.add_argument("--caller", default="+15551234567")
    p.add_argument("--seconds", type=float, default=10.0, help="talk time before hanging up")
