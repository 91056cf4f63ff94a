"""history lines keep the time their report gave

`message_events.reported_at`: the time the worker's report itself gave (an SMSC receipt's
minute-resolution `done date`), next to `occurred_at` (when it happened, never before the
submission it reports on). Null for lines no report gave a time to (the API's, the
scheduler's, a derived `partially_delivered`). Lines written before this migration have
none: their reported time stays in `detail` only.

Revision ID: 0009_event_reported_at
Revises: 0008_inbound_encoding_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_event_reported_at"
down_revision = "0008_inbound_encoding_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table.
    op.add_column(
        "message_events", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("message_events", "reported_at")
