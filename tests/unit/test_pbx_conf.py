"""The Asterisk files `callcontrol pbx up` writes, and their last line of defence.

The settings are checked when read (test_config_values.py); these tests build settings
that skipped the checks (``model_construct``) to show that the writer refuses a value
that could add a line, a section or a comment all the same, and writes nothing then.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from callcontrol.config import Settings, load_settings
from callcontrol.errors import ConfigError, PbxError
from callcontrol.pbx.devpbx import (
    DevPbx,
    PbxStatus,
    ari_user_conf,
    cdr_path,
    ensure_ami_secret,
    manager_local_conf,
    pjsip_local_conf,
)

INJECTION = "\n[evil]\ntype = endpoint"


def unchecked(**values: Any) -> Settings:
    """Settings as if a bad value had got past the checks."""
    return Settings.model_construct(**{**load_settings(environ={}).model_dump(), **values})


def test_pjsip_local_from_the_settings() -> None:
    settings = load_settings(
        environ={},
        overrides={"sip_bind": "0.0.0.0:5070", "carrier_ips": "203.0.113.10, 198.51.100.0/24"},
    )
    assert pjsip_local_conf(settings).splitlines() == [
        "; written by `callcontrol pbx up` from the settings sip_bind, sip_tls*, carrier_ips",
        "; and sip_permit",
        "[transport-udp]",
        "type = transport",
        "protocol = udp",
        "bind = 0.0.0.0:5070",
        "",
        "[carrier]",
        "type = identify",
        "endpoint = carrier",
        "match = 203.0.113.10",
        "match = 198.51.100.0/24",
        "",
        "[callcontrol-sources]",
        "type = acl",
        "deny = 0.0.0.0/0.0.0.0",
        "deny = ::/0",
        "permit = 127.0.0.0/8",
        "permit = 203.0.113.10",
        "permit = 198.51.100.0/24",
    ]


def test_ari_user_from_the_settings() -> None:
    settings = load_settings(environ={}, overrides={"ari_username": "cc-app"})
    assert ari_user_conf(settings, "Zq9_secret-1") == (
        "[cc-app]\ntype = user\nread_only = no\npassword_format = plain\npassword = Zq9_secret-1\n"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sip_bind", "127.0.0.1:5060" + INJECTION),
        ("sip_bind", "127.0.0.1:5060;x"),
        ("carrier_ips", "127.0.0.1" + INJECTION),
        ("carrier_ips", "127.0.0.1,10.0.0.1 ;x"),
        ("carrier_ips", "127.0.0.1,carrier.example"),
    ],
)
def test_pjsip_local_refuses_a_value_that_got_past_the_checks(key: str, value: str) -> None:
    with pytest.raises(PbxError) as info:
        pjsip_local_conf(unchecked(**{key: value}))
    assert key in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["cc]" + INJECTION, "cc;x", "[cc", "c c", "", "cc\x00", "cc:x", "ccé"]
)
def test_ari_user_refuses_a_user_name_that_got_past_the_checks(name: str) -> None:
    with pytest.raises(PbxError, match="ari_username"):
        ari_user_conf(unchecked(ari_username=name), "secret")


@pytest.mark.parametrize("secret", ["Zq9" + INJECTION, "Zq9;x", "Zq9 x", "", "Zq9\r", "Zq9é"])
def test_ari_user_refuses_a_password_that_would_change_the_file(secret: str) -> None:
    with pytest.raises(PbxError) as info:
        ari_user_conf(load_settings(environ={}), secret)
    message = str(info.value)
    assert "ARI password" in message
    assert "ari.secret" in message
    assert "Zq9" not in message  # never echoed


def test_a_tampered_secret_file_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "ari.secret").write_text("Zq9-long-enough ;x\n")
    settings = load_settings(
        environ={},
        overrides={"data_dir": str(data), "pbx_mode": "chroot", "pbx_root": str(tmp_path / "root")},
    )
    with pytest.raises(ConfigError, match=r"ari\.secret"):  # the app refuses it
        _ = settings.effective_ari_password
    pbx = DevPbx(settings)
    with pytest.raises(PbxError, match="ARI password"):  # and so does the writer
        pbx.install_config("Zq9-long-enough ;x", "ami-secret-long-enough")
    assert not (tmp_path / "root").exists()  # refused before copying anything


def test_manager_local_from_the_settings() -> None:
    settings = load_settings(
        environ={},
        overrides={"ami_bind": "10.0.0.5:5039", "ami_permit": "10.0.0.0/24, 127.0.0.1"},
    )
    assert manager_local_conf(settings, "Zq9_secret-1").splitlines()[2:] == [
        "port = 5039",
        "bindaddr = 10.0.0.5",
        "",
        "[callcontrol]",
        "secret = Zq9_secret-1",
        "deny = 0.0.0.0/0.0.0.0",
        "permit = 10.0.0.0/24",
        "permit = 127.0.0.1",
        "read = system,call,reporting",
        "write = system,reporting",
        "eventfilter = Event: Hangup",
    ]


def test_manager_local_binds_loopback_by_default() -> None:
    conf = manager_local_conf(load_settings(environ={}), "Zq9_secret-1")
    assert "port = 5038\nbindaddr = 127.0.0.1\n" in conf
    assert "permit = 127.0.0.1/32\n" in conf


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ami_bind", "127.0.0.1:5038" + INJECTION),
        ("ami_username", "cc]" + INJECTION),
        ("ami_permit", "127.0.0.1 ;x"),
    ],
)
def test_manager_local_refuses_a_value_that_got_past_the_checks(key: str, value: str) -> None:
    with pytest.raises(PbxError) as info:
        manager_local_conf(unchecked(**{key: value}), "secret")
    assert key in str(info.value)


@pytest.mark.parametrize("secret", ["Zq9" + INJECTION, "Zq9;x", "Zq9 x", ""])
def test_manager_local_refuses_a_secret_that_would_change_the_file(secret: str) -> None:
    with pytest.raises(PbxError) as info:
        manager_local_conf(load_settings(environ={}), secret)
    assert "AMI secret" in str(info.value) and "ami.secret" in str(info.value)
    assert "Zq9" not in str(info.value)


def test_the_ami_secret_is_generated_once_private_and_never_a_default(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    secret = ensure_ami_secret(settings)
    path = tmp_path / "var" / "ami.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(secret) >= 32 and ensure_ami_secret(settings) == secret
    assert settings.effective_ami_password == secret
    other = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "other")})
    assert ensure_ami_secret(other) != secret
    configured = load_settings(environ={}, overrides={"ami_password": "set-by-admin"})
    assert ensure_ami_secret(configured) == "set-by-admin"


def test_the_cdr_file_is_in_the_pbx_log_dir_unless_set(tmp_path: Path) -> None:
    chroot = load_settings(
        environ={}, overrides={"pbx_mode": "chroot", "pbx_root": str(tmp_path / "root")}
    )
    assert cdr_path(chroot) == tmp_path / "root/var/log/asterisk/cdr-custom/callcontrol-cdr.csv"
    host = load_settings(environ={}, overrides={"pbx_mode": "host"})
    assert cdr_path(host) == Path("/var/log/asterisk/cdr-custom/callcontrol-cdr.csv")
    assert cdr_path(load_settings(environ={}, overrides={"cdr_file": "/srv/cdr.csv"})) == Path(
        "/srv/cdr.csv"
    )
    assert cdr_path(load_settings(environ={}, overrides={"cdr_file": "none"})) is None


def test_the_cdr_file_name_is_the_one_cdr_custom_conf_writes() -> None:
    conf = (Path(__file__).resolve().parents[2] / "dialplan/cdr_custom.conf").read_text()
    assert "[callcontrol-cdr.csv]" in conf
    fields = next(line for line in conf.splitlines() if line.startswith("fields"))
    assert fields.split("=", 1)[1].split(",")[:3] == [" uniqueid", " linkedid", " channel"]


def test_asterisk_takes_more_http_sessions_than_one_app_opens() -> None:
    """Asterisk closes an HTTP session beyond ``sessionlimit`` at once (the app saw
    "Server disconnected" under overload with the default 100): the shipped limit must
    leave room for a whole ARI pool of several app processes plus their WebSockets."""
    from callcontrol.ari.client import MAX_CONNECTIONS

    http_conf = (Path(__file__).resolve().parents[2] / "dialplan/http.conf").read_text()
    limits = [int(v) for v in re.findall(r"^sessionlimit\s*=\s*(\d+)", http_conf, re.M)]
    assert limits, "dialplan/http.conf sets no sessionlimit (Asterisk's default is 100)"
    assert limits[-1] >= 4 * (MAX_CONNECTIONS + 1)


def test_the_status_line_says_how_many_reloads_slow_the_pbx_down() -> None:
    fresh = PbxStatus(True, "chroot", 42, True, "Asterisk 22.10", "", reloads=0)
    assert fresh.describe() == "PBX running (chroot), pid 42, Asterisk 22.10, ARI answers"
    reloaded = PbxStatus(True, "chroot", 42, True, "Asterisk 22.10", "", reloads=14)
    assert "14 dialplan reloads since start" in reloaded.describe()
    assert "a restart clears them" in reloaded.describe()
