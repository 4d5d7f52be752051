"""SQLAlchemy models: the schema of record, mirrored by ``migrations/versions``.

Tables::

    users         one row per user; name and extension unique; SIP digests, never a password
    numbers       the organisation's numbers, E.164 unique; state (active, suspended) and rent
    routes        at most one per number: ring a user, or run a flow
    number_assignments  which users present which numbers (one default per user)
    catalogue_numbers   the number inventory numbers are bought from (carrier/inventory.py)
    call_records  one per call (CDR), finished exactly once; charged once (rate, cost)
    rate_sets     one per rate-file import; the newest is the rate table in force
    rates         the prices of one rate set (never changed; pruned only when no CDR names them)
    wallets       the organisation's wallet: one row (id 1), balance and held, micro-credits,
                  and the ledger's chain head (last_hash)
    ledger_entries  append-only signed amounts; sum == wallets.balance_micro; hash-chained
    holds         credits reserved for live calls, one per call; sum == wallets.held_micro
    admins        console administrators; an argon2 hash of the password, never the password
    admin_sessions  console logins: the SHA-256 of the cookie's secret, the CSRF token, expiry
    admin_tokens  API bearer tokens: only their SHA-256 is stored
    admin_audit   what each admin changed (append-only by convention; no foreign key, so
                  the log outlives the admin)
    payment_methods     saved ways to pay: a provider's reference + brand, last four, expiry
    payment_customers   the organisation's customer id at each payment provider
    payment_attempts    one per purchase or auto-recharge; its id is the idempotency key
    payment_webhook_events  the provider's events received, once each (by event id)
    auto_recharge       the wallet's auto-recharge: one row (id 1), and its in-flight claim
    notifications       the outbox of notifications to send to the admin's webhook URL
    offline_payment_state   the offline payment provider's memory (development, tests)

Decisions:

- ``routes.number_id`` is the primary key and cascades with its number: removing a
  number removes its routing.
- ``routes.user_id`` is ``ON DELETE RESTRICT``: a user who receives a number's calls
  cannot vanish underneath it. ``DirectoryService.remove_user`` names the numbers in
  a ``Conflict``; with ``force=True`` it clears those routes first (the numbers then
  receive no calls) and removes the user.
- ``number_assignments`` cascades with its number and its user: releasing a number
  or removing a user removes the assignment. A partial unique index allows one
  default per user.
- ``numbers.paid_until`` is the end of the paid rental period (NULL: no rent, a
  number added by an operator outside the catalogue); ``generation`` is the
  catalogue's ownership count, part of every fee's idempotency key.
- ``call_records.user_id`` is ``ON DELETE SET NULL``; ``user_name`` keeps a snapshot,
  so history survives the user.
- ``call_records.disposition`` has no CHECK so new outcomes need no migration; the
  closed sets (direction, ended_by, route kind, number type) have one.
- Every timestamp is timezone-aware UTC (``UTCDateTime``), also on SQLite.
- Money is BIGINT micro-credits (``callcontrol.domain.money``). The wallet row caches
  ``balance`` and ``held`` so that a hold or a charge is one conditional UPDATE of one
  row (the row lock serializes concurrent calls on PostgreSQL, the write lock on
  SQLite); CHECKs keep ``0 <= held <= balance`` whatever the code does. The ledger is
  append-only: triggers (migration 0002) refuse UPDATE and DELETE on its rows, and
  (0003) INSERT OR REPLACE on SQLite and TRUNCATE of it or the wallet on PostgreSQL.
  It is tamper-evident: each entry's ``entry_hash`` chains over the one before, and
  ``wallets.last_hash`` is the newest entry's (``callcontrol.domain.money``).
- Rates are versioned, not overwritten: an import adds a ``rate_sets`` row and its
  rates in one transaction, and the newest set is in force. Old rates stay until
  ``callcontrol rates prune``, which never deletes a set a call record's ``rate_id``
  names (or a live call may use), so that always names the price it was charged at.
- ``holds.call_id`` has no foreign key: a hold may be taken before the call record
  is written; ``Wallet.audit`` reports holds whose call is unknown or settled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from callcontrol.domain.money import GENESIS_HASH

__all__ = [
    "WALLET_ID",
    "AdminAuditRow",
    "AdminRow",
    "AdminSessionRow",
    "AdminTokenRow",
    "AutoRechargeRow",
    "Base",
    "CallRecordRow",
    "CatalogueNumberRow",
    "HoldRow",
    "LedgerEntryRow",
    "NotificationRow",
    "NumberAssignmentRow",
    "NumberRow",
    "OfflinePaymentStateRow",
    "PaymentAttemptRow",
    "PaymentCustomerRow",
    "PaymentMethodRow",
    "PaymentWebhookEventRow",
    "RateRow",
    "RateSetRow",
    "RouteRow",
    "UTCDateTime",
    "UserRow",
    "WalletRow",
    "utcnow",
]

#: The id of the organisation's one wallet row (a CHECK allows no other).
WALLET_ID = 1

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
        CheckConstraint("state IN ('active', 'suspended')", name="state"),
        CheckConstraint("monthly_micro >= 0", name="monthly"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    country: Mapped[str] = mapped_column(String(3))
    number_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The number's life (migration 0006): rent, renewal, suspension.
    state: Mapped[str] = mapped_column(String(16), server_default="active")
    monthly_micro: Mapped[int] = mapped_column(BigInteger, server_default="0")
    generation: Mapped[int] = mapped_column(Integer, server_default="0")
    bought_at: Mapped[datetime | None]
    paid_until: Mapped[datetime | None] = mapped_column(index=True)
    unpaid_since: Mapped[datetime | None]
    suspended_at: Mapped[datetime | None]


class NumberAssignmentRow(Base):
    """A user presents the number when calling out (migration 0006)."""

    __tablename__ = "number_assignments"
    __table_args__ = (
        Index(
            "ix_number_assignments_default",
            "user_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    number_id: Mapped[int] = mapped_column(
        ForeignKey("numbers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogueNumberRow(Base):
    """A number of the inventory the organisation buys from (migration 0006).

    ``available``; ``reserved`` until ``reserved_until`` (then available again);
    ``taken`` (bought); ``ageing`` until ``available_at`` after a release (then
    available again). ``generation`` counts the releases: it keeps each ownership's
    fees apart in the ledger's idempotency keys.
    """

    __tablename__ = "catalogue_numbers"
    __table_args__ = (
        CheckConstraint(
            "number_type IN ('local', 'national', 'mobile', 'toll_free')", name="number_type"
        ),
        CheckConstraint("state IN ('available', 'reserved', 'taken', 'ageing')", name="state"),
        CheckConstraint("setup_micro >= 0 AND monthly_micro >= 0", name="prices"),
        Index("ix_catalogue_numbers_search", "country", "number_type", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    country: Mapped[str] = mapped_column(String(3))
    number_type: Mapped[str] = mapped_column(String(16))
    setup_micro: Mapped[int] = mapped_column(BigInteger)
    monthly_micro: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), server_default="available")
    reservation: Mapped[str | None] = mapped_column(String(64))
    reserved_until: Mapped[datetime | None]
    available_at: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(Integer, server_default="1")
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


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
    # Charging (migration 0002): the rate used, the billed seconds and cost, the state.
    rate_id: Mapped[int | None] = mapped_column(Integer)
    billable_seconds: Mapped[int | None] = mapped_column(Integer)
    cost_micro: Mapped[int | None] = mapped_column(BigInteger)
    charge_state: Mapped[str | None] = mapped_column(String(24))
    # Scale-out (migration 0007): the PBX the call runs on (setting pbx_node); NULL for
    # records written before, when one PBX served the database.
    pbx_node: Mapped[str | None] = mapped_column(String(64))


_NUMBER_TYPES = "('local', 'national', 'mobile', 'toll_free')"
LEDGER_KINDS = (
    "purchase",
    "auto_recharge",
    "call_charge",
    "number_purchase",
    "number_rental",
    "refund",
    "adjustment",
)


class RateSetRow(Base):
    """One import of a rate file; the newest (highest id) is in force."""

    __tablename__ = "rate_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    rate_count: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateRow(Base):
    __tablename__ = "rates"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        CheckConstraint(
            f"number_type IS NULL OR number_type IN {_NUMBER_TYPES}", name="number_type"
        ),
        CheckConstraint("(prefix IS NULL) <> (country IS NULL)", name="location"),
        CheckConstraint("price_per_minute_micro >= 0 AND connection_fee_micro >= 0", name="prices"),
        CheckConstraint("first_increment >= 1 AND next_increment >= 1", name="increments"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rate_set_id: Mapped[int] = mapped_column(
        ForeignKey("rate_sets.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(8))
    prefix: Mapped[str | None] = mapped_column(String(15))
    country: Mapped[str | None] = mapped_column(String(3))
    number_type: Mapped[str | None] = mapped_column(String(16))
    price_per_minute_micro: Mapped[int] = mapped_column(BigInteger)
    connection_fee_micro: Mapped[int] = mapped_column(BigInteger)
    first_increment: Mapped[int] = mapped_column(Integer)
    next_increment: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(256))


class WalletRow(Base):
    """The organisation's wallet: one row, id ``WALLET_ID``, created by migration 0002."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint(f"id = {WALLET_ID}", name="single"),
        CheckConstraint("held_micro >= 0 AND balance_micro >= held_micro", name="available"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance_micro: Mapped[int] = mapped_column(BigInteger)
    held_micro: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The newest ledger entry's entry_hash (migration 0003).
    last_hash: Mapped[str] = mapped_column(String(64), server_default=GENESIS_HASH)


class LedgerEntryRow(Base):
    """One immutable, signed change of the balance (append-only)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN {LEDGER_KINDS!r}", name="kind"),
        CheckConstraint("amount_micro <> 0", name="amount"),
        CheckConstraint("balance_after_micro >= 0", name="balance_after"),
        UniqueConstraint("idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(128), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(256))
    balance_after_micro: Mapped[int] = mapped_column(BigInteger)
    # sha256(previous entry's hash, this entry's fields), hex (migration 0003).
    entry_hash: Mapped[str] = mapped_column(String(64))


class HoldRow(Base):
    """Credits reserved for one live call."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount_micro >= 0", name="amount"),
        UniqueConstraint("call_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class AdminRow(Base):
    """A console administrator (migration 0004)."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AdminSessionRow(Base):
    """One console login; the cookie holds the secret whose SHA-256 is ``id``."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AdminTokenRow(Base):
    """An API bearer token; ``token_hash`` is the SHA-256 of the token."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class AdminAuditRow(Base):
    """One admin action: who, what, on what, when."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    admin_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    details: Mapped[str] = mapped_column(String(1024))


# ---- funding (migration 0005) ------------------------------------------------------------


class PaymentMethodRow(Base):
    """A saved way to pay; a card is never more than the provider's reference and what a
    person reads. Removed methods stay (attempts name them) with ``removed_at`` set."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint("kind IN ('card', 'bank_transfer')", name="kind"),
        CheckConstraint("kind <> 'card' OR provider_ref IS NOT NULL", name="card_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    brand: Mapped[str] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(128))
    is_default: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]


class PaymentCustomerRow(Base):
    """The organisation's customer id at a payment provider."""

    __tablename__ = "payment_customers"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128))


