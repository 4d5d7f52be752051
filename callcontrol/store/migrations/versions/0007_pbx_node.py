"""Scale-out: each call record names the PBX (node) its channels run on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

Adds ``call_records.pbx_node``: the app serving one PBX re-adopts and settles only its
own node's open calls, never another PBX's live ones (several Asterisk servers on one
database). Existing records keep NULL: they were written while one PBX served the
database, and every node treats such a record as its own (the behaviour before).
Hand-checked against ``callcontrol.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_records") as batch:
        batch.add_column(sa.Column("pbx_node", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_records") as batch:
        batch.drop_column("pbx_node")
