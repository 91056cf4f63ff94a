"""less written a message accepted

- `outbox.body` may be NULL: the accept path no longer copies each job's body into the
  outbox (the API publishes the body it built in memory; the relay makes a body-less job
  again from the message's row, which holds everything the job says).
- `ix_messages_reference` and `ix_messages_expiry` leave out the rows they can never
  find (no reference; no expiry), which are most sends.

Indexes built CONCURRENTLY: the table is written all the time by a running gateway.

Revision ID: 0004_lean_accept
Revises: 0003_deliveries_by_url
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_lean_accept"
down_revision = "0003_deliveries_by_url"
branch_labels = None
depends_on = None

_EXPIRY = "status IN ('queued','sending','sent')"


def _swap(name: str, column: str, where: str | None) -> None:
    """Build the index under a temporary name, drop the old one, take its name."""
    with op.get_context().autocommit_block():
        op.create_index(
            f"{name}_new",
            "messages",
            [column],
            postgresql_where=sa.text(where) if where else None,
            postgresql_concurrently=True,
        )
        op.drop_index(name, table_name="messages", postgresql_concurrently=True)
        op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def upgrade() -> None:
    op.alter_column("outbox", "body", existing_type=sa.Text(), nullable=True)
    _swap("ix_messages_reference", "reference", "reference IS NOT NULL")
    _swap("ix_messages_expiry", "expires_at", f"{_EXPIRY} AND expires_at IS NOT NULL")


def downgrade() -> None:
    _swap("ix_messages_expiry", "expires_at", _EXPIRY)
    _swap("ix_messages_reference", "reference", None)
    # Body-less jobs get their body back before the column may not be NULL again.
    op.execute(
        """
        UPDATE outbox o SET body = json_build_object(
            'v', 1, 'type', 'send_job', 'job_id', m.job_id::text,
            'message_id', m.id::text, 'batch_id', m.batch_id::text, 'to', m.to_number,
            'sender', m.sender, 'text', m.text, 'encoding', m.encoding,
            'parts', m.parts_count, 'flash', m.flash, 'validity', m.validity, 'dlr', m.dlr,
            'route', m.route, 'attempt', 0, 'created_at', m.created_at,
            'reference', m.reference)::text
        FROM messages m WHERE o.body IS NULL AND m.id = o.message_id
        """
    )
    op.execute("DELETE FROM outbox WHERE body IS NULL")
    op.alter_column("outbox", "body", existing_type=sa.Text(), nullable=False)