class PaymentAttemptRow(Base):
    """One purchase or auto-recharge; ``id`` is the provider's idempotency key and the
    ledger's key is ``purchase:<id>``."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        CheckConstraint("kind IN ('purchase', 'auto_recharge')", name="kind"),
        CheckConstraint(
            "state IN ('created', 'unknown', 'pending', 'needs_customer', 'succeeded', 'failed')",
            name="state",
        ),
        CheckConstraint("flow IN ('charge', 'checkout')", name="flow"),
        CheckConstraint("credits_micro > 0 AND amount_minor > 0", name="amounts"),
        UniqueConstraint("provider_payment_id"),
        Index("ix_payment_attempts_state", "state"),
        Index("ix_payment_attempts_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    flow: Mapped[str] = mapped_column(String(8))
    credits_micro: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    provider: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(String(128))
    method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    method_ref: Mapped[str | None] = mapped_column(String(128))
    provider_payment_id: Mapped[str | None] = mapped_column(String(128))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(256))
    ledger_entry_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentWebhookEventRow(Base):
    """A provider's event, stored once by its id before it is acted on."""

    __tablename__ = "payment_webhook_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class AutoRechargeRow(Base):
    """The wallet's auto-recharge: one row, id ``WALLET_ID``, created by migration 0005.

    ``in_flight`` names the one attempt under way: claiming it is a conditional UPDATE
    that only one process can win (at most one recharge in flight per wallet)."""

    __tablename__ = "auto_recharge"
    __table_args__ = (
        CheckConstraint(f"id = {WALLET_ID}", name="single"),
        CheckConstraint("threshold_micro >= 0 AND amount_micro > 0", name="amounts"),
        CheckConstraint("monthly_cap_micro IS NULL OR monthly_cap_micro > 0", name="cap"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    enabled: Mapped[bool] = mapped_column(Boolean)
    threshold_micro: Mapped[int] = mapped_column(BigInteger)
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    monthly_cap_micro: Mapped[int | None] = mapped_column(BigInteger)
    in_flight: Mapped[str | None] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer)
    retry_at: Mapped[datetime | None]
    low_notified: Mapped[bool] = mapped_column(Boolean)
    off_reason: Mapped[str | None] = mapped_column(String(256))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationRow(Base):
    """An event for the admin: logged when written, then sent to the webhook URL."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("key"), Index("ix_notifications_due", "sent_at", "due_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(256))


class OfflinePaymentStateRow(Base):
    """The offline payment provider's whole memory as JSON (one row, id 1)."""

    __tablename__ = "offline_payment_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
