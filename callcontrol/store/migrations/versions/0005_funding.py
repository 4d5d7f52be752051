"""Funding: payment methods, attempts, webhook events, auto-recharge, notifications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Also creates the auto-recharge's single row (id 1, off, below 2 credits -> +10) and the
offline payment provider's state row. Hand-checked against ``callcontrol.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = "'created', 'unknown', 'pending', 'needs_customer', 'succeeded', 'failed'"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("removed_at", _utc(), nullable=True),
        sa.CheckConstraint("kind IN ('card', 'bank_transfer')", name="ck_payment_methods_kind"),
        sa.CheckConstraint(
            "kind <> 'card' OR provider_ref IS NOT NULL", name="ck_payment_methods_card_ref"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_methods"),
    )
    op.create_table(
        "payment_customers",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("provider", name="pk_payment_customers"),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("flow", sa.String(length=8), nullable=False),
        sa.Column("credits_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("method_id", sa.Integer(), nullable=True),
        sa.Column("method_ref", sa.String(length=128), nullable=True),
        sa.Column("provider_payment_id", sa.String(length=128), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("message", sa.String(length=256), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('purchase', 'auto_recharge')", name="ck_payment_attempts_kind"
        ),
        sa.CheckConstraint(f"state IN ({_STATES})", name="ck_payment_attempts_state"),
        sa.CheckConstraint("flow IN ('charge', 'checkout')", name="ck_payment_attempts_flow"),
        sa.CheckConstraint(
            "credits_micro > 0 AND amount_minor > 0", name="ck_payment_attempts_amounts"
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["payment_methods.id"],
            name="fk_payment_attempts_method_id_payment_methods",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_attempts"),
        sa.UniqueConstraint("provider_payment_id", name="uq_payment_attempts_provider_payment_id"),
    )
    op.create_index("ix_payment_attempts_state", "payment_attempts", ["state"])
    op.create_index("ix_payment_attempts_created_at", "payment_attempts", ["created_at"])
    op.create_table(
        "payment_webhook_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("processed_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_payment_webhook_events"),
    )
    op.create_table(
        "auto_recharge",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("method_id", sa.Integer(), nullable=True),
        sa.Column("monthly_cap_micro", sa.BigInteger(), nullable=True),
        sa.Column("in_flight", sa.String(length=64), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", _utc(), nullable=True),
        sa.Column("low_notified", sa.Boolean(), nullable=False),
        sa.Column("off_reason", sa.String(length=256), nullable=True),
        sa.Column("changed_at", _utc(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_auto_recharge_single"),
        sa.CheckConstraint(
            "threshold_micro >= 0 AND amount_micro > 0", name="ck_auto_recharge_amounts"
        ),
        sa.CheckConstraint(
            "monthly_cap_micro IS NULL OR monthly_cap_micro > 0", name="ck_auto_recharge_cap"
        ),
        sa.ForeignKeyConstraint(
            ["method_id"], ["payment_methods.id"], name="fk_auto_recharge_method_id_payment_methods"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_auto_recharge"),
    )
    op.execute(AUTO_RECHARGE_ROW)
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=True),
        sa.Column("last_error", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("key", name="uq_notifications_key"),
    )
    op.create_index("ix_notifications_due", "notifications", ["sent_at", "due_at"])
    op.create_table(
        "offline_payment_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offline_payment_state"),
    )
    op.execute(OFFLINE_STATE_ROW)


#: The rows this migration creates (tests that empty the tables create them again).
AUTO_RECHARGE_ROW = (
    "INSERT INTO auto_recharge (id, enabled, threshold_micro, amount_micro, failures, "
    "low_notified, changed_at) VALUES (1, false, 2000000, 10000000, 0, false, CURRENT_TIMESTAMP)"
)
OFFLINE_STATE_ROW = (
    "INSERT INTO offline_payment_state (id, state, updated_at) VALUES (1, '{}', CURRENT_TIMESTAMP)"
)


def downgrade() -> None:
    op.drop_table("offline_payment_state")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("auto_recharge")
    op.drop_table("payment_webhook_events")
    op.drop_index("ix_payment_attempts_created_at", table_name="payment_attempts")
    op.drop_index("ix_payment_attempts_state", table_name="payment_attempts")
    op.drop_table("payment_attempts")
    op.drop_table("payment_customers")
    op.drop_table("payment_methods")
