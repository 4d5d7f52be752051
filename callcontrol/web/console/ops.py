"""What an admin does from the console or the API: the CLI's operations, audited.

Every change goes through the same services the CLI uses (``DirectoryService``,
``NumbersService``,
the flow files through ``flowfiles``) and is appended to the audit log with the
admin's name. Pages and the JSON API both call these, so they cannot drift apart.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from callcontrol.directory.service import EndpointUpdate
from callcontrol.domain.admins import Admin
from callcontrol.domain.directory import Number, User
from callcontrol.domain.money import format_credits
from callcontrol.domain.users import check_password
from callcontrol.errors import AriError, ConfigError, InvalidInput, WeakPassword
from callcontrol.ivr.model import Flow
from callcontrol.numbers.service import Purchase, Release
from callcontrol.services import Services
from callcontrol.web.console.flowfiles import FlowFiles

__all__ = ["ConsoleOps", "RouteTarget", "UserChange", "generate_sip_password"]

log = logging.getLogger(__name__)

RegistrationState = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """Where a number's calls go: ``user`` (a name), ``flow`` (a name) or ``none``."""

    kind: Literal["user", "flow", "none"]
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> RouteTarget:
        """``user:alice``, ``flow:main`` or ``none`` (the console's select values)."""
        kind, _, name = text.strip().partition(":")
        if kind == "none" and not name:
            return cls("none")
        if kind in ("user", "flow") and name:
            return cls(kind, name)  # type: ignore[arg-type]  # narrowed by the test above
        raise InvalidInput(f"route target {text!r}: use user:NAME, flow:NAME or none")


@dataclass(frozen=True, slots=True)
class UserChange:
    """A user added or changed: the user, the SIP password if the console made it
    (shown once), and what became of the change in Asterisk."""

    user: User
    password: str | None
    endpoint: EndpointUpdate | None


def generate_sip_password(name: str, extension: str) -> str:
    """A random SIP password that the user rules accept (16 URL-safe characters)."""
    for _ in range(20):
        candidate = secrets.token_urlsafe(12)
        try:
            check_password(candidate, name=name, extension=extension)
        except WeakPassword:
            continue
        return candidate
    raise RuntimeError("could not generate a SIP password")  # pragma: no cover


class ConsoleOps:
    def __init__(self, services: Services, flows: FlowFiles) -> None:
        self.services = services
        self.directory = services.directory
        self.admins = services.admins
        self.flows = flows

    # ---- numbers -------------------------------------------------------------------------

    async def route_number(self, admin: Admin, number: str, target: RouteTarget) -> Number:
        if target.kind == "user":
            routed = await self.directory.route_to_user(number, target.name)
            what = f"rings user {target.name}"
        elif target.kind == "flow":
            if target.name not in self.flows.names():
                raise InvalidInput(f"no flow {target.name!r} in {self.flows.directory}")
            routed = await self.directory.route_to_flow(number, target.name)
            what = f"runs flow {target.name}"
        else:
            routed = await self.directory.clear_route(number)
            what = "no routing (refuses calls)"
        await self.admins.record(admin, "number.route", routed.e164, what)
        return routed

    async def buy_number(self, admin: Admin, number: str) -> Purchase:
        bought = await self.services.numbers.buy(number)
        offer = bought.offer
        await self.admins.record(
            admin,
            "number.buy",
            offer.e164,
            f"setup {format_credits(offer.setup)} + first month {format_credits(offer.monthly)}",
        )
        return bought

    async def release_number(self, admin: Admin, number: str, *, force: bool) -> Release:
        done = await self.services.numbers.release(number, force=force)
        details = [f"routing removed ({done.route})"] if done.route else []
        if done.users:
            details.append(f"unassigned from {', '.join(done.users)}")
        await self.admins.record(admin, "number.release", done.e164, "; ".join(details))
        return done

    async def assign_number(self, admin: Admin, number: str, user: str, *, default: bool) -> Number:
        assigned = await self.services.numbers.assign(number, user, default=default)
        await self.admins.record(
            admin, "number.assign", assigned.e164, f"to {user}{' (default)' if default else ''}"
        )
        return assigned

    async def unassign_number(self, admin: Admin, number: str, user: str) -> Number:
        left = await self.services.numbers.unassign(number, user)
        await self.admins.record(admin, "number.unassign", left.e164, f"from {user}")
        return left

    # ---- users ---------------------------------------------------------------------------

    async def add_user(
        self, admin: Admin, name: str, extension: str, password: str | None
    ) -> UserChange:
        made = password or generate_sip_password(name.strip(), extension.strip())
        user = await self.directory.add_user(name, extension, made)
        await self.admins.record(admin, "user.add", user.name, f"extension {user.extension}")
        update = await self.directory.apply_endpoint(user)
        return UserChange(user, None if password else made, update)

    async def reset_sip_password(self, admin: Admin, name: str, password: str | None) -> UserChange:
        user = await self.directory.get_user(name)
        made = password or generate_sip_password(user.name, user.extension)
        user = await self.directory.set_password(user.name, made)
        await self.admins.record(admin, "user.set_password", user.name)
        update = await self.directory.apply_endpoint(user)
        return UserChange(user, None if password else made, update)

    async def remove_user(self, admin: Admin, name: str, *, force: bool) -> EndpointUpdate | None:
        user = await self.directory.get_user(name)
        await self.directory.remove_user(user.name, force=force)
        await self.admins.record(
            admin,
            "user.remove",
            user.name,
            "forced: its numbers lost their routing" if force else "",
        )
        return await self.directory.apply_endpoint(user, removed=True)

    async def registrations(self) -> dict[str, RegistrationState] | None:
        """Extension -> whether its phone is registered, from Asterisk (ARI
        ``GET /endpoints/PJSIP``); None when Asterisk cannot be asked now."""
        try:
            endpoints = await self.services.ari.request("GET", "/endpoints/PJSIP")
        except (AriError, ConfigError) as exc:
            log.info("registration states unknown: %s", exc)
            return None
        states: dict[str, RegistrationState] = {}
        for item in endpoints if isinstance(endpoints, list) else []:
            if isinstance(item, dict) and isinstance(item.get("resource"), str):
                state = item.get("state")
                states[item["resource"]] = state if state in ("online", "offline") else "unknown"
        return states

    # ---- flows ---------------------------------------------------------------------------

    async def save_flow(self, admin: Admin, name: str, text: str) -> Flow:
        """Validate and write the flow (atomically); FlowValidationError writes nothing."""
        users = {u.name for u in await self.directory.list_users()}
        flow, created = await self.flows.save(name, text, known_users=users)
        await self.admins.record(
            admin, "flow.create" if created else "flow.save", name, f"version {flow.version}"
        )
        return flow
