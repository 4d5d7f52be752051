"""The edges: generated credentials, loopback binds, the SIP ACL, TLS files, fail2ban.

What the real PBX does with these files is in tests/pbx/test_sip_security.py; here, what is
generated and refused, and that each listener of the app binds loopback by default.
"""

from __future__ import annotations

import configparser
import re
import socket
import ssl
import stat
from pathlib import Path

import pytest
from aiohttp import ClientError, ClientSession, TCPConnector, web
from cli_helpers import Run
from fail2ban_filter import FILTER, banned_host

from callcontrol.config import (
    KNOWN_DEFAULT_PASSWORDS,
    Settings,
    is_loopback,
    load_settings,
)
from callcontrol.domain.directory import User
from callcontrol.domain.users import sip_digests
from callcontrol.errors import ConfigError, PbxError
from callcontrol.hardening import (
    published_password_users,
    refuse_published_passwords,
    sip_reachable,
)
from callcontrol.pbx.devpbx import (
    ari_user_conf,
    ensure_ari_secret,
    http_local_conf,
    pjsip_local_conf,
)
from callcontrol.tls import server_context, write_self_signed
from callcontrol.web.console.app import ConsoleServer
from callcontrol.web.media import MediaServer

REPO = Path(__file__).resolve().parents[2]
JAIL = REPO / "contrib" / "fail2ban" / "jail.d" / "callcontrol-asterisk.conf"


def error_of(**overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- credentials: generated, never a default ----------------------------------------------------


@pytest.mark.parametrize("password", ["asterisk", "Asterisk", "changeme", "secret", "123456"])
def test_a_known_default_ari_password_is_refused(password: str) -> None:
    message = error_of(ari_password=password)
    assert "setting 'ari_password'" in message and "well-known default" in message
    assert password not in message.replace("ari_password", "")  # never echoed


def test_the_ari_user_name_as_password_and_a_short_one_are_refused() -> None:
    assert "well-known default" in error_of(ari_username="pbx-app", ari_password="PBX-app")
    assert "shorter than 12" in error_of(ari_password="Zq9-short")


def test_a_default_in_the_secret_file_is_refused_by_the_app_and_by_pbx_up(tmp_path: Path) -> None:
    (tmp_path / "ari.secret").write_text("asterisk\n")
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="well-known default"):
        _ = settings.effective_ari_password  # what serve and every command use
    with pytest.raises(PbxError, match="delete the file"):
        ensure_ari_secret(settings)  # what `pbx up` uses


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ari.secret").write_text("\n")
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="empty"):
        _ = settings.effective_ari_password
    with pytest.raises(PbxError, match="is empty"):
        ensure_ari_secret(settings)


@pytest.mark.parametrize("secret", ["asterisk", "callcontrol", "", "Zq9-short"])
def test_pbx_up_never_writes_a_default_or_empty_ari_password(secret: str) -> None:
    with pytest.raises(PbxError, match="refusing to write the ARI password"):
        ari_user_conf(load_settings(environ={}), secret)


def test_pbx_up_generates_the_ari_password_once_readable_only_by_its_owner(
    tmp_path: Path,
) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    first = ensure_ari_secret(settings)
    assert len(first) >= 32 and first.lower() not in KNOWN_DEFAULT_PASSWORDS
    assert stat.S_IMODE(settings.ari_secret_file.stat().st_mode) == 0o600
    assert ensure_ari_secret(settings) == first  # kept, not regenerated
    assert settings.effective_ari_password == first


