"""The PBX's health as AMI reports it: uptime, last reload, channels and calls,
endpoints and how many have a registered contact (``callcontrol pbx status``).

The parsing takes plain header mappings (what panoramisk's ``Message`` is), so the unit
tests feed it the headers Asterisk 22 sends without a PBX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from callcontrol.ami.client import AmiSession
from callcontrol.errors import AmiError


@dataclass(frozen=True)
class PbxHealth:
    started_at: datetime | None
    reloaded_at: datetime | None
    current_calls: int
    channels: int
    endpoints: int
    registered: int

    def describe(self, now: datetime) -> str:
        parts = []
        if self.started_at is not None:
            parts.append(f"up {_span(now - self.started_at)}")
        if self.reloaded_at is not None:
            parts.append(f"reloaded {_span(now - self.reloaded_at)} ago")
        parts += [
            f"{self.current_calls} calls",
            f"{self.channels} channels",
            f"{self.registered} of {self.endpoints} endpoints registered",
        ]
        return "AMI: " + ", ".join(parts)


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def core_time(status: Mapping[str, str], prefix: str) -> datetime | None:
    """``CoreStartupDate``/``CoreStartupTime`` (or ``CoreReload...``) as UTC: Asterisk
    writes them in its own local time zone; the development PBX's root has none (UTC)."""
    day, clock = status.get(f"{prefix}Date", ""), status.get(f"{prefix}Time", "")
    try:
        return datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def registered_endpoints(contacts: Sequence[Mapping[str, str]]) -> set[str]:
    """Endpoints with at least one registered contact. ``PJSIPShowContacts`` (Asterisk
    22) lists the contacts that registered, each with its ``Endpoint`` and
    ``ExpirationTime``; a permanent one (expiry 0, from configuration) does not count."""
    names: set[str] = set()
    for contact in contacts:
        if contact.get("ExpirationTime", "0") in ("", "0"):
            continue
        endpoint = contact.get("Endpoint", "")
        if endpoint:
            names.add(endpoint)
    return names


def health_from(
    status: Mapping[str, str],
    channels: Sequence[Mapping[str, str]],
    endpoints: Sequence[Mapping[str, str]],
    contacts: Sequence[Mapping[str, str]],
) -> PbxHealth:
    try:
        calls = int(status.get("CoreCurrentCalls", "0"))
    except ValueError:
        calls = 0
    names = {e.get("ObjectName", "") for e in endpoints} - {""}
    return PbxHealth(
        started_at=core_time(status, "CoreStartup"),
        reloaded_at=core_time(status, "CoreReload"),
        current_calls=calls,
        channels=len(channels),
        endpoints=len(names),
        registered=len(registered_endpoints(contacts) & names),
    )


async def pbx_health(session: AmiSession) -> PbxHealth:
    """Ask the PBX: CoreStatus, CoreShowChannels, PJSIPShowEndpoints, PJSIPShowContacts."""
    status = await session.request({"Action": "CoreStatus"})
    first = status[0] if isinstance(status, list) else status
    if not first.success:
        raise AmiError(f"AMI CoreStatus refused: {first.get('Message', '')}")
    return health_from(
        first,
        await session.listing({"Action": "CoreShowChannels"}),
        await session.listing({"Action": "PJSIPShowEndpoints"}),
        await session.listing({"Action": "PJSIPShowContacts"}),
    )


async def ask_pbx_health(
    host: str, port: int, username: str, secret: str, limit: float = 5.0
) -> PbxHealth:
    """Log in, ask, log out: one short AMI session (AmiUnavailable, AmiLoginRefused)."""
    session = await AmiSession.open(host, port, username, secret, timeout=limit)
    try:
        return await pbx_health(session)
    finally:
        session.close()
