"""The admin service: accounts, sessions, API tokens, and the audit log of actions.

Secrets and what is stored of them:

    password        argon2id hash (argon2-cffi's defaults); verified in a worker
                    thread (about 50 ms of CPU), also for an unknown name, so the
                    answer time does not tell which names exist
    session secret  the cookie's value, 32 random bytes; stored: its SHA-256
    CSRF token      32 random bytes per session, stored as is (it guards forms, it
                    grants nothing by itself)
    API token       ``cc_`` + 32 random bytes, shown once; stored: its SHA-256 (a
                    random secret needs no slow hash)

Changing a password ends the admin's sessions; removing an admin ends their
sessions and revokes their tokens. Every change made through the console or the
API is appended to the audit log by ``record``.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from callcontrol.domain.admins import (
    Admin,
    AuditEntry,
    check_admin_password,
    validate_admin_name,
)
from callcontrol.errors import InvalidInput, NotFound
from callcontrol.store.admins import AdminRepository, AuditRepository
from callcontrol.store.db import Database

__all__ = ["TOKEN_PREFIX", "AdminService", "SignIn", "generate_password"]

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cc_"
MAX_AUDIT_PAGE = 1000


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_password() -> str:
    """A random password for a new admin (20 URL-safe characters, 120 bits)."""
    return secrets.token_urlsafe(15)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A console session: the admin, the cookie's secret, the CSRF token of its forms."""

    admin: Admin
    secret: str
    csrf_token: str


class AdminService:
    """Admins on ``db``; sessions last ``session_ttl``."""

    def __init__(self, db: Database, *, session_ttl: timedelta = timedelta(hours=12)) -> None:
        self._db = db
        self.session_ttl = session_ttl
        self._hasher = PasswordHasher()
        self._dummy_hash = ""  # for unknown names; made at first use, not per command

    # ---- accounts ------------------------------------------------------------------------

    async def add(self, name: str, password: str) -> Admin:
        name = validate_admin_name(name)
        check_admin_password(password, name=name)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.session() as session:
            admin = await AdminRepository(session).add(name, hashed)
        log.info("added admin %s", name)
        return admin

    async def list(self) -> list[Admin]:
        async with self._db.session() as session:
            return await AdminRepository(session).list()

    async def remove(self, name: str) -> None:
        name = validate_admin_name(name)
        async with self._db.session() as session:
            if not await AdminRepository(session).remove(name):
                raise NotFound(f"no admin named {name!r}")
        log.info("removed admin %s", name)

    async def set_password(self, name: str, password: str) -> None:
        """Replace the password and end the admin's sessions."""
        name = validate_admin_name(name)
        check_admin_password(password, name=name)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.session() as session:
            admins = AdminRepository(session)
            if not await admins.set_password_hash(name, hashed):
                raise NotFound(f"no admin named {name!r}")
            await admins.end_sessions(name)
        log.info("changed the password of admin %s", name)

    # ---- signing in ----------------------------------------------------------------------

    async def verify_password(self, name: str, password: str) -> Admin | None:
        """The admin if the password is theirs; None otherwise (same work either way)."""
        try:
            name = validate_admin_name(name)
        except InvalidInput:
            name = ""
        found = None
        if name:
            async with self._db.session() as session:
                found = await AdminRepository(session).get(name)
        if found is None and not self._dummy_hash:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(16))
        hashed = found[1] if found else self._dummy_hash
        try:
            await asyncio.to_thread(self._hasher.verify, hashed, password)
        except (VerificationError, InvalidHashError):
            return None
        return found[0] if found else None

    async def sign_in(self, name: str, password: str) -> SignIn | None:
        """A new session for the admin if the password is right; None otherwise."""
        admin = await self.verify_password(name, password)
        if admin is None:
            return None
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self._db.session() as session:
            admins = AdminRepository(session)
            await admins.drop_expired_sessions(now)
            await admins.open_session(admin, _sha256(secret), csrf, now + self.session_ttl)
        log.info("admin %s signed in", admin.name)
        return SignIn(admin, secret, csrf)

    async def session(self, secret: str) -> SignIn | None:
        """The live session of a cookie's secret; None if unknown or expired."""
        if not secret:
            return None
        async with self._db.session() as session:
            found = await AdminRepository(session).by_session(_sha256(secret), datetime.now(UTC))
        return None if found is None else SignIn(found[0], secret, found[1])

    async def sign_out(self, secret: str) -> None:
        async with self._db.session() as session:
            await AdminRepository(session).close_session(_sha256(secret))

    # ---- API tokens ----------------------------------------------------------------------

    async def issue_token(self, name: str) -> str:
        """A new API token for the admin; only its hash is kept: show it once."""
        name = validate_admin_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._db.session() as session:
            admins = AdminRepository(session)
            found = await admins.get(name)
            if found is None:
                raise NotFound(f"no admin named {name!r}")
            await admins.add_token(found[0], _sha256(token))
        log.info("issued an API token to admin %s", name)
        return token

    async def revoke_tokens(self, name: str) -> int:
        name = validate_admin_name(name)
        async with self._db.session() as session:
            count = await AdminRepository(session).revoke_tokens(name)
        log.info("revoked %d API tokens of admin %s", count, name)
        return count

    async def by_token(self, token: str) -> Admin | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        async with self._db.session() as session:
            return await AdminRepository(session).by_token(_sha256(token), datetime.now(UTC))

    # ---- audit log -----------------------------------------------------------------------

    async def record(self, admin: Admin, action: str, target: str, details: str = "") -> None:
        async with self._db.session() as session:
            await AuditRepository(session).append(admin.name, action, target, details)
        log.info("admin %s: %s %s %s", admin.name, action, target, details)

    async def audit_log(
        self, limit: int = 50, before_id: int | None = None
    ) -> builtins.list[AuditEntry]:
        """The newest entries first, older than ``before_id`` when given."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_AUDIT_PAGE}")
        async with self._db.session() as session:
            return await AuditRepository(session).page(limit, before_id)