def test_the_demo_users_passwords_are_generated_per_installation(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLCONTROL_FLOWS_DIR", str(REPO / "ivr_flows"))
    seeded = run("demo", "seed")
    assert seeded.code == 0, seeded.err
    stored = tmp_path / "demo-passwords"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    passwords = dict(line.split(" ", 1) for line in stored.read_text().splitlines())
    assert set(passwords) == {"alice", "bob"}
    for password in passwords.values():
        assert password.lower() not in KNOWN_DEFAULT_PASSWORDS  # not the once-published ones
        assert len(password) >= 16
        assert password in seeded.out  # printed once for the operator
    assert passwords["alice"] != passwords["bob"]
    run("demo", "seed", "--force")  # idempotent: existing users keep their password
    again = dict(line.split(" ", 1) for line in stored.read_text().splitlines())
    assert again == passwords


# ---- binds: loopback unless configured ----------------------------------------------------------


def test_every_listen_and_bind_setting_defaults_to_loopback() -> None:
    defaults = load_settings(environ={})
    listeners = {
        name: getattr(defaults, name)
        for name in Settings.model_fields
        if name.endswith(("_listen", "_bind"))
    }
    # the ones there are today; a new listener is checked by the same rule
    assert {"sip_bind", "sip_tls_bind", "ari_bind", "media_listen", "console_listen"} <= set(
        listeners
    )
    for name, value in listeners.items():
        assert is_loopback(value), f"{name} defaults to {value}, not loopback"
    assert defaults.ari_url.startswith("http://127.0.0.1:")


def test_the_generated_asterisk_files_bind_loopback_by_default() -> None:
    settings = load_settings(environ={}, overrides={"sip_tls": True})
    assert http_local_conf(settings).splitlines()[1:] == ["bindaddr = 127.0.0.1", "bindport = 8088"]
    binds = re.findall(r"^bind = (.+)$", pjsip_local_conf(settings), re.M)
    assert binds == ["127.0.0.1:5060", "127.0.0.1:5061"]
    shipped = (REPO / "dialplan" / "http.conf").read_text()
    assert "bindaddr = 127.0.0.1" in shipped  # also without http_local.conf (docker/)


def test_another_address_only_by_an_explicit_setting() -> None:
    settings = load_settings(
        environ={}, overrides={"ari_bind": "192.0.2.10:8088", "sip_bind": "0.0.0.0:5060"}
    )
    assert "bindaddr = 192.0.2.10" in http_local_conf(settings)
    assert "bind = 0.0.0.0:5060" in pjsip_local_conf(settings)
    assert "setting 'ari_bind'" in error_of(ari_bind="pbx.example:8088")  # an address only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_host(setting: str) -> str:
    return str(getattr(load_settings(environ={}), setting)).rpartition(":")[0]


async def test_the_media_and_webhook_server_binds_loopback_by_default(tmp_path: Path) -> None:
    server = MediaServer(f"{default_host('media_listen')}:{free_port()}", tmp_path, tmp_path)
    await server.start()
    try:
        assert server.bound and all(addr == "127.0.0.1" for addr, _ in server.bound)
    finally:
        await server.stop()


async def test_the_console_binds_loopback_by_default() -> None:
    server = ConsoleServer(f"{default_host('console_listen')}:{free_port()}", web.Application())
    await server.start()
    try:
        assert server.bound and all(addr == "127.0.0.1" for addr, _ in server.bound)
        assert server.url.startswith("http://127.0.0.1:")
    finally:
        await server.stop()


# ---- the SIP ACL --------------------------------------------------------------------------------


def acl_of(conf: str) -> list[str]:
    section = conf.split("[callcontrol-sources]", 1)[1]
    return re.findall(r"^((?:permit|deny) = .+)$", section, re.M)


def test_the_sip_acl_denies_everyone_but_the_permitted_networks_and_the_carrier() -> None:
    settings = load_settings(
        environ={},
        overrides={"sip_permit": "192.168.10.0/24, 10.1.2.3", "carrier_ips": "203.0.113.10"},
    )
    assert acl_of(pjsip_local_conf(settings)) == [
        "deny = 0.0.0.0/0.0.0.0",
        "deny = ::/0",
        "permit = 192.168.10.0/24",
        "permit = 10.1.2.3",
        "permit = 203.0.113.10",
    ]
    assert acl_of(pjsip_local_conf(load_settings(environ={})))[2:] == [
        "permit = 127.0.0.0/8",
        "permit = 127.0.0.1",
    ]
    assert "setting 'sip_permit'" in error_of(sip_permit="lan")
    modules = (REPO / "dialplan" / "modules.conf").read_text()
    assert "load => res_pjsip_acl.so" in modules and "load => res_security_log.so" in modules


# ---- TLS ----------------------------------------------------------------------------------------


def test_a_self_signed_certificate_serves_its_names(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "c.crt", tmp_path / "tls" / "c.key"
    write_self_signed(cert, key, ["localhost", "127.0.0.1", "pbx.example"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server = server_context(cert, key, "test")
    client = ssl.create_default_context(cafile=cert)
    for name in ("localhost", "127.0.0.1", "pbx.example"):
        assert _handshake(server, client, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "other.example")


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> bool:
    """A TLS handshake in memory: ``client`` verifying ``server`` for ``name``."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    done = {"s": False, "c": False}
    for _ in range(10):
        for key, side in (("c", c), ("s", s)):
            if not done[key]:
                try:
                    side.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return True
    return False


def test_bad_tls_files_are_one_line_errors_that_name_the_settings(tmp_path: Path) -> None:
    cert, key = tmp_path / "a.crt", tmp_path / "a.key"
    write_self_signed(cert, key, ["localhost"])
    other_cert, other_key = tmp_path / "b.crt", tmp_path / "b.key"
    write_self_signed(other_cert, other_key, ["localhost"])
    what = "settings console_tls_cert, console_tls_key"
    with pytest.raises(ConfigError, match="does not exist") as missing:
        server_context(tmp_path / "none.crt", key, what)
    with pytest.raises(ConfigError, match="not a PEM certificate and its key") as mismatch:
        server_context(cert, other_key, what)
    for info in (missing, mismatch):
        assert what in str(info.value) and "\n" not in str(info.value)
    assert "set together" in error_of(console_tls_cert=str(cert))


def test_tls_self_signed_command(run: Run, tmp_path: Path) -> None:
    made = run("tls", "self-signed", "--name", "console.example")
    assert made.code == 0, made.err
    cert, key = tmp_path / "tls" / "console.crt", tmp_path / "tls" / "console.key"
    assert f'console_tls_cert = "{cert}"' in made.out
    assert server_context(cert, key, "test")
    again = run("tls", "self-signed")
    assert again.code == 1 and "--force" in again.err  # never overwritten silently
    assert run("tls", "self-signed", "--force").code == 0


async def test_the_console_speaks_https_with_its_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    write_self_signed(cert, key, ["127.0.0.1"])
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"secure={request.secure}")

    app.router.add_get("/", hello)
    server = ConsoleServer(f"127.0.0.1:{free_port()}", app, server_context(cert, key, "t"))
    await server.start()
    try:
        assert server.url.startswith("https://")
        trust = ssl.create_default_context(cafile=cert)
        async with ClientSession(connector=TCPConnector(ssl=trust)) as http:
            async with http.get(server.url) as resp:
                assert await resp.text() == "secure=True"
            with pytest.raises(ClientError):  # plain HTTP is not served
                async with http.get(server.url.replace("https", "http"), ssl=False) as resp:
                    await resp.read()
    finally:
        await server.stop()


# ---- fail2ban -----------------------------------------------------------------------------------

# Lines Asterisk 22.10 wrote on this project's PBX (logger.conf's dateformat)
CHALLENGE_FAILED = (
    '[2026-11-27 20:07:17.774] SECURITY[30222] res_security_log.c: SecurityEvent="Challenge'
    'ResponseFailed",EventTV="2026-11-27T20:07:17.774+0000",Severity="Error",Service="PJSIP",'
    'EventVersion="1",AccountID="1001",SessionID="1-30272@127.0.0.2",LocalAddress="IPV4/UDP/'
    '127.0.0.1/5060",RemoteAddress="IPV4/UDP/192.0.2.7/5199",Challenge="1795810037/2e0cd3bf",'
    'Response="c328226382eb31436dd26b75b12d94fd",ExpectedResponse=""'
)
CHALLENGE_SENT = CHALLENGE_FAILED.replace("ChallengeResponseFailed", "ChallengeSent")
ACL_REFUSED = (
    "[2026-11-27 20:07:17.774] WARNING[9445] res_pjsip_acl.c: Incoming SIP message from "
    "198.51.100.9:5199 did not pass ACL test"
)


def test_the_fail2ban_filter_counts_failures_and_not_challenges() -> None:
    assert banned_host(CHALLENGE_FAILED) == "192.0.2.7"
    assert banned_host(CHALLENGE_FAILED.replace("IPV4/UDP", "IPV4/TLS")) == "192.0.2.7"
    assert banned_host(CHALLENGE_FAILED.replace("ChallengeResponseFailed", "InvalidAccountID"))
    assert banned_host(ACL_REFUSED) == "198.51.100.9"
    assert banned_host(CHALLENGE_SENT) is None
    assert (
        banned_host(CHALLENGE_FAILED.replace("ChallengeResponseFailed", "SuccessfulAuth")) is None
    )


def test_the_fail2ban_jail_uses_the_filter_and_reads_the_security_log() -> None:
    jail = configparser.ConfigParser(interpolation=None)
    jail.read(JAIL)
    section = jail["callcontrol-asterisk"]
    assert section["filter"] == FILTER.stem
    assert "security.log" in section["logpath"] and "messages.log" in section["logpath"]
    assert "127.0.0.1" in section["ignoreip"]


# ---- published passwords: refused at start where SIP is reachable ------------------------------


def user_with(password: str, name: str = "alice", extension: str = "1001") -> User:
    digests = sip_digests(extension, "callcontrol", password)
    return User(1, name, extension, digests.md5, digests.sha256, "callcontrol")


def test_users_with_a_once_published_password_are_found() -> None:
    users = [user_with("wonderland-7291"), user_with("builder-5813-x", "bob", "1002")]
    assert published_password_users(users) == ["alice", "bob"]
    assert published_password_users([user_with("a-fresh-Passw0rd-77")]) == []


def test_serve_refuses_a_published_password_when_sip_is_reachable(run: Run) -> None:
    added = run("users", "add", "alice", "--extension", "1001", "--password", "wonderland-7291")
    assert added.code == 0, added.err
    refused = run("--set", "sip_bind=0.0.0.0:5060", "serve")
    assert refused.code == 1
    assert "published" in refused.err and "set-password alice" in refused.err
    assert "wonderland-7291" not in refused.err


def test_on_loopback_a_published_password_is_only_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(environ={})
    assert not sip_reachable(settings)
    with caplog.at_level("WARNING"):
        refuse_published_passwords(settings, [user_with("wonderland-7291")])
    assert "published demo password" in caplog.text
    assert sip_reachable(load_settings(environ={}, overrides={"ari_url": "http://10.0.0.5:8088"}))
    assert sip_reachable(
        load_settings(environ={}, overrides={"sip_tls": True, "sip_tls_bind": "0.0.0.0:5061"})
    )


def test_serve_and_pbx_up_refuse_a_default_ari_password_with_one_line(run: Run) -> None:
    for argv in (("serve",), ("pbx", "status")):
        refused = run("--set", "ari_password=asterisk", *argv)
        assert refused.code == 1
        assert refused.err.startswith("error: setting 'ari_password': is a well-known default")
        assert refused.err.count("\n") == 1
