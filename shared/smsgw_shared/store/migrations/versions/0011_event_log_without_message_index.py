"""event_log without its index on message_id

No query reads `event_log` by `message_id` (streams read by `id`, webhooks and dedupe by
`event_id`, retention by `created_at`), yet every event paid an entry in
`ix_event_log_message`. Measured in-process on the projection's batches (20k messages'
`sent` and receipt in batches of 110, alternated twice): PostgreSQL spent 82.5-83.5 instead
of 86.5-88.7 µs per event without it.

Dropping an index only takes a brief exclusive lock on `event_log` (no rewrite); services
of any version may keep running while it is applied.

Revision ID: 0011_event_log_lean
Revises: 0010_children_without_fk
"""

from __future__ import annotations

from alembic import op

revision = "0011_event_log_lean"
down_revision = "0010_children_without_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_event_log_message", table_name="event_log")


def downgrade() -> None:
    op.create_index("ix_event_log_message", "event_log", ["message_id"])
