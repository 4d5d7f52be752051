"""Small parts of the console: settings, vendored files, formatting, the login throttle."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from callcontrol.config import load_settings
from callcontrol.errors import ConfigError
from callcontrol.web.console.render import credits, duration
from callcontrol.web.console.throttle import LoginThrottle

STATIC = Path(__file__).resolve().parents[2] / "callcontrol" / "web" / "console" / "static"


def test_console_listen_is_a_host_and_port() -> None:
    assert load_settings(environ={}).console_listen == "127.0.0.1:8080"
    assert load_settings(environ={}, overrides={"console_listen": "0.0.0.0:80"}).console_listen
    for bad in ("8080", "localhost:http", "a b:1", ":8080"):
        with pytest.raises(ConfigError, match="setting 'console_listen'"):
            load_settings(environ={}, overrides={"console_listen": bad})


def test_vendored_files_match_their_recorded_sha256() -> None:
    table = (STATIC / "VENDORED.md").read_text()
    rows = re.findall(r"^\| (\S+\.js) \| .* \| ([0-9a-f]{64}) \|$", table, re.MULTILINE)
    assert {name for name, _ in rows} == {p.name for p in STATIC.glob("htmx*.js")}
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(
    ("micro", "shown"),
    [
        (20_000_000, "20.00"),
        (37_500, "0.0375"),
        (-1_500_000, "-1.50"),
        (1, "0.000001"),
        (None, "-"),
    ],
)
def test_credits_are_shown_exactly(micro: int | None, shown: str) -> None:
    assert credits(micro) == shown


def test_durations() -> None:
    assert [duration(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]


def test_the_throttle_opens_again_after_its_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window=60, clock=lambda: now[0])
    throttle.failed("10.0.0.1", "admin")
    assert throttle.retry_after("10.0.0.1", "admin") == 0
    throttle.failed("10.0.0.2", "admin")  # another address, the same name
    assert throttle.retry_after("10.0.0.3", "Admin") > 0
    now[0] = 61.0
    assert throttle.retry_after("10.0.0.3", "admin") == 0
    throttle.failed("10.0.0.1", "x")
    throttle.failed("10.0.0.1", "y")
    assert throttle.retry_after("10.0.0.1", "z") > 0
    throttle.succeeded("10.0.0.1", "z")
    assert throttle.retry_after("10.0.0.1", "z") == 0
