"""Directory operations with validation: what an admin does to users and numbers.

Every operation runs in its own transaction. Inputs are validated by the pure
rules of ``callcontrol.domain`` (InvalidInput / WeakPassword); the database
decides duplicates (Conflict) and unknown names (NotFound); every message names
the user or number concerned. Numbers may be typed in any form ``parse_e164``
accepts (``+44 20 7946 0000``).

Removing a user who receives a number's calls, or whom an IVR flow rings, fails
with a Conflict naming those numbers and flows, unless ``force=True``: then the
numbers lose their routing (and receive no calls until routed again), the user is
removed, and the flows that ring them fail validation until edited. Their call
records stay, with the user's name.

Given the IVR ``flows`` (``directory.flows.FlowCatalog`` on ``flows_dir``), a number
is routed only to a flow that exists and validates.

Writes run in ``session(immediate=True)``: on SQLite the write lock is taken at
BEGIN, so concurrent admin commands wait for each other (the busy timeout) instead
of failing with "database is locked"; a route is written with one upsert, so
concurrent route changes on PostgreSQL never find a row gone under them.

Given the PBX's ``endpoints`` (the EndpointProvisioner), ``apply_endpoint`` pushes
a user's change to Asterisk at once; the app re-checks every endpoint anyway, so a
PBX that does not answer only delays it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from callcontrol.domain.directory import Number, User
from callcontrol.domain.numbers import NumberType, infer_number_type, number_country, parse_e164
from callcontrol.domain.text import shown
from callcontrol.domain.users import (
    check_password,
    sip_digests,
    validate_extension,
    validate_user_name,
)
from callcontrol.errors import AriError, Conflict, InvalidInput, NotFound
from callcontrol.store.db import Database
from callcontrol.store.ownership import presented_number
from callcontrol.store.repositories import NumberRepository, UserRepository

__all__ = ["DirectoryService", "EndpointUpdate", "Endpoints"]

log = logging.getLogger(__name__)

_FLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _number_type(text: str) -> NumberType:
    try:
        return NumberType(text.strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in NumberType)
        raise InvalidInput(f"unknown number type {shown(text)}: choose one of {choices}") from None


def _flow_name(text: str) -> str:
    name = text.strip()
    if not _FLOW_NAME.fullmatch(name):
        raise InvalidInput(
            f"flow name {shown(text)} must be 1-128 letters, digits, . _ - (starting with a "
            "letter or digit)"
        )
    return name


class Flows(Protocol):
    """The IVR flows (directory/flows.py's FlowCatalog)."""

    def check_routable(self, name: str, known_users: Collection[str]) -> None: ...

    def ringing(self, user: str) -> list[str]: ...


class Endpoints(Protocol):
    """Users' SIP endpoints in the PBX (calls/provisioning.py's EndpointProvisioner)."""

    async def push(self, user: User, number: str | None = None) -> None: ...

    async def remove(self, extension: str) -> None: ...


@dataclass(frozen=True, slots=True)
class EndpointUpdate:
    """What became of a user's endpoint change in the PBX."""

    extension: str
    removed: bool
    error: str | None = None  # why the PBX was not updated now (it is, when the app connects)

    @property
    def applied(self) -> bool:
        return self.error is None


def _still_used(name: str, numbers: list[str], flows: list[str]) -> str:
    uses = []
    if numbers:
        uses.append(f"receives the calls of {', '.join(numbers)}")
    if flows:
        uses.append(f"is rung by the flow(s) {', '.join(flows)}")
    return (
        f"user {name!r} {' and '.join(uses)}: route those numbers elsewhere and edit those "
        "flows first, or force the removal (the numbers then receive no calls, the "
        "flows fail validation)"
    )


class DirectoryService:
    """Users, numbers and routing, validated. ``realm`` is the SIP digest realm;
    ``endpoints`` the PBX's users' endpoints (None: no PBX configured); ``flows`` the
    IVR flows (None: flows are not checked, for tools and tests without any)."""

    def __init__(
        self,
        db: Database,
        realm: str,
        endpoints: Endpoints | None = None,
        flows: Flows | None = None,
    ) -> None:
        if not realm or ":" in realm:
            raise InvalidInput(f"SIP realm {realm!r} must be non-empty and contain no ':'")
        self._db = db
        self._realm = realm
        self._endpoints = endpoints
        self._flows = flows

    # users

    @property
    def db(self) -> Database:
        """The database this service works on (the caller disposes it)."""
        return self._db

    async def add_user(self, name: str, extension: str, password: str) -> User:
        """Create a user with a SIP login ``extension`` / ``password`` (stored as digests)."""
        name = validate_user_name(name)
        extension = validate_extension(extension)
        check_password(password, name=name, extension=extension)
        digests = sip_digests(extension, self._realm, password)
        async with self._db.session(immediate=True) as session:
            users = UserRepository(session)
            if await users.get_by_name(name) is not None:
                raise Conflict(f"user name {name!r} is already taken")
            holder = await users.get_by_extension(extension)
            if holder is not None:
                raise Conflict(f"extension {extension} is already taken by {holder.name!r}")
            user = await users.add(name, extension, digests, self._realm)
        log.info("added user %s at extension %s", user.name, user.extension)
        return user

    async def remove_user(self, name: str, *, force: bool = False) -> list[str]:
        """Remove a user; Conflict naming the numbers routed to them and the flows that
        ring them, unless ``force``. Returns the flows that still ring them."""
        name = validate_user_name(name)
        flows = await asyncio.to_thread(self._flows.ringing, name) if self._flows else []
        async with self._db.session(immediate=True) as session:
            numbers = NumberRepository(session)
            routed = await numbers.routed_to_user(name)
            if (routed or flows) and not force:
                raise Conflict(_still_used(name, routed, flows))
            if routed:
                await numbers.clear_routes_to_user(name)
            if not await UserRepository(session).remove(name):
                raise NotFound(f"no user named {name!r}")
        if routed or flows:
            log.warning(
                "removed user %s; numbers now without routing: %s; flows that ring them: %s",
                name,
                routed,
                flows,
            )
        else:
            log.info("removed user %s", name)
        return flows

    async def set_password(self, name: str, password: str) -> User:
        """Replace the user's password (their phone must then use the new one)."""
        name = validate_user_name(name)
        async with self._db.session(immediate=True) as session:
            users = UserRepository(session)
            user = await users.get_by_name(name)
            if user is None:
                raise NotFound(f"no user named {name!r}")
            check_password(password, name=user.name, extension=user.extension)
            digests = sip_digests(user.extension, self._realm, password)
            updated = await users.set_digests(name, digests, self._realm)
        if updated is None:  # pragma: no cover - same transaction
            raise NotFound(f"no user named {name!r}")
        log.info("changed the password of user %s", name)
        return updated

    async def apply_endpoint(self, user: User, *, removed: bool = False) -> EndpointUpdate | None:
        """Push the user's endpoint (or its removal) to the PBX now, if it answers.

        None when no PBX is configured; otherwise the update, with the PBX's error if
        it failed (the app applies the change when it next connects).
        """
        if self._endpoints is None:
            return None
        try:
            if removed:
                await self._endpoints.remove(user.extension)
            else:
                await self._endpoints.push(user, await self.presented_number(user.name))
        except AriError as exc:
            return EndpointUpdate(user.extension, removed, str(exc))
        return EndpointUpdate(user.extension, removed)

    async def presented_number(self, name: str) -> str | None:
        """The number the user presents calling out (their default assigned number in
        service); None: they have none and cannot call out."""
        async with self._db.session() as session:
            return await presented_number(session, name)

    async def list_users(self) -> list[User]:
        async with self._db.session() as session:
            return await UserRepository(session).list()

    async def get_user(self, name: str) -> User:
        """The user; NotFound if there is none by that name."""
        name = validate_user_name(name)
        async with self._db.session() as session:
            user = await UserRepository(session).get_by_name(name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    # numbers

    async def add_number(self, text: str, number_type: str | None = None) -> Number:
        """Add a number; its type is inferred from its range unless given."""
        e164 = parse_e164(text)
        kind = infer_number_type(e164) if number_type is None else _number_type(number_type)
        async with self._db.session(immediate=True) as session:
            number = await NumberRepository(session).add(e164, number_country(e164), kind)
        log.info("added number %s (%s, %s)", number.e164, number.country, number.number_type)
        return number

    async def remove_number(self, text: str) -> None:
        """Remove a number an operator added, its routing and assignments; NotFound if
        it is not ours, Conflict if it was bought from the catalogue (release it)."""
        e164 = parse_e164(text)
        async with self._db.session(immediate=True) as session:
            numbers = NumberRepository(session)
            number = await numbers.get(e164)
            if number is not None and number.paid_until is not None:
                raise Conflict(
                    f"{e164} was bought from the catalogue: release it "
                    "(callcontrol numbers release), which returns it to the catalogue"
                )
            if not await numbers.remove(e164):
                raise NotFound(f"no number {e164}")
        log.info("removed number %s", e164)

    async def list_numbers(self) -> list[Number]:
        """Every number with its routing."""
        async with self._db.session() as session:
            return await NumberRepository(session).list()

    async def get_number(self, text: str) -> Number:
        e164 = parse_e164(text)
        async with self._db.session() as session:
            number = await NumberRepository(session).get(e164)
        if number is None:
            raise NotFound(f"no number {e164}")
        return number

    async def route_to_user(self, number: str, user_name: str) -> Number:
        """Ring the user for the number's incoming calls."""
        e164 = parse_e164(number)
        name = validate_user_name(user_name)
        async with self._db.session(immediate=True) as session:
            routed = await NumberRepository(session).set_route_user(e164, name)
        log.info("number %s now rings user %s", e164, name)
        return routed

    async def route_to_flow(self, number: str, flow_name: str) -> Number:
        """Run the IVR flow ``flow_name`` for the number's incoming calls.

        With ``flows``, the flow must exist and validate against the users (NotFound,
        InvalidInput); the app reads it again for each call.
        """
        e164 = parse_e164(number)
        name = _flow_name(flow_name)
        if self._flows is not None:
            await self.get_number(e164)  # an unknown number is the first thing to say
            users = [user.name for user in await self.list_users()]
            await asyncio.to_thread(self._flows.check_routable, name, users)
        async with self._db.session(immediate=True) as session:
            routed = await NumberRepository(session).set_route_flow(e164, name)
        log.info("number %s now runs flow %s", e164, name)
        return routed

    async def clear_route(self, number: str) -> Number:
        """Remove the number's routing: it receives no calls until routed again."""
        e164 = parse_e164(number)
        async with self._db.session(immediate=True) as session:
            numbers = NumberRepository(session)
            await numbers.clear_route(e164)
            cleared = await numbers.get(e164)
        if cleared is None:  # pragma: no cover - same transaction
            raise NotFound(f"no number {e164}")
        log.info("number %s has no routing now", e164)
        return cleared
