"""a message's parts and history without foreign keys

`message_parts.message_id` and `message_events.message_id` lose their foreign keys to
`messages`. PostgreSQL checks a foreign key with a query per inserted row (a key-share lock
on the message), and an SMS inserts four such rows (its part, and its `queued`, `sent` and
`delivered` history lines): measured in-process on the projection's batches (20k
messages, batches of 110), PostgreSQL spent 85-96 instead of 120-141 µs per event without
them.

Nothing is lost by it: the API inserts a message and its first history line in one
statement; the projection writes parts and history only for messages it has locked
(`FOR UPDATE`) in the same transaction, so retention cannot delete one under it. What
`ON DELETE CASCADE` did, retention now does itself: the transaction that deletes old
messages deletes their parts and history after them (`smsgw_shared.store.repos.retention`).

Upgrading: an inbound service of an older version still running after this migration
deletes aged messages without their parts and history, and nothing deletes those later.
Stop the inbound services while migrating (or set `retention.messages_days = 0` on them
until they are replaced); the API and workers may keep running.

Revision ID: 0010_children_without_fk
Revises: 0009_event_reported_at
"""

from __future__ import annotations

from alembic import op

revision = "0010_children_without_fk"
down_revision = "0009_event_reported_at"
branch_labels = None
depends_on = None

_FKS = (
    ("fk_message_parts_message_id_messages", "message_parts"),
    ("fk_message_events_message_id_messages", "message_events"),
)


def upgrade() -> None:
    for name, table in _FKS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    for name, table in _FKS:
        # Rows whose message is gone (deleted without retention) would refuse the key.
        op.execute(
            f"DELETE FROM {table} c WHERE NOT EXISTS "  # noqa: S608 - fixed identifiers
            "(SELECT 1 FROM messages m WHERE m.id = c.message_id)"
        )
        op.create_foreign_key(name, table, "messages", ["message_id"], ["id"], ondelete="CASCADE")
