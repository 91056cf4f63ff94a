"""indexes the retention sweep deletes through

- `ix_deliveries_created`: finished webhook deliveries by age.
- `ix_inbound_parts_assembled`: parts of assembled incoming SMS by age.
- `ix_pending_reports_received`: unmatched delivery reports by age.

Built CONCURRENTLY: the tables are written all the time by a running gateway.

Revision ID: 0007_retention_indexes
Revises: 0006_inbound_any_content
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_retention_indexes"
down_revision = "0006_inbound_any_content"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_deliveries_created", "webhook_deliveries", "created_at", "status <> 'pending'"),
    ("ix_inbound_parts_assembled", "inbound_parts", "received_at", "message_id IS NOT NULL"),
    ("ix_pending_reports_received", "pending_reports", "received_at", None),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column, where in _INDEXES:
            op.create_index(
                name,
                table,
                [column],
                postgresql_where=sa.text(where) if where else None,
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in _INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
