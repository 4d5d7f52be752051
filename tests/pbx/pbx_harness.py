"""Fixtures for tests through the real PBX: Asterisk 22, the app as a process, sipp peers.

The PBX is the development one (`callcontrol pbx up`), started once per session and
left running (``.ci/run`` stops it). Each test gets its own SQLite database with
demo users and numbers, its own app process (`python -m callcontrol serve`), and
sipp phones that register with digest auth.

Tests assert outcomes by querying the database: the call records (``Org.record``),
the wallet and its audit. They wait on the app's events: a few log lines, the
contract between the app and these tests (log_contract.py, pinned by a unit test),
mostly ``AppProcess.calls_released``. Only where no event exists (a record closed by
another process's start-up, or by a settlement retry) ``Org.wait_record`` polls.

This module has a name of its own (test modules import from it); ``conftest.py``
only registers its fixtures: ``from conftest import`` resolves to whichever conftest
pytest loaded last when several directories have one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from log_contract import CONNECTED, IVR_STEP, READY, RELEASED

from callcontrol.billing.service import ChargingService
from callcontrol.billing.wallet import Wallet
from callcontrol.calls.records import CallStore
from callcontrol.config import Settings, load_settings
from callcontrol.directory.service import DirectoryService
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.pbx.devpbx import DevPbx, ensure_ari_secret
from callcontrol.pbx.dtmf import Step, carrier_dtmf_scenario
from callcontrol.pbx.sipp import (
    CARRIER_ANSWERED,
    CARRIER_REFUSED,
    HANG_UP_AFTER,
    HANG_UP_AFTER_UAS,
    WAIT_FOR_BYE,
    SippProcess,
    SippResult,
    free_port,
    render,
    run_sipp,
)
from callcontrol.store import migrate
from callcontrol.store.db import Database
from callcontrol.store.ownership import OwnershipRepository

REPO = Path(__file__).resolve().parents[2]
ROUTED = "+442079460000"  # rings alice, assigned to her
UNROUTED = "+442079460001"  # ours, no routing
UNKNOWN = "+442079469999"  # not ours
FLOW_NUMBER = "+442079460002"  # runs the IVR flow "main"
RATES = REPO / "rates" / "example_rates.csv"
CALLER = "+15551234567"
USERS = {
    "alice": ("1001", "wonderland-7291"),
    "bob": ("1002", "builder-5813-x"),
    "carol": ("1003", "never-registers-42"),  # never registered by any test
}

pytestmark = pytest.mark.pbx


@pytest.fixture(scope="session")
def pbx() -> Iterator[Settings]:
    """A running Asterisk 22 with the project's dialplan; its settings (ARI password)."""
    if os.geteuid() != 0:
        pytest.fail("the PBX tests need root (they run Asterisk in a chroot)")
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed (Debian package sip-tester)")
    base = load_settings(environ={}, overrides={"data_dir": str(REPO / "var")})
    password = ensure_ari_secret(base)
    settings = load_settings(
        environ={}, overrides={"data_dir": str(REPO / "var"), "ari_password": password}
    )
    DevPbx(settings).up()
    yield settings


