"""The ledger's hash chain; INSERT OR REPLACE (SQLite) and TRUNCATE (PostgreSQL) refused.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-28

Adds ``ledger_entries.entry_hash`` and the wallet's chain head ``wallets.last_hash``
(``callcontrol.domain.money`` defines the chain), and computes the chain for the
entries already there, in id order. The append-only triggers of 0002 are dropped
for that backfill and created again. New triggers:

- SQLite: ``ledger_entries_no_replace`` refuses an INSERT whose id or idempotency
  key exists. ``INSERT OR REPLACE`` would otherwise delete the old row without firing
  the DELETE trigger; a plain duplicate INSERT fails as before (a constraint error),
  now with this trigger's message.
- PostgreSQL: ``ledger_entries_no_truncate`` and ``wallets_no_truncate`` refuse
  TRUNCATE, which fires no row trigger.

Hand-checked against ``callcontrol.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from callcontrol.domain.money import GENESIS_HASH, chain_hash, entry_body

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = "ledger entries are append-only"
_NO_REPLACE = "ledger entries are append-only: an entry with this id or idempotency key exists"
_BATCH = 1000

_ledger = sa.table(
    "ledger_entries",
    sa.column("id", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("kind", sa.String()),
    sa.column("amount_micro", sa.BigInteger()),
    sa.column("reference", sa.String()),
    sa.column("idempotency_key", sa.String()),
    sa.column("description", sa.String()),
    sa.column("balance_after_micro", sa.BigInteger()),
    sa.column("entry_hash", sa.String()),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.add_column(
        "wallets",
        sa.Column("last_hash", sa.String(length=64), nullable=False, server_default=GENESIS_HASH),
    )
    op.add_column("ledger_entries", sa.Column("entry_hash", sa.String(length=64), nullable=True))
    _drop_append_only_triggers()
    head = _backfill()
    op.execute(sa.text("UPDATE wallets SET last_hash = :head").bindparams(head=head))
    with op.batch_alter_table("ledger_entries") as batch:  # SQLite: a table copy
        batch.alter_column("entry_hash", existing_type=sa.String(length=64), nullable=False)
    _create_append_only_triggers()
    _create_tamper_triggers()


def _backfill() -> str:
    """Hash every entry in id order; the chain head (the last entry's hash)."""
    bind = op.get_bind()
    head, last_id = GENESIS_HASH, 0
    while True:
        rows = bind.execute(
            sa.select(_ledger).where(_ledger.c.id > last_id).order_by(_ledger.c.id).limit(_BATCH)
        ).all()
        if not rows:
            return head
        hashes = []
        for row in rows:
            created_at: datetime = row.created_at
            if created_at.tzinfo is None:  # SQLite keeps naive UTC
                created_at = created_at.replace(tzinfo=UTC)
            body = entry_body(
                kind=row.kind,
                amount=row.amount_micro,
                created_at=created_at,
                reference=row.reference,
                idempotency_key=row.idempotency_key,
                description=row.description,
            )
            head = chain_hash(head, row.id, row.balance_after_micro, body)
            hashes.append({"row_id": row.id, "entry_hash": head})
        bind.execute(
            _ledger.update()
            .where(_ledger.c.id == sa.bindparam("row_id"))
            .values(entry_hash=sa.bindparam("entry_hash")),
            hashes,
        )
        last_id = rows[-1].id


def _create_append_only_triggers() -> None:
    """As migration 0002 created them."""
    if _sqlite():
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} "
                f"ON ledger_entries BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
        return
    op.execute(
        "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
    )


def _drop_append_only_triggers() -> None:
    if _sqlite():
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    else:  # the function stays (0002's downgrade drops it)
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")


def _create_tamper_triggers() -> None:
    if _sqlite():
        op.execute(
            "CREATE TRIGGER ledger_entries_no_replace BEFORE INSERT ON ledger_entries "
            "WHEN EXISTS (SELECT 1 FROM ledger_entries WHERE id = NEW.id) "
            "OR EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = NEW.idempotency_key) "
            f"BEGIN SELECT RAISE(ABORT, '{_NO_REPLACE}'); END"
        )
        return
    op.execute(
        "CREATE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION '% cannot be truncated: the ledger is append-only',"
        " TG_TABLE_NAME; END $$"
    )
    for table in ("ledger_entries", "wallets"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate()"
        )


def _drop_tamper_triggers() -> None:
    if _sqlite():
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_replace")
        return
    for table in ("ledger_entries", "wallets"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS refuse_truncate()")


def downgrade() -> None:
    _drop_tamper_triggers()
    _drop_append_only_triggers()  # SQLite: a table copy would drop them anyway
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("entry_hash")
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("last_hash")
    _create_append_only_triggers()
