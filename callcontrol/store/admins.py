"""Repositories of the console's admins, their sessions and tokens, and the audit log.

Like ``repositories``: each works inside the caller's ``AsyncSession`` and returns
frozen values (``callcontrol.domain.admins``). Secrets never reach the database:
sessions and tokens are looked up by the SHA-256 of the secret the client holds.
"""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.domain.admins import Admin, AuditEntry
from callcontrol.errors import Conflict
from callcontrol.store.models import (
    AdminAuditRow,
    AdminRow,
    AdminSessionRow,
    AdminTokenRow,
    utcnow,
)

__all__ = ["AdminRepository", "AuditRepository"]


def _admin(row: AdminRow) -> Admin:
    return Admin(id=row.id, name=row.name, created_at=row.created_at)


class AdminRepository:
    """Admins, their password hashes, sessions and API tokens."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, name: str, password_hash: str) -> Admin:
        row = AdminRow(name=name, password_hash=password_hash)
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError as error:
            raise Conflict(f"admin {name!r} already exists") from error
        return _admin(row)

    async def get(self, name: str) -> tuple[Admin, str] | None:
        """The admin and their password hash."""
        row = await self._session.scalar(
            select(AdminRow).where(AdminRow.name == name).execution_options(populate_existing=True)
        )
        return None if row is None else (_admin(row), row.password_hash)

    async def list(self) -> builtins.list[Admin]:
        rows = await self._session.scalars(select(AdminRow).order_by(AdminRow.name))
        return [_admin(row) for row in rows]

    async def remove(self, name: str) -> bool:
        """Delete the admin with their sessions and tokens (cascade)."""
        admin_id = await self._session.scalar(select(AdminRow.id).where(AdminRow.name == name))
        if admin_id is None:
            return False
        await self._drop_access(admin_id)
        await self._session.execute(delete(AdminRow).where(AdminRow.id == admin_id))
        return True

    async def set_password_hash(self, name: str, password_hash: str) -> bool:
        result = await self._session.execute(
            update(AdminRow)
            .where(AdminRow.name == name)
            .values(password_hash=password_hash, updated_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))

    async def end_sessions(self, name: str) -> None:
        """Sign the admin out everywhere (after a password change)."""
        admin_id = select(AdminRow.id).where(AdminRow.name == name).scalar_subquery()
        await self._session.execute(
            delete(AdminSessionRow).where(AdminSessionRow.admin_id == admin_id)
        )

    async def _drop_access(self, admin_id: int) -> None:
        # ON DELETE CASCADE needs foreign keys on (SQLite has them on here); be explicit.
        await self._session.execute(
            delete(AdminSessionRow).where(AdminSessionRow.admin_id == admin_id)
        )
        await self._session.execute(delete(AdminTokenRow).where(AdminTokenRow.admin_id == admin_id))

    # ---- sessions ------------------------------------------------------------------------

    async def open_session(
        self, admin: Admin, session_hash: str, csrf_token: str, expires_at: datetime
    ) -> None:
        self._session.add(
            AdminSessionRow(
                id=session_hash, admin_id=admin.id, csrf_token=csrf_token, expires_at=expires_at
            )
        )
        await self._session.flush()

    async def by_session(self, session_hash: str, now: datetime) -> tuple[Admin, str] | None:
        """The admin of a live session and its CSRF token; None if unknown or expired."""
        row = (
            await self._session.execute(
                select(AdminRow, AdminSessionRow.csrf_token)
                .join(AdminSessionRow, AdminSessionRow.admin_id == AdminRow.id)
                .where(AdminSessionRow.id == session_hash, AdminSessionRow.expires_at > now)
            )
        ).first()
        return None if row is None else (_admin(row[0]), row[1])

    async def close_session(self, session_hash: str) -> None:
        await self._session.execute(
            delete(AdminSessionRow).where(AdminSessionRow.id == session_hash)
        )

    async def drop_expired_sessions(self, now: datetime) -> None:
        await self._session.execute(
            delete(AdminSessionRow).where(AdminSessionRow.expires_at <= now)
        )

    # ---- API tokens ----------------------------------------------------------------------

    async def add_token(self, admin: Admin, token_hash: str) -> None:
        self._session.add(AdminTokenRow(admin_id=admin.id, token_hash=token_hash))
        await self._session.flush()

    async def by_token(self, token_hash: str, now: datetime) -> Admin | None:
        row = await self._session.scalar(
            select(AdminRow)
            .join(AdminTokenRow, AdminTokenRow.admin_id == AdminRow.id)
            .where(AdminTokenRow.token_hash == token_hash)
        )
        if row is None:
            return None
        await self._session.execute(
            update(AdminTokenRow)
            .where(AdminTokenRow.token_hash == token_hash)
            .values(last_used_at=now)
        )
        return _admin(row)

    async def revoke_tokens(self, name: str) -> int:
        admin_id = select(AdminRow.id).where(AdminRow.name == name).scalar_subquery()
        result = await self._session.execute(
            delete(AdminTokenRow).where(AdminTokenRow.admin_id == admin_id)
        )
        return int(getattr(result, "rowcount", 0))


class AuditRepository:
    """The admins' audit log: appended, read newest first."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(self, admin: str, action: str, target: str, details: str) -> None:
        self._session.add(
            AdminAuditRow(
                admin_name=admin, action=action, target=target[:256], details=details[:1024]
            )
        )
        await self._session.flush()

    async def page(self, limit: int, before_id: int | None = None) -> builtins.list[AuditEntry]:
        query = select(AdminAuditRow).order_by(AdminAuditRow.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AdminAuditRow.id < before_id)
        rows = await self._session.scalars(query)
        return [
            AuditEntry(
                id=r.id,
                at=r.at,
                admin=r.admin_name,
                action=r.action,
                target=r.target,
                details=r.details,
            )
            for r in rows
        ]
