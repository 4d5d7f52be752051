"""Charging: rate sets and rates, the wallet, its ledger and holds; call record costs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27

Also creates the wallet's single row (id 1, empty) and triggers that make
``ledger_entries`` append-only (UPDATE and DELETE are refused) on SQLite and
PostgreSQL. Hand-checked against ``callcontrol.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER_KINDS = (
    "'purchase', 'auto_recharge', 'call_charge', 'number_purchase', 'number_rental', "
    "'refund', 'adjustment'"
)
_APPEND_ONLY = "ledger entries are append-only"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rate_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rate_count", sa.Integer(), nullable=False),
        sa.Column("imported_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_sets"),
    )
    op.create_table(
        "rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rate_set_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("prefix", sa.String(length=15), nullable=True),
        sa.Column("country", sa.String(length=3), nullable=True),
        sa.Column("number_type", sa.String(length=16), nullable=True),
        sa.Column("price_per_minute_micro", sa.BigInteger(), nullable=False),
        sa.Column("connection_fee_micro", sa.BigInteger(), nullable=False),
        sa.Column("first_increment", sa.Integer(), nullable=False),
        sa.Column("next_increment", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name="ck_rates_direction"),
        sa.CheckConstraint(
            "number_type IS NULL OR number_type IN ('local', 'national', 'mobile', 'toll_free')",
            name="ck_rates_number_type",
        ),
        sa.CheckConstraint("(prefix IS NULL) <> (country IS NULL)", name="ck_rates_location"),
        sa.CheckConstraint(
            "price_per_minute_micro >= 0 AND connection_fee_micro >= 0", name="ck_rates_prices"
        ),
        sa.CheckConstraint(
            "first_increment >= 1 AND next_increment >= 1", name="ck_rates_increments"
        ),
        sa.ForeignKeyConstraint(
            ["rate_set_id"],
            ["rate_sets.id"],
            name="fk_rates_rate_set_id_rate_sets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rates"),
    )
    op.create_index("ix_rates_rate_set_id", "rates", ["rate_set_id"])
    op.create_table(
        "wallets",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("balance_micro", sa.BigInteger(), nullable=False),
        sa.Column("held_micro", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_wallets_single"),
        sa.CheckConstraint(
            "held_micro >= 0 AND balance_micro >= held_micro", name="ck_wallets_available"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_wallets"),
    )
    op.execute(
        "INSERT INTO wallets (id, balance_micro, held_micro, updated_at) "
        "VALUES (1, 0, 0, CURRENT_TIMESTAMP)"
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.Column("balance_after_micro", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(f"kind IN ({_LEDGER_KINDS})", name="ck_ledger_entries_kind"),
        sa.CheckConstraint("amount_micro <> 0", name="ck_ledger_entries_amount"),
        sa.CheckConstraint("balance_after_micro >= 0", name="ck_ledger_entries_balance_after"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_ledger_entries_idempotency_key"),
    )
    op.create_index("ix_ledger_entries_reference", "ledger_entries", ["reference"])
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=True),
        sa.CheckConstraint("amount_micro >= 0", name="ck_holds_amount"),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.UniqueConstraint("call_id", name="uq_holds_call_id"),
    )
    # Plain ADD COLUMN (no table copy on SQLite): nullable, no constraint.
    op.add_column("call_records", sa.Column("rate_id", sa.Integer(), nullable=True))
    op.add_column("call_records", sa.Column("billable_seconds", sa.Integer(), nullable=True))
    op.add_column("call_records", sa.Column("cost_micro", sa.BigInteger(), nullable=True))
    op.add_column("call_records", sa.Column("charge_state", sa.String(length=24), nullable=True))
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} "
                f"ON ledger_entries BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
    )
    op.execute(
        "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    for column in ("charge_state", "cost_micro", "billable_seconds", "rate_id"):
        op.drop_column("call_records", column)
    op.drop_table("holds")
    op.drop_index("ix_ledger_entries_reference", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("wallets")
    op.drop_index("ix_rates_rate_set_id", table_name="rates")
    op.drop_table("rates")
    op.drop_table("rate_sets")
