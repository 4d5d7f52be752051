"""The `callcontrol` command.

Every sub-command reads the same settings (config.py): ``--config FILE`` and
``--set KEY=VALUE`` on the command line, ``CALLCONTROL_<SETTING>`` in the
environment. Errors print ``error: <message>`` and exit 1 (2 for usage), never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from callcontrol.config import Settings, load_settings
from callcontrol.errors import AriError, CallControlError, InvalidInput
from callcontrol.logs import setup_logging

T = TypeVar("T")
log = logging.getLogger("callcontrol")


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


# ---- settings -----------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    return load_settings(Path(args.config) if args.config else None, overrides=overrides)


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    for key, value in settings.redacted().items():
        print(f"{key} = {value}")
    return 0


def cmd_config_doc(settings: Settings, args: argparse.Namespace) -> int:
    for name, field in Settings.model_fields.items():
        print(f"{name} (CALLCONTROL_{name.upper()}), default {field.default!s}")
        if field.description:
            print(f"    {field.description}")
    return 0


# ---- database -----------------------------------------------------------------------


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate

    url = settings.effective_database_url
    migrate.upgrade(url)
    print(f"database at schema {migrate.current(url)}")
    return 0


def cmd_db_current(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate

    have, want = migrate.current(settings.effective_database_url), migrate.head()
    print(f"schema {have or 'none'} (latest {want})")
    return 0 if have == want else 1


# ---- the development PBX ------------------------------------------------------------------


def cmd_pbx(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.pbx.devpbx import DevPbx

    pbx = DevPbx(settings)
    status = {"up": pbx.up, "down": pbx.down, "status": pbx.status}[args.action]()
    print(status.describe())
    if args.action == "status":
        return 0 if status.running and status.ari_ok else 3
    return 0


# ---- users --------------------------------------------------------------------------------


def _password(args: argparse.Namespace) -> str:
    if args.password == "-":
        return sys.stdin.readline().rstrip("\n")
    if args.password:
        return str(args.password)
    if not sys.stdin.isatty():
        raise InvalidInput("give --password PW, or --password - to read it from standard input")
    first = getpass.getpass("SIP password: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the passwords differ")
    return first


async def _push_user_change(settings: Settings, extension: str, removed: bool) -> None:
    """Apply a user change to Asterisk now, if it answers (the app re-checks anyway)."""
    from callcontrol.ari import AriClient
    from callcontrol.calls.provisioning import EndpointProvisioner
    from callcontrol.directory.service import DirectoryService
    from callcontrol.store.db import Database

    try:
        password = settings.effective_ari_password
    except CallControlError:
        return
    ari = AriClient(
        settings.ari_url,
        settings.ari_username,
        password,
        app=settings.ari_app,
        timeout=settings.ari_timeout,
    )
    db = Database.from_url(settings.effective_database_url)
    try:
        provisioner = EndpointProvisioner(ari)
        if removed:
            await provisioner.remove(extension)
        else:
            users = await DirectoryService(db, settings.sip_realm).list_users()
            for user in users:
                if user.extension == extension:
                    await provisioner.push(user)
        print(f"Asterisk updated: endpoint {extension} {'removed' if removed else 'ready'}")
    except AriError as exc:
        print(f"note: Asterisk not updated now ({exc}); the app applies it when it connects")
    finally:
        await ari.close()
        await db.dispose()


def _directory(settings: Settings) -> Any:
    from callcontrol.directory.service import DirectoryService
    from callcontrol.store.db import Database

    return DirectoryService(Database.from_url(settings.effective_database_url), settings.sip_realm)


async def _with_directory(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    directory = _directory(settings)
    try:
        return await fn(directory)
    finally:
        await directory.db.dispose()


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)

    async def go() -> None:
        user = await _with_directory(
            settings, lambda d: d.add_user(args.name, args.extension, password)
        )
        print(
            f"added user {user.name}, extension {user.extension} "
            f"(SIP user {user.extension}, realm {user.realm})"
        )
        await _push_user_change(settings, user.extension, removed=False)

    _run(go)
    return 0


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    users = _run(lambda: _with_directory(settings, lambda d: d.list_users()))
    if not users:
        print("no users")
    for user in users:
        print(f"{user.name:<20} extension {user.extension}")
    return 0


def cmd_users_remove(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> None:
        user = await _with_directory(settings, lambda d: d.get_user(args.name))
        await _with_directory(settings, lambda d: d.remove_user(args.name, force=args.force))
        print(f"removed user {user.name}")
        await _push_user_change(settings, user.extension, removed=True)

    _run(go)
    return 0


def cmd_users_set_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _password(args)

    async def go() -> None:
        user = await _with_directory(settings, lambda d: d.set_password(args.name, password))
        print(f"password of {user.name} changed")
        await _push_user_change(settings, user.extension, removed=False)

    _run(go)
    return 0


# ---- numbers ------------------------------------------------------------------------------


def _route_text(number: Any) -> str:
    route = number.route
    if route is None:
        return "no routing (refuses calls)"
    if route.kind == "user":
        return f"rings user {route.user_name}"
    return f"runs flow {route.flow_name}"


def cmd_numbers_add(settings: Settings, args: argparse.Namespace) -> int:
    number = _run(lambda: _with_directory(settings, lambda d: d.add_number(args.number, args.type)))
    print(f"added {number.e164} ({number.country}, {number.number_type}); {_route_text(number)}")
    return 0


def cmd_numbers_list(settings: Settings, args: argparse.Namespace) -> int:
    numbers = _run(lambda: _with_directory(settings, lambda d: d.list_numbers()))
    if not numbers:
        print("no numbers")
    for n in numbers:
        print(f"{n.e164:<18} {n.country:<3} {n.number_type!s:<10} {_route_text(n)}")
    return 0


def cmd_numbers_remove(settings: Settings, args: argparse.Namespace) -> int:
    _run(lambda: _with_directory(settings, lambda d: d.remove_number(args.number)))
    print(f"removed {args.number}")
    return 0


def cmd_numbers_route(settings: Settings, args: argparse.Namespace) -> int:
    if args.user:
        fn = lambda d: d.route_to_user(args.number, args.user)  # noqa: E731
    elif args.flow:
        fn = lambda d: d.route_to_flow(args.number, args.flow)  # noqa: E731
    else:
        fn = lambda d: d.clear_route(args.number)  # noqa: E731
    number = _run(lambda: _with_directory(settings, fn))
    print(f"{number.e164}: {_route_text(number)}")
    return 0


# ---- calls ---------------------------------------------------------------------------------


def cmd_calls_list(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.domain.money import format_credits
    from callcontrol.store.db import Database
    from callcontrol.store.repositories import CallRecordRepository

    async def go() -> list[Any]:
        db = Database.from_url(settings.effective_database_url)
        try:
            async with db.session() as session:
                return await CallRecordRepository(session).list_recent(args.limit)
        finally:
            await db.dispose()

    records = _run(go)
    if not records:
        print("no calls")
    for r in records:
        answered = r.answered_at.strftime("%H:%M:%S") if r.answered_at else "-"
        ended = r.ended_at.strftime("%H:%M:%S") if r.ended_at else "(in progress)"
        print(
            f"{r.started_at:%Y-%m-%d %H:%M:%S} {r.call_id[:12]} {r.direction!s:<8} "
            f"{r.caller} -> {r.callee} user={r.user_name or '-'} answered={answered} "
            f"ended={ended} {r.disposition or ''} by={r.ended_by or '-'}"
            + (
                f" billed={r.billable_seconds}s cost={format_credits(r.cost_micro)}"
                if r.cost_micro is not None
                else ""
            )
        )
    return 0


# ---- serve ---------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.app import App

    app = App(settings)
    app.check_schema()

    async def go() -> None:
        await app.run()

    try:
        asyncio.run(go())
    except* CallControlError as group:
        raise group.exceptions[0] from None
    return 0


def cmd_demo_seed(settings: Settings, args: argparse.Namespace) -> int:
    from callcontrol.store import migrate
    from callcontrol.store.db import Database

    migrate.upgrade(settings.effective_database_url)

    async def go(d: Any) -> None:
        users = {u.name for u in await d.list_users()}
        if "alice" not in users:
            await d.add_user("alice", "1001", "wonderland-7291")
        if "bob" not in users:
            await d.add_user("bob", "1002", "builder-5813-x")
        numbers = {n.e164 for n in await d.list_numbers()}
        if "+442079460000" not in numbers:
            await d.add_number("+442079460000")
            await d.route_to_user("+442079460000", "alice")
        if "+442079460001" not in numbers:
            await d.add_number("+442079460001")
        if "+442079460002" not in numbers:
            await d.add_number("+442079460002")
            await d.route_to_flow("+442079460002", "main")

    async def money() -> None:
        from callcontrol.billing.service import ChargingService
        from callcontrol.domain.money import MICRO, LedgerKind

        db = Database.from_url(settings.effective_database_url)
        try:
            service = ChargingService(db)
            if await service.current_rate_set() is None:
                await service.import_rates(DEMO_RATES)
            await service.wallet.credit(
                20 * MICRO, LedgerKind.PURCHASE, "demo", "demo:initial-credits", "demo credits"
            )
        finally:
            await db.dispose()

    _run(lambda: _with_directory(settings, go))
    _run(money)
    print(
        "demo data: users alice (1001, password wonderland-7291) and bob (1002, "
        "password builder-5813-x); +442079460000 rings alice; +442079460001 has no "
        "routing; +442079460002 runs the IVR flow 'main'; rates from "
        f"{DEMO_RATES.name}; 20 credits in the wallet"
    )
    return 0


DEMO_RATES = Path(__file__).resolve().parent.parent / "rates" / "example_rates.csv"
DEMO_PASSWORDS = {"alice": "wonderland-7291", "bob": "builder-5813-x"}


def cmd_demo_phone(settings: Settings, args: argparse.Namespace) -> int:
    """A sipp phone for a user: registers, then answers every call until Ctrl-C."""
    from callcontrol.pbx import sipp

    password = args.password or DEMO_PASSWORDS.get(args.name)
    if not password:
        raise InvalidInput(f"give --password for {args.name}")

    async def go() -> int:
        directory = _directory(settings)
        try:
            user = await directory.get_user(args.name)
        finally:
            await directory.db.dispose()
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

    return _run(go)


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

    return _run(go)


# ---- the parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own: usage + exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="callcontrol", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TOML config file (default: ./callcontrol.toml)")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(group: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    serve = add(sub, "serve", cmd_serve, "run the call-control app (ARI) in the foreground")
    del serve

    config = sub.add_parser("config", help="show the settings").add_subparsers(required=True)
    add(config, "show", cmd_config_show, "the effective settings, secrets masked")
    add(config, "doc", cmd_config_doc, "every setting, its variable and default")

    db = sub.add_parser("db", help="the database schema").add_subparsers(required=True)
    add(db, "upgrade", cmd_db_upgrade, "create or migrate the schema to the latest version")
    add(db, "current", cmd_db_current, "show the schema version")

    pbx = add(sub, "pbx", cmd_pbx, "the development PBX (a real Asterisk 22)")
    pbx.add_argument("action", choices=["up", "down", "status"])

    users = sub.add_parser("users", help="users and their SIP phones").add_subparsers(required=True)
    p = add(users, "add", cmd_users_add, "add a user with a SIP endpoint")
    p.add_argument("name")
    p.add_argument("--extension", required=True, help="2-6 digits; also the SIP user name")
    p.add_argument("--password", help="SIP password (- reads it from standard input)")
    add(users, "list", cmd_users_list, "list users")
    p = add(users, "remove", cmd_users_remove, "remove a user and their SIP endpoint")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also remove numbers' routes to them")
    p = add(users, "set-password", cmd_users_set_password, "change a user's SIP password")
    p.add_argument("name")
    p.add_argument("--password", help="SIP password (- reads it from standard input)")

    numbers = sub.add_parser("numbers", help="the organisation's numbers").add_subparsers(
        required=True
    )
    p = add(numbers, "add", cmd_numbers_add, "add a number the organisation holds")
    p.add_argument("number", help="E.164, e.g. +442079460000")
    p.add_argument(
        "--type",
        choices=["local", "national", "mobile", "toll_free"],
        help="number type (inferred when omitted)",
    )
    add(numbers, "list", cmd_numbers_list, "list numbers and their routing")
    p = add(numbers, "remove", cmd_numbers_remove, "remove a number")
    p.add_argument("number")
    p = add(numbers, "route", cmd_numbers_route, "set or remove a number's incoming routing")
    p.add_argument("number")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="ring this user")
    target.add_argument("--flow", help="run this IVR flow")
    target.add_argument("--none", action="store_true", help="no routing: refuse calls")

    calls = sub.add_parser("calls", help="call records").add_subparsers(required=True)
    p = add(calls, "list", cmd_calls_list, "the latest call records")
    p.add_argument("--limit", type=int, default=20)

    from callcontrol.billing import commands as billing_commands
    from callcontrol.ivr import commands as ivr_commands

    ivr_commands.register(sub, add)
    billing_commands.register(sub, add)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(required=True)
    add(demo, "seed", cmd_demo_seed, "create demo users and numbers (idempotent)")
    p = add(demo, "phone", cmd_demo_phone, "a sipp phone for a user: register and answer")
    p.add_argument("name")
    p.add_argument("--password", help="the user's SIP password (known for demo users)")
    p.add_argument("--port", type=int, default=5081, help="local SIP port of the phone")
    p = add(demo, "call", cmd_demo_call, "call a number as the carrier (sipp)")
    p.add_argument("number")
    p.add_argument("--caller", default="+15551234567")
    p.add_argument("--seconds", type=float, default=10.0, help="talk time before hanging up")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        setup_logging(settings.log_level if args.command == "serve" else "WARNING")
        code: int = args.fn(settings, args)
    except CallControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
