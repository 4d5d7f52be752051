"""The edges on the real Asterisk: loopback binds, a wrong password logged for fail2ban,
the source-address ACL (403), SIP over TLS, and the console over HTTPS from `serve`.

The ACL and TLS tests re-install the PBX's configuration with their settings (`pbx up`
on the running Asterisk: the generated files and a reload) and put the session's back
afterwards. Debian's sipp is built without OpenSSL (`sipp -t l1` refuses), so for TLS
sipp speaks TCP to a small bridge in this test that opens a verified TLS connection to
Asterisk's TLS transport: the SIP exchange (REGISTER, digest) is sipp's, the TLS is
Python's, checked against the self-signed certificate `pbx up` generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, TCPConnector
from pbx_harness import USERS, AppProcess, Org, free_tcp_port

from callcontrol.config import Settings, load_settings
from callcontrol.pbx.devpbx import DevPbx
from callcontrol.pbx.sipp import SippResult, free_port, run_sipp
from callcontrol.tls import write_self_signed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fail2ban_filter import FILTER, banned_host

pytestmark = pytest.mark.pbx

LOGS = Path("/var/log/asterisk")

# A REGISTER that expects to be refused: a 401 challenge, then (with wrong credentials)
# 401 again or 403; or a 403 at once (the ACL). sipp's exit status says which came.
REFUSED_REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register refused">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Expires: 60
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="403" optional="true" next="forbidden"/>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Expires: 60
      [authentication]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="403" optional="true" next="forbidden"/>
  <recv response="401"/>
  <label id="forbidden"/>
</scenario>
"""

# The same REGISTER, accepted: 401, then 200 with the right credentials.
ACCEPTED_REGISTER = REFUSED_REGISTER.replace(
    '<recv response="403" optional="true" next="forbidden"/>\n  <recv response="401"/>',
    '<recv response="200"/>',
)


def root_log(pbx: Settings, name: str) -> Path:
    """An Asterisk log file as this host sees it (the chroot's, or the host's)."""
    pbx_ = DevPbx(pbx)
    return (pbx_.root if pbx_.mode == "chroot" else Path("/")) / LOGS.relative_to("/") / name


async def log_line(path: Path, pattern: str, *, timeout: float = 10) -> str:
    """The first line of an Asterisk log that matches ``pattern``, once Asterisk wrote it.
    Its logger thread writes after the SIP answer, and no event tells: poll the file."""
    regex = re.compile(pattern)
    try:
        async with asyncio.timeout(timeout):
            while True:
                text = path.read_text(errors="replace") if path.exists() else ""
                for line in text.splitlines():
                    if regex.search(line):
                        return line
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no line {pattern!r} in {path} after {timeout} s") from None


def fail2ban_regex_matches(tmp_path: Path, line: str) -> None:
    """Where fail2ban is installed, its own fail2ban-regex must match the line too."""
    tool = shutil.which("fail2ban-regex")
    if tool is None:
        return  # banned_host() read the filter as fail2ban does; see fail2ban_filter.py
    sample = tmp_path / "sample.log"
    sample.write_text(line + "\n")
    out = subprocess.run(
        [tool, str(sample), str(FILTER)], check=False, capture_output=True, text=True
    )
    assert "1 matched" in out.stdout, out.stdout + out.stderr


async def register(
    tmp_path: Path,
    user: str,
    password: str,
    *,
    scenario: str,
    local_ip: str = "127.0.0.1",
    pbx_address: str = "127.0.0.1:5060",
    transport: str = "u1",
) -> tuple[SippResult, int]:
    """One REGISTER exchange as ``user`` (a name of USERS, or an extension); sipp's result
    and its local port."""
    port = free_port()
    ext = USERS[user][0] if user in USERS else user
    sipp = await run_sipp(
        tmp_path / "sipp",
        f"register-{user}-{port}",
        scenario,
        service=ext,
        auth=(ext, password),
        local_port=port,
        local_ip=local_ip,
        pbx=pbx_address,
        transport=transport,
        timeout_s=10,
    )
    return await sipp.wait(15), port


@contextlib.contextmanager
def reconfigured(pbx: Settings, **overrides: object) -> Iterator[Settings]:
    """The running PBX with other settings (`pbx up` = install + reload), then the
    session's configuration again."""
    changed = load_settings(
        environ={}, overrides={**pbx.model_dump(exclude_none=True), **overrides}
    )
    DevPbx(changed).up()
    try:
        yield changed
    finally:
        DevPbx(pbx).up()


def test_asterisk_listens_on_loopback_by_default(pbx: Settings) -> None:
    asterisk = DevPbx(pbx)
    assert "Bound to 127.0.0.1:8088" in asterisk.cli("http show status")
    binds = re.findall(
        r"^Transport:\s+\S+\s+\w+\s+\d+\s+\d+\s+(\S+)", asterisk.cli("pjsip show transports"), re.M
    )
    assert "127.0.0.1:5060" in binds
    assert all(bind.startswith("127.0.0.1:") for bind in binds), binds


