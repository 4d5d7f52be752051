"""The Asterisk image's entrypoint refuses values that would inject configuration.

It writes pjsip_local.conf and ari_user.conf from the environment, as `pbx up` does
from the settings; every refusal here happens before anything is written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "asterisk-entrypoint.sh"


def run(**env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "CALLCONTROL_ARI_PASSWORD": "s3cret-pw"}
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
