"""Numbers' life: the catalogue they are bought from, rent and suspension, assignments.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

Adds ``catalogue_numbers`` (the inventory), ``number_assignments`` (which users
present which number, one default per user) and the rental columns of
``numbers``. Existing data: every number keeps working as before (active, no
rent: ``paid_until`` NULL, as numbers added by an operator outside the catalogue),
and every number whose routing rings a user is also assigned to that user, the
lowest such number being the user's default: the number the user presented
until now (the old rule took the first by E.164 order). Hand-checked against
``callcontrol.store.models``.

Depends on nothing of 0005 (developed in parallel); the lead re-chains at merge.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES = "number_type IN ('local', 'national', 'mobile', 'toll_free')"

_ASSIGN_ROUTED = """
INSERT INTO number_assignments (number_id, user_id, is_default, assigned_at)
SELECT r.number_id, r.user_id,
    CASE WHEN n.e164 = (
        SELECT MIN(n2.e164) FROM routes r2 JOIN numbers n2 ON n2.id = r2.number_id
        WHERE r2.kind = 'user' AND r2.user_id = r.user_id
    ) THEN TRUE ELSE FALSE END,
    CURRENT_TIMESTAMP
FROM routes r JOIN numbers n ON n.id = r.number_id
WHERE r.kind = 'user' AND r.user_id IS NOT NULL
"""


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "catalogue_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=3), nullable=False),
        sa.Column("number_type", sa.String(length=16), nullable=False),
        sa.Column("setup_micro", sa.BigInteger(), nullable=False),
        sa.Column("monthly_micro", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="available", nullable=False),
        sa.Column("reservation", sa.String(length=64), nullable=True),
        sa.Column("reserved_until", _utc(), nullable=True),
        sa.Column("available_at", _utc(), nullable=True),
        sa.Column("generation", sa.Integer(), server_default="1", nullable=False),
        sa.Column("imported_at", _utc(), nullable=False),
        sa.CheckConstraint(_TYPES, name="ck_catalogue_numbers_number_type"),
        sa.CheckConstraint(
            "state IN ('available', 'reserved', 'taken', 'ageing')",
            name="ck_catalogue_numbers_state",
        ),
        sa.CheckConstraint(
            "setup_micro >= 0 AND monthly_micro >= 0", name="ck_catalogue_numbers_prices"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_catalogue_numbers"),
        sa.UniqueConstraint("e164", name="uq_catalogue_numbers_e164"),
    )
    op.create_index(
        "ix_catalogue_numbers_search", "catalogue_numbers", ["country", "number_type", "state"]
    )
    with op.batch_alter_table("numbers") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), server_default="active", nullable=False)
        )
        batch.add_column(
            sa.Column("monthly_micro", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("generation", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("bought_at", _utc(), nullable=True))
        batch.add_column(sa.Column("paid_until", _utc(), nullable=True))
        batch.add_column(sa.Column("unpaid_since", _utc(), nullable=True))
        batch.add_column(sa.Column("suspended_at", _utc(), nullable=True))
        batch.create_check_constraint("ck_numbers_state", "state IN ('active', 'suspended')")
        batch.create_check_constraint("ck_numbers_monthly", "monthly_micro >= 0")
        batch.create_index("ix_numbers_paid_until", ["paid_until"])
    op.create_table(
        "number_assignments",
        sa.Column("number_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("assigned_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["numbers.id"],
            name="fk_number_assignments_number_id_numbers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_number_assignments_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number_id", "user_id", name="pk_number_assignments"),
    )
    op.create_index("ix_number_assignments_user_id", "number_assignments", ["user_id"])
    op.create_index(
        "ix_number_assignments_default",
        "number_assignments",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )
    op.execute(_ASSIGN_ROUTED)


def downgrade() -> None:
    op.drop_index("ix_number_assignments_default", table_name="number_assignments")
    op.drop_index("ix_number_assignments_user_id", table_name="number_assignments")
    op.drop_table("number_assignments")
    with op.batch_alter_table("numbers") as batch:
        batch.drop_index("ix_numbers_paid_until")
        batch.drop_constraint("ck_numbers_monthly", type_="check")
        batch.drop_constraint("ck_numbers_state", type_="check")
        for column in (
            "suspended_at",
            "unpaid_since",
            "paid_until",
            "bought_at",
            "generation",
            "monthly_micro",
            "state",
        ):
            batch.drop_column(column)
    op.drop_index("ix_catalogue_numbers_search", table_name="catalogue_numbers")
    op.drop_table("catalogue_numbers")