async def test_a_wrong_password_is_logged_for_fail2ban(
    pbx: Settings, app: AppProcess, tmp_path: Path
) -> None:
    result, port = await register(
        tmp_path, "alice", "not-alices-password", scenario=REFUSED_REGISTER
    )
    assert result.ok, result.explain()
    assert result.received() == ["SIP/2.0 401 Unauthorized", "SIP/2.0 401 Unauthorized"]
    line = await log_line(
        root_log(pbx, "security.log"),
        rf'SecurityEvent="ChallengeResponseFailed".*RemoteAddress="IPV4/UDP/127\.0\.0\.1/{port}"',
    )
    assert 'AccountID="1001"' in line
    assert banned_host(line) == "127.0.0.1"
    fail2ban_regex_matches(tmp_path, line)
    # an account that does not exist, from an address that is not the carrier's
    unknown, unknown_port = await register(
        tmp_path, "9999", "guessing-Passw0rd", scenario=REFUSED_REGISTER, local_ip="127.0.0.2"
    )
    assert unknown.ok, unknown.explain()
    line = await log_line(
        root_log(pbx, "security.log"),
        rf'SecurityEvent="InvalidAccountID".*RemoteAddress="IPV4/UDP/127\.0\.0\.2/{unknown_port}"',
    )
    assert banned_host(line) == "127.0.0.2"
    fail2ban_regex_matches(tmp_path, line)
    # the right password is not counted against anyone
    ok, ok_port = await register(tmp_path, "alice", USERS["alice"][1], scenario=ACCEPTED_REGISTER)
    assert ok.ok, ok.explain()
    good = await log_line(
        root_log(pbx, "security.log"),
        rf'SecurityEvent="SuccessfulAuth".*RemoteAddress="IPV4/UDP/127\.0\.0\.1/{ok_port}"',
    )
    assert banned_host(good) is None


async def test_a_source_outside_sip_permit_gets_403(
    pbx: Settings, app: AppProcess, tmp_path: Path
) -> None:
    with reconfigured(pbx, sip_permit="127.0.0.1/32", carrier_ips="127.0.0.1"):
        denied, port = await register(
            tmp_path, "alice", USERS["alice"][1], scenario=REFUSED_REGISTER, local_ip="127.0.0.2"
        )
        assert denied.ok, denied.explain()
        assert denied.received() == ["SIP/2.0 403 Forbidden"]  # before any challenge
        line = await log_line(
            root_log(pbx, "messages.log"),
            rf"Incoming SIP message from 127\.0\.0\.2:{port} did not pass ACL test",
        )
        assert banned_host(line) == "127.0.0.2"
        fail2ban_regex_matches(tmp_path, line)
        allowed, _ = await register(
            tmp_path, "alice", USERS["alice"][1], scenario=ACCEPTED_REGISTER
        )
        assert allowed.ok, allowed.explain()


@contextlib.asynccontextmanager
async def tls_bridge(target: tuple[str, int], trust: Path) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP port whose connections are carried over TLS to ``target``, verifying its
    certificate against ``trust``; yields the port and the bridge's TLS source ports."""
    context = ssl.create_default_context(cafile=trust)
    sources: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            *target, ssl=context, server_hostname=target[0]
        )
        sources.append(up_writer.get_extra_info("sockname")[1])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], sources
    finally:
        server.close()
        await server.wait_closed()


async def test_sip_over_tls_with_a_self_signed_certificate(
    pbx: Settings, app: AppProcess, tmp_path: Path
) -> None:
    with reconfigured(pbx, sip_tls=True) as tls:
        cert = tls.sip_tls_files[0]
        assert cert.exists()  # generated by pbx up, into data_dir/tls
        transports = DevPbx(tls).cli("pjsip show transports")
        assert re.search(r"transport-tls\s+tls\s+\d+\s+\d+\s+127\.0\.0\.1:5061", transports)
        async with tls_bridge(("127.0.0.1", 5061), cert) as (port, sources):
            address = f"127.0.0.1:{port}"
            ok, _ = await register(
                tmp_path,
                "alice",
                USERS["alice"][1],
                scenario=ACCEPTED_REGISTER,
                pbx_address=address,
                transport="t1",
            )
            assert ok.ok, ok.explain()
            assert sources, "no TLS connection was made"
            bad, _ = await register(
                tmp_path,
                "alice",
                "not-alices-password",
                scenario=REFUSED_REGISTER,
                pbx_address=address,
                transport="t1",
            )
            assert bad.ok, bad.explain()
        line = await log_line(
            root_log(pbx, "security.log"),
            rf'SecurityEvent="ChallengeResponseFailed".*RemoteAddress="IPV4/TLS/127\.0\.0\.1/'
            rf'{sources[-1]}"',
        )
        assert banned_host(line) == "127.0.0.1"


async def test_serve_offers_the_console_over_https(org: Org, tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "console.crt", tmp_path / "tls" / "console.key"
    write_self_signed(cert, key, ["127.0.0.1"])
    listen = f"127.0.0.1:{free_tcp_port()}"
    process = AppProcess(
        org,
        env={
            "CALLCONTROL_CONSOLE_LISTEN": listen,
            "CALLCONTROL_CONSOLE_TLS_CERT": str(cert),
            "CALLCONTROL_CONSOLE_TLS_KEY": str(key),
        },
    )
    await process.start()
    try:
        await process.wait_log(rf"admin console on https://{re.escape(listen)}/")
        trust = ssl.create_default_context(cafile=cert)
        async with (
            ClientSession(connector=TCPConnector(ssl=trust)) as http,
            http.get(f"https://{listen}/login") as resp,
        ):
            assert resp.status == 200
            assert "<form" in await resp.text()
    finally:
        await process.stop()
