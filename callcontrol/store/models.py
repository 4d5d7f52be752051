"""SQLAlchemy models: the schema of record, mirrored by ``migrations/versions``.

Tables::

    users         one row per user; name and extension unique; SIP digests, never a password
    numbers       the organisation's numbers, E.164 unique
    routes        at most one per number: ring a user, or run a flow
    call_records  one per call (CDR), finished exactly once

Decisions:

- ``routes.number_id`` is the primary key and cascades with its number: removing a
  number removes its routing.
- ``routes.user_id`` is ``ON DELETE RESTRICT``: a user who receives a number's calls
  cannot vanish underneath it. ``DirectoryService.remove_user`` names the numbers in
  a ``Conflict``; with ``force=True`` it clears those routes first (the numbers then
  receive no calls) and removes the user.
- ``call_records.user_id`` is ``ON DELETE SET NULL``; ``user_name`` keeps a snapshot,
  so history survives the user.
- ``call_records.disposition`` has no CHECK so new outcomes need no migration; the
  closed sets (direction, ended_by, route kind, number type) have one.
- Every timestamp is timezone-aware UTC (``UTCDateTime``), also on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "CallRecordRow",
    "NumberRow",
    "RouteRow",
    "UTCDateTime",
    "UserRow",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    Naive datetimes are refused when binding. SQLite keeps no offset, so values are
    stored as naive UTC there and given ``tzinfo=UTC`` when read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    extension: Mapped[str] = mapped_column(String(6), unique=True)
    digest_md5: Mapped[str] = mapped_column(String(32))
    digest_sha256: Mapped[str] = mapped_column(String(64))
    realm: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NumberRow(Base):
    __tablename__ = "numbers"
    __table_args__ = (
        CheckConstraint(
            "number_type IN ('local', 'national', 'mobile', 'toll_free')", name="number_type"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    country: Mapped[str] = mapped_column(String(3))
    number_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RouteRow(Base):
    __tablename__ = "routes"
    __table_args__ = (
        CheckConstraint("kind IN ('user', 'flow')", name="kind"),
        CheckConstraint(
            "(kind = 'user' AND user_id IS NOT NULL AND flow_name IS NULL)"
            " OR (kind = 'flow' AND flow_name IS NOT NULL AND user_id IS NULL)",
            name="target",
        ),
    )

    number_id: Mapped[int] = mapped_column(
        ForeignKey("numbers.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    flow_name: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallRecordRow(Base):
    __tablename__ = "call_records"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound', 'internal')", name="direction"),
        CheckConstraint(
            "ended_by IS NULL OR ended_by IN ('caller', 'callee', 'system', 'pbx')",
            name="ended_by",
        ),
        Index("ix_call_records_started_at", "started_at"),
        # Small and cheap: only the calls still in progress (re-adoption, reconciliation).
        Index(
            "ix_call_records_open",
            "started_at",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    caller: Mapped[str] = mapped_column(String(128))
    callee: Mapped[str] = mapped_column(String(128))
    number_e164: Mapped[str | None] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    user_name: Mapped[str | None] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(String(32))
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    ended_by: Mapped[str | None] = mapped_column(String(8))