@dataclass
class Org:
    """One test's organisation: its database and the settings its app runs with."""

    data_dir: Path
    env: dict[str, str]
    db_url: str

    async def record(self, call_id: str) -> CallRecord:
        db = Database.from_url(self.db_url)
        try:
            record = await CallStore(db).get(call_id)
        finally:
            await db.dispose()
        if record is None:
            raise AssertionError(f"no record of call {call_id}")
        return record

    async def latest_record(self) -> CallRecord:
        """The newest call record: for a test that placed one call since its last look
        (prefer ``record(call_id)`` with the id from ``AppProcess.calls_released``)."""
        records = await self.records()
        if not records:
            raise AssertionError("no call record at all")
        return records[0]

    async def records(self) -> list[CallRecord]:
        db = Database.from_url(self.db_url)
        try:
            return await CallStore(db).recent(50)
        finally:
            await db.dispose()

    async def wait_record(
        self, call_id: str, done: Callable[[CallRecord], bool], *, timeout: float = 30
    ) -> CallRecord:
        """Poll the call's record until ``done`` holds. Only for what no event tells: a
        record closed while no app ran the call (re-adoption found it ended, or the
        settlement retried after a database outage)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        record = await self.record(call_id)
                    except AssertionError:
                        pass  # not written yet
                    else:
                        if done(record):
                            return record
                    await asyncio.sleep(0.25)
        except TimeoutError:
            raise AssertionError(f"call record {call_id} not done in {timeout} s") from None

    async def wallet_state(self) -> tuple[int, int, list[str]]:
        """The wallet's balance, what it holds, and the audit's problems."""
        db = Database.from_url(self.db_url)
        try:
            wallet = Wallet(db)
            state = await wallet.balance()
            return state.balance, state.held, await wallet.audit()
        finally:
            await db.dispose()

    async def paid_for(self, call_id: str) -> int:
        """What the call has been charged and holds: what its paid time costs."""
        db = Database.from_url(self.db_url)
        try:
            wallet = Wallet(db)
            return await wallet.charged_for(call_id) + await wallet.hold_of(call_id)
        finally:
            await db.dispose()

    async def wallet(self) -> tuple[Wallet, Database]:
        db = Database.from_url(self.db_url)
        return Wallet(db), db

    async def directory(self) -> tuple[DirectoryService, Database]:
        db = Database.from_url(self.db_url)
        return DirectoryService(db, "callcontrol"), db


async def make_org(
    pbx: Settings,
    tmp_path: Path,
    db_url: str | None = None,
    *,
    credits: int = 100 * MICRO,
    rates: Path = RATES,
    env: dict[str, str] | None = None,
) -> Org:
    """A migrated database with the demo users and numbers, and the app's environment."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db_url = db_url or f"sqlite+aiosqlite:///{data_dir / 'callcontrol.db'}"
    flows_dir = tmp_path / "flows"  # a copy per test: tests edit their flows
    shutil.copytree(REPO / "ivr_flows", flows_dir)
    await asyncio.to_thread(migrate.upgrade, db_url)
    db = Database.from_url(db_url)
    directory = DirectoryService(db, "callcontrol")
    for name, (ext, password) in USERS.items():
        await directory.add_user(name, ext, password)
    await directory.add_number(ROUTED)
    await directory.route_to_user(ROUTED, "alice")
    async with db.session() as session:  # alice presents it calling out
        await OwnershipRepository(session).assign(ROUTED, "alice", default=True)
    await directory.add_number(UNROUTED)
    await directory.add_number(FLOW_NUMBER)
    await directory.route_to_flow(FLOW_NUMBER, "main")
    service = ChargingService(db)
    await service.import_rates(rates)
    if credits:
        await service.wallet.credit(credits, LedgerKind.PURCHASE, "test", "test:credits", "tests")
    await db.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")},
        "CALLCONTROL_DATA_DIR": str(data_dir),
        "CALLCONTROL_DATABASE_URL": db_url,
        "CALLCONTROL_ARI_PASSWORD": pbx.ari_password,
        "CALLCONTROL_AMI_PASSWORD": pbx.effective_ami_password,  # `pbx up` wrote it
        "CALLCONTROL_RING_TIMEOUT": "4",
        "CALLCONTROL_LOG_LEVEL": "DEBUG",
        "CALLCONTROL_FLOWS_DIR": str(flows_dir),
        "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8099",
        **(env or {}),
    }
    return Org(data_dir, env, db_url)


