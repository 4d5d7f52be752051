"""The images' entrypoints refuse values that would inject configuration or SQL.

The Asterisk one writes pjsip_local.conf and ari_user.conf from the environment, as
`pbx up` does from the settings, and sets the ports of http.conf, rtp.conf and
manager.conf and the carrier's contact; the PostgreSQL one puts the password into SQL.
Every refusal here happens before anything is written. That the accepted values work
is tests/containers' part (a call through the running stack).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ENTRYPOINT = DOCKER / "asterisk-entrypoint.sh"
POSTGRES_ENTRYPOINT = DOCKER / "postgres-entrypoint.sh"


def run(**env: str) -> subprocess.CompletedProcess[str]:
    # A value wrongly let through fails at the first file to edit, in a directory that
    # does not exist, not in this host's /etc/asterisk.
    base = {
        "PATH": os.environ["PATH"],
        "CALLCONTROL_ARI_PASSWORD": "s3cret-pw",
        "ASTERISK_ETC": "/nonexistent/etc/asterisk",
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLCONTROL_SIP_BIND", "0.0.0.0:5060\n[evil]\ntype = endpoint"),
        ("CALLCONTROL_SIP_BIND", "0.0.0.0:5060;x"),
        ("CALLCONTROL_CARRIER_IPS", "127.0.0.1\n[evil]"),
        ("CALLCONTROL_CARRIER_IPS", "127.0.0.1,host.example"),
        ("CALLCONTROL_ARI_PASSWORD", "pw\n[admin]"),
        ("CALLCONTROL_ARI_USERNAME", "callcontrol]\n[x"),
        ("CALLCONTROL_ARI_USERNAME", "a:b"),
        ("CALLCONTROL_ARI_BIND", "127.0.0.1:8088\n[evil]"),
        ("CALLCONTROL_ARI_BIND", "127.0.0.1:http"),
        ("CALLCONTROL_ARI_BIND", "127.0.0.1"),
        ("CALLCONTROL_AMI_BIND", "127.0.0.1:5038|x"),
        ("CALLCONTROL_RTP_PORTS", "20000-10000"),
        ("CALLCONTROL_RTP_PORTS", "10000-20000;x"),
        ("CALLCONTROL_RTP_PORTS", "10000-70000"),
        ("CALLCONTROL_CARRIER_CONTACT", "sip:127.0.0.1:5070\n[evil]"),
        ("CALLCONTROL_CARRIER_CONTACT", "sip:127.0.0.1|x"),
        ("CALLCONTROL_CARRIER_CONTACT", "http://127.0.0.1"),
        ("CALLCONTROL_COUNTRY", "gb"),
        ("CALLCONTROL_COUNTRY", "GB\n[evil]"),
        ("CALLCONTROL_COUNTRY", "../../etc/x"),
    ],
)
def test_values_that_could_inject_configuration_are_refused(name: str, value: str) -> None:
    result = run(**{name: value})
    assert result.returncode == 64, result.stderr
    assert name.removeprefix("CALLCONTROL_").split("_")[0] in result.stderr


def test_no_ari_password_is_refused() -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode != 0 and "CALLCONTROL_ARI_PASSWORD" in result.stderr


def run_postgres(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(POSTGRES_ENTRYPOINT)],
        env={"PATH": os.environ["PATH"], "PGDATA": "/nonexistent", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTGRES_PASSWORD", "x'; DROP ROLE postgres; --"),
        ("POSTGRES_PASSWORD", "short-pw"),
        ("POSTGRES_PASSWORD", "with space in it 123"),
        ("POSTGRES_USER", 'callcontrol" SUPERUSER'),
        ("POSTGRES_DB", "Callcontrol"),
        ("POSTGRES_PORT", "5432; x"),
        ("POSTGRES_LISTEN", "127.0.0.1 -c x=y"),
    ],
)
def test_postgres_values_that_could_inject_sql_or_options_are_refused(
    name: str, value: str
) -> None:
    result = run_postgres(**{"POSTGRES_PASSWORD": "0123456789abcdef", name: value})
    assert result.returncode == 64, result.stderr
    assert name.removeprefix("POSTGRES_").split("/")[0] in result.stderr


def test_postgres_without_a_password_is_refused() -> None:
    result = run_postgres()
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr
