"""Initial schema: users, numbers, routes, call_records.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Hand-checked against ``callcontrol.store.models`` (tests/integration compare the
migrated schema with the models on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("extension", sa.String(length=6), nullable=False),
        sa.Column("digest_md5", sa.String(length=32), nullable=False),
        sa.Column("digest_sha256", sa.String(length=64), nullable=False),
        sa.Column("realm", sa.String(length=128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("extension", name="uq_users_extension"),
    )
    op.create_table(
        "numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=3), nullable=False),
        sa.Column("number_type", sa.String(length=16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "number_type IN ('local', 'national', 'mobile', 'toll_free')",
            name="ck_numbers_number_type",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_numbers"),
        sa.UniqueConstraint("e164", name="uq_numbers_e164"),
    )
    op.create_table(
        "routes",
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("flow_name", sa.String(length=128), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("kind IN ('user', 'flow')", name="ck_routes_kind"),
        sa.CheckConstraint(
            "(kind = 'user' AND user_id IS NOT NULL AND flow_name IS NULL)"
            " OR (kind = 'flow' AND flow_name IS NOT NULL AND user_id IS NULL)",
            name="ck_routes_target",
        ),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name="fk_routes_number_id_numbers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_routes_user_id_users", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("number_id", name="pk_routes"),
    )
    op.create_index("ix_routes_user_id", "routes", ["user_id"])
    op.create_table(
        "call_records",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("caller", sa.String(length=128), nullable=False),
        sa.Column("callee", sa.String(length=128), nullable=False),
        sa.Column("number_e164", sa.String(length=16), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(length=64), nullable=True),
        sa.Column("channel_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("answered_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("ended_by", sa.String(length=8), nullable=True),
        sa.CheckConstraint(
            "direction IN ('inbound', 'outbound', 'internal')", name="ck_call_records_direction"
        ),
        sa.CheckConstraint(
            "ended_by IS NULL OR ended_by IN ('caller', 'callee', 'system', 'pbx')",
            name="ck_call_records_ended_by",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_call_records_user_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("call_id", name="pk_call_records"),
    )
    op.create_index("ix_call_records_started_at", "call_records", ["started_at"])
    op.create_index("ix_call_records_user_id", "call_records", ["user_id"])
    op.create_index(
        "ix_call_records_open",
        "call_records",
        ["started_at"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_records_open", table_name="call_records")
    op.drop_index("ix_call_records_user_id", table_name="call_records")
    op.drop_index("ix_call_records_started_at", table_name="call_records")
    op.drop_table("call_records")
    op.drop_index("ix_routes_user_id", table_name="routes")
    op.drop_table("routes")
    op.drop_table("numbers")
    op.drop_table("users")