@pytest.fixture
async def org(pbx: Settings, tmp_path: Path) -> Org:
    return await make_org(pbx, tmp_path)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppProcess:
    """`callcontrol serve` as a real process; the contract's log lines are its events."""

    def __init__(self, org: Org, name: str = "app", env: dict[str, str] | None = None) -> None:
        self.org = org
        # Each process its own console port: two apps may run at once (take-over tests).
        self.env = {"CALLCONTROL_CONSOLE_LISTEN": f"127.0.0.1:{free_tcp_port()}"}
        self.env |= {**org.env, **(env or {})}
        self.log_path = org.data_dir / f"{name}.log"
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> AppProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callcontrol",
            "serve",
            env=self.env,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log(READY, timeout=20)
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("a") as out:
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(line + "\n")
                out.flush()
                async with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        return len(self.lines)

    async def wait_log(
        self,
        pattern: str | re.Pattern[str],
        *,
        after: int = 0,
        timeout: float = 15,
        where: Callable[[re.Match[str]], bool] = lambda _: True,
    ) -> re.Match[str]:
        """Wait for a log line matching ``pattern`` (and ``where``) among the lines from
        index ``after``: a pattern of the contract (log_contract.py), or a line that is
        itself the observable under test."""
        regex = re.compile(pattern)
        seen = after
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        for line in self.lines[seen:]:
                            match = regex.search(line)
                            if match and where(match):
                                return match
                        seen = len(self.lines)
                        if self._reader is not None and self._reader.done():
                            tail = "\n".join(self.lines[-25:])
                            raise AssertionError(f"app exited before logging {pattern!r}:\n{tail}")
                        await self._changed.wait()
        except TimeoutError:
            tail = "\n".join(self.lines[-25:])
            raise AssertionError(f"no log line {pattern!r} in {timeout} s:\n{tail}") from None

    async def wait_count(
        self, pattern: str | re.Pattern[str], count: int, *, timeout: float = 30
    ) -> int:
        """Wait until ``count`` log lines match ``pattern``; the index after the last."""
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        seen = [i for i, line in enumerate(self.lines) if regex.search(line)]
                        if len(seen) >= count:
                            return seen[count - 1] + 1
                        if self._reader is not None and self._reader.done():
                            raise AssertionError(f"app exited before {count} x {pattern!r}")
                        await self._changed.wait()
        except TimeoutError:
            tail = "\n".join(self.lines[-25:])
            raise AssertionError(
                f"not {count} log lines {pattern!r} in {timeout} s:\n{tail}"
            ) from None

    async def calls_released(self, count: int = 1, *, timeout: float = 30) -> list[str]:
        """The ids of the first ``count`` calls this process released, once it has:
        their records are complete and their charges settled (unless the database was
        down). Nothing of a released call may be left: no task, no subscription."""
        index = await self.wait_count(RELEASED, count, timeout=timeout)
        released = [m for line in self.lines[:index] if (m := RELEASED.search(line))]
        for match in released:
            assert (match["tasks"], match["subscriptions"]) == ("0", "0"), match.string
        return [match["call_id"] for match in released]

    async def connected(self, user: str = "", *, after: int = 0, timeout: float = 15) -> str:
        """The id of the next call bridged (to ``user``): both legs up, first charge held."""
        match = await self.wait_log(
            CONNECTED,
            after=after,
            timeout=timeout,
            where=lambda m: m["user"] == (user or m["user"]),
        )
        return match["call_id"]

    def ivr_steps(self, call_id: str) -> list[str]:
        """The flow interpreter's steps for the call so far, in order."""
        steps = [m for line in self.lines if (m := IVR_STEP.search(line))]
        return [m["step"] for m in steps if m["call_id"] == call_id]

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


@pytest.fixture
async def app(org: Org) -> AsyncIterator[AppProcess]:
    process = await AppProcess(org).start()
    yield process
    await process.stop()


