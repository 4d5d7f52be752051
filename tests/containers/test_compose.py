"""docker/ built and run: a real call through the containers, charged in their database.

podman builds the three images with ``docker/build.sh`` (base images made by
mmdebstrap and imported: no registry), podman-compose starts the stack
(``docker/docker-compose.yml``: Asterisk 22, the app, PostgreSQL 15, host networking)
on ports of its own beside the development PBX, the app's CLI inside its container
seeds a user, a number, rates and credits, and sipp on the host plays the carrier and
the user's registered phone. The call must be answered, settled and charged in the
stack's PostgreSQL, and ``callcontrol credits audit`` in the container must be clean.
The stack is always taken down, volumes and all.

Needs root (podman, mmdebstrap, SIP ports). It shares the host's network and CPU with
the PBX tests, so by hand run it under their lock:

    sudo flock /tmp/callcontrol-pbx.lock .venv/bin/pytest -q -p no:cacheprovider tests/containers
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcontrol.billing.wallet import Wallet
from callcontrol.calls.records import CallStore
from callcontrol.domain.money import MICRO
from callcontrol.pbx.sipp import (
    CARRIER_ANSWERED,
    HANG_UP_AFTER,
    WAIT_FOR_BYE,
    SippProcess,
    free_port,
    render,
    run_sipp,
)
from callcontrol.store.db import Database

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]
PROJECT = "callcontrol-test"
ROUTED = "+442079460000"
CALLER = "+15551234567"
ALICE = ("alice", "1001")
CREDITS = 20
# Not the development PBX's (SIP 5060, ARI 8088, AMI 5038, RTP 10000-20000, the
# carrier's sipp on 5070), nor the test apps' media port 8099, nor a local PostgreSQL
# on 5432, nor the sipp peers' ports (5100 up, media 30000 up).
PORTS = {
    "SIP": 5160,
    "ARI_PORT": 8188,
    "AMI_PORT": 5138,
    "CONSOLE_PORT": 8180,
    "MEDIA_PORT": 8199,
    "POSTGRES_PORT": 5433,
}
RTP_PORTS = "24000-24999"
CARRIER_CONTACT = "sip:127.0.0.1:5170"
READY = re.compile(r"provisioned (?P<users>\d+) users' SIP endpoints")
RELEASED = re.compile(r"call (?P<call_id>\w+) released: ")


@dataclass
class Stack:
    """The running compose project: how to reach it and its secrets."""

    compose: list[str]
    env: dict[str, str]
    db_url: str
    sip: str

    @staticmethod
    def container(service: str) -> str:
        return f"{PROJECT}_{service}_1"


def _run(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-3000:]
        raise AssertionError(f"{' '.join(argv[:4])} ... exit {proc.returncode}:\n{out}")
    return proc.stdout


def _check_ports_free() -> None:
    """A port taken (a stack left over, another service) fails here, named."""
    for name, port in PORTS.items():
        kind = socket.SOCK_DGRAM if name == "SIP" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                pytest.fail(f"port {port} ({name}) for the stack is in use: {exc.strerror}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Build the images, start the stack; always take it down (volumes too)."""
    if os.geteuid() != 0:
        pytest.skip("the container test needs root (podman, mmdebstrap, SIP ports): use sudo")
    compose_cmd = Path(sys.executable).with_name("podman-compose")
    if not compose_cmd.exists():
        pytest.fail(f"podman-compose is not installed in {compose_cmd.parent} (.[test] extra)")
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed (Debian package sip-tester)")
    tmp = tmp_path_factory.mktemp("stack")

    started = time.monotonic()
    build = subprocess.run(
        [str(REPO / "docker" / "build.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )
    (tmp / "build.log").write_text(build.stdout)
    if build.returncode != 0:
        pytest.fail(f"docker/build.sh failed (exit {build.returncode}):\n{build.stdout[-3000:]}")
    print(f"\nimages built or up to date in {time.monotonic() - started:.0f} s")

    # Secrets generated for this run, never defaults; in a 0600 file, not on command lines.
    pg_password = secrets.token_hex(16)
    values = {
        "POSTGRES_PASSWORD": pg_password,
        "CALLCONTROL_ARI_PASSWORD": secrets.token_hex(16),
        "CALLCONTROL_AMI_PASSWORD": secrets.token_hex(16),
        "CALLCONTROL_CARRIER_IPS": "127.0.0.1",
        "CALLCONTROL_SIP_BIND": f"127.0.0.1:{PORTS['SIP']}",
        "CALLCONTROL_CARRIER_CONTACT": CARRIER_CONTACT,
        "RTP_PORTS": RTP_PORTS,
        "IVR_FLOWS_DIR": str(REPO / "ivr_flows"),
        "CALLCONTROL_LOG_LEVEL": "DEBUG",
        **{name: str(port) for name, port in PORTS.items() if name != "SIP"},
    }
    env_file = tmp / "stack.env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{key}={value}\n" for key, value in values.items())
    # Nothing from the caller's environment may change the stack: podman-compose lets
    # the process environment win over --env-file.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in values and not k.startswith(("CALLCONTROL_", "COMPOSE_"))
    }
    compose = [
        str(compose_cmd),
        "-p",
        PROJECT,
        "--env-file",
        str(env_file),
        "-f",
        str(REPO / "docker" / "docker-compose.yml"),
    ]

    def down() -> None:
        subprocess.run(
            [*compose, "down", "-v", "-t", "10"],
            capture_output=True,
            timeout=120,
            env=env,
            check=False,
        )

    down()  # a stack left by an interrupted run
    try:
        _check_ports_free()
        started = time.monotonic()
        _run([*compose, "up", "-d"], timeout=120, env=env)
        print(f"stack started in {time.monotonic() - started:.0f} s")
        yield Stack(
            compose,
            env,
            f"postgresql+asyncpg://callcontrol:{pg_password}@127.0.0.1:{PORTS['POSTGRES_PORT']}"
            "/callcontrol",
            f"127.0.0.1:{PORTS['SIP']}",
        )
    finally:
        for service in ("app", "asterisk", "postgres"):
            logs = subprocess.run(
                ["podman", "logs", Stack.container(service)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            (tmp / f"{service}.log").write_text(logs.stdout + logs.stderr)
        started = time.monotonic()
        down()
        print(f"stack taken down in {time.monotonic() - started:.0f} s; logs in {tmp}")


class AppLog:
    """The app container's log, followed (``podman logs -f``): its lines are events."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> AppLog:
        self._proc = await asyncio.create_subprocess_exec(
            "podman",
            "logs",
            "-f",
            Stack.container("app"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str]:
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        for line in self.lines[seen:]:
                            if match := pattern.search(line):
                                return match
                        seen = len(self.lines)
                        if self._reader is not None and self._reader.done():
                            raise AssertionError(f"the app exited before {pattern.pattern!r}")
                        await self._changed.wait()
        except TimeoutError:
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"no {pattern.pattern!r} in {timeout} s:\n{tail}") from None

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader


async def _exec(service: str, *argv: str, stdin: str | None = None) -> str:
    """Run a command in a stack container; its output, or fail with it."""
    proc = await asyncio.create_subprocess_exec(
        "podman",
        "exec",
        "-i",
        Stack.container(service),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else b""), 60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{service}: {' '.join(argv)} -> exit {proc.returncode}\n{text}"
    return text


async def _copy_into(service: str, source: Path, target: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "podman", "cp", str(source), f"{Stack.container(service)}:{target}"
    )
    assert await proc.wait() == 0, f"podman cp {source} failed"


async def test_a_call_through_the_containers_is_charged_in_their_database(
    stack: Stack, tmp_path: Path
) -> None:
    log = await AppLog().start()
    sipps: list[SippProcess] = []
    try:
        started = time.monotonic()
        # Ready: the app migrated the schema, reached PostgreSQL and ARI, and provisioned.
        await log.wait_for(READY, timeout=120)
        await _exec("asterisk", "asterisk", "-rx", "core waitfullybooted")
        print(f"stack ready in {time.monotonic() - started:.0f} s")
        # The image carries the emergency numbers' dialplan; the country's (GB: 999) is in.
        emergency = await _exec(
            "asterisk", "asterisk", "-rx", "dialplan show 999@callcontrol-emergency"
        )
        assert "Dial(PJSIP/${EXTEN}@carrier)" in emergency, emergency

        # Seed with the app's own CLI in its container, against the stack's database.
        password = secrets.token_urlsafe(12)
        name, extension = ALICE
        await _exec(
            "app", "callcontrol", "users", "add", name, "--extension", extension,
            "--password", "-", stdin=password + "\n",
        )  # fmt: skip
        await _exec("app", "callcontrol", "numbers", "add", ROUTED)
        await _exec("app", "callcontrol", "numbers", "route", ROUTED, "--user", name)
        await _copy_into("app", REPO / "rates" / "example_rates.csv", "/tmp/rates.csv")
        await _exec("app", "callcontrol", "rates", "import", "/tmp/rates.csv")
        await _exec(
            "app", "callcontrol", "credits", "adjust", str(CREDITS), "--reason", "container test"
        )

        # Alice's phone registers with the containerised Asterisk and answers one call.
        workdir = tmp_path / "sipp"
        port = free_port()
        register = await run_sipp(
            workdir,
            "register-alice",
            render("register.xml", expires=600, contact_port=port),
            service=extension,
            auth=(extension, password),
            local_port=port,
            timeout_s=10,
            pbx=stack.sip,
        )
        result = await register.wait(15)
        assert result.ok, result.explain()
        phone = await run_sipp(
            workdir,
            "phone-alice",
            render("phone_answer.xml", ring_ms=300, after_ack=WAIT_FOR_BYE.format(ms=30000)),
            server=True,
            local_port=port,
            timeout_s=60,
        )
        sipps.append(phone)

        # The carrier calls the number; the caller hangs up after 3 s of talk.
        carrier = await run_sipp(
            workdir,
            "carrier",
            render(
                "carrier.xml",
                caller=CALLER,
                final=CARRIER_ANSWERED.format(after_ack=HANG_UP_AFTER.format(ms=3000)),
            ),
            service=ROUTED,
            local_port=free_port(),
            timeout_s=40,
            pbx=stack.sip,
        )
        sipps.append(carrier)
        result = await carrier.wait(45)
        assert result.ok, result.explain()
        assert (await phone.wait(15)).ok

        call_id = (await log.wait_for(RELEASED, timeout=30))["call_id"]
        db = Database.from_url(stack.db_url)
        try:
            record = await CallStore(db).get(call_id)
            assert record is not None, f"no record of call {call_id} in the stack's database"
            assert record.disposition == "answered", record
            assert record.answered_at is not None and record.charge_state == "settled", record
            assert record.user_name == name and record.number_e164 == ROUTED, record
            assert record.cost_micro is not None and record.cost_micro > 0, record
            state = await Wallet(db).balance()
            assert (state.balance, state.held) == (CREDITS * MICRO - record.cost_micro, 0)
        finally:
            await db.dispose()
        audit = await _exec("app", "callcontrol", "credits", "audit")
        assert "wallet audit: clean" in audit, audit
        print(f"call {call_id} charged {record.cost_micro} micro-credits; audit clean")
    finally:
        for sipp in sipps:
            sipp.kill()
            await sipp.wait(5)
        await log.close()
