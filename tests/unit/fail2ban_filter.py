"""The project's fail2ban filter read as fail2ban reads it, for the tests (unit and PBX):
which address a log line counts a failure against. Where fail2ban itself is installed,
the PBX test also runs ``fail2ban-regex`` on the same lines."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "contrib" / "fail2ban" / "filter.d" / "callcontrol-asterisk.conf"

# fail2ban's <HOST> (IPv4 or IPv6, optionally bracketed), as fail2ban expands it
HOST = (
    r"(?:\[?(?:(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})|"
    r"(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)))\]?)"
)


def filter_regexes(path: Path = FILTER) -> tuple[list[re.Pattern[str]], re.Pattern[str]]:
    """The filter's failregexes with <HOST> substituted, and its date pattern, as fail2ban
    reads them (``%(name)s`` interpolation, ``%%`` for a percent sign)."""
    parser = configparser.ConfigParser()
    parser.read(path)
    section = parser["Definition"]
    regexes = [
        re.compile(line.strip().replace("<HOST>", HOST))
        for line in section["failregex"].splitlines()
        if line.strip()
    ]
    date = (
        section["datepattern"]
        .replace("%Y", r"\d{4}")
        .replace("%m", r"\d{2}")
        .replace("%d", r"\d{2}")
        .replace("%H", r"\d{2}")
        .replace("%M", r"\d{2}")
        .replace("%S", r"\d{2}")
        .replace("%f", r"\d+")
    )
    return regexes, re.compile(date)


def banned_host(line: str) -> str | None:
    """The address fail2ban would count a failure against, or None."""
    regexes, date = filter_regexes()
    found = date.search(line)
    if not found:
        return None
    rest = line[: found.start()] + line[found.end() :]
    for regex in regexes:
        match = regex.search(rest)
        if match:
            return match["ip4"] or match["ip6"]
    return None