class Phones:
    """sipp phones of the users: register, then answer / refuse / ring, then unregister.
    ``pbx``: the SIP address they register with (the second PBX of scale-out tests)."""

    def __init__(self, workdir: Path, pbx: str = "127.0.0.1:5060") -> None:
        self.workdir = workdir
        self.pbx = pbx
        self.registered: list[tuple[str, int]] = []
        self.running: list[SippProcess] = []

    async def register(self, user: str, port: int, expires: int = 3600) -> SippResult:
        ext, password = USERS[user]
        sipp = await run_sipp(
            self.workdir,
            f"register-{user}-{expires}-{port}",
            render("register.xml", expires=expires, contact_port=port),
            service=ext,
            auth=(ext, password),
            local_port=port,
            timeout_s=10,
            pbx=self.pbx,
        )
        result = await sipp.wait(15)
        assert result.ok, result.explain()
        return result

    async def answering(
        self, user: str, *, ring_ms: int = 300, talk_ms: int = 0, calls: int = 1
    ) -> SippProcess:
        """A registered phone that answers ``calls`` calls; each hangs up after talk_ms,
        or waits for a BYE."""
        after_ack = (
            HANG_UP_AFTER_UAS.format(ms=talk_ms) if talk_ms else WAIT_FOR_BYE.format(ms=30000)
        )
        xml = render("phone_answer.xml", ring_ms=ring_ms, after_ack=after_ack)
        return await self._phone(user, "answer", xml, calls=calls)

    async def busy(self, user: str) -> SippProcess:
        return await self._phone(user, "busy", render("phone_busy.xml"))

    async def not_answering(self, user: str) -> SippProcess:
        return await self._phone(user, "noanswer", render("phone_noanswer.xml"))

    async def _phone(self, user: str, kind: str, xml: str, *, calls: int = 1) -> SippProcess:
        port = free_port()
        await self.register(user, port)
        self.registered.append((user, port))
        sipp = await run_sipp(
            self.workdir,
            f"phone-{user}-{kind}-{port}",
            xml,
            server=True,
            local_port=port,
            timeout_s=60,
            calls=calls,
        )
        self.running.append(sipp)
        return sipp

    async def close(self) -> None:
        for sipp in self.running:
            sipp.kill()
            await sipp.wait(5)
        for user, port in self.registered:
            await self.register(user, port, expires=0)


@pytest.fixture
async def phones(tmp_path: Path) -> AsyncIterator[Phones]:
    p = Phones(tmp_path / "sipp")
    yield p
    await p.close()


class Carrier:
    """The carrier side: calls into the organisation's numbers (sent to ``pbx``)."""

    def __init__(self, workdir: Path, pbx: str = "127.0.0.1:5060") -> None:
        self.workdir = workdir
        self.pbx = pbx
        self.n = 0

    async def call(
        self,
        number: str,
        *,
        hang_up_after_ms: int = 0,
        caller: str = CALLER,
        refused: bool = False,
        timeout_s: int = 40,
    ) -> SippProcess:
        """Place one call; answered calls hang up after the given time or wait for a BYE."""
        self.n += 1
        if refused:
            final = CARRIER_REFUSED
        else:
            after_ack = (
                HANG_UP_AFTER.format(ms=hang_up_after_ms)
                if hang_up_after_ms
                else WAIT_FOR_BYE.format(ms=timeout_s * 1000)
            )
            final = CARRIER_ANSWERED.format(after_ack=after_ack)
        xml = render("carrier.xml", caller=caller, final=final)
        return await run_sipp(
            self.workdir,
            f"carrier-{self.n}",
            xml,
            service=number,
            local_port=free_port(),
            timeout_s=timeout_s,
            pbx=self.pbx,
        )

    async def dtmf_call(
        self,
        number: str,
        steps: Sequence[Step],
        *,
        end: Literal["hangup", "wait_bye"] = "hangup",
        wait_bye_ms: int = 20_000,
        timeout_s: int = 60,
    ) -> SippProcess:
        """A call that, once answered, presses keys (RFC 4733) and pauses as scripted."""
        self.n += 1
        workdir = self.workdir / f"dtmf-{self.n}"
        xml = carrier_dtmf_scenario(
            CALLER, steps, workdir=workdir, end=end, wait_bye_ms=wait_bye_ms
        )
        return await run_sipp(
            workdir,
            f"carrier-{self.n}",
            xml,
            service=number,
            local_port=free_port(),
            timeout_s=timeout_s,
            pbx=self.pbx,
        )


@pytest.fixture
def carrier(tmp_path: Path) -> Carrier:
    return Carrier(tmp_path / "sipp")
