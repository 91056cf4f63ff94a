"""inbound reassembly bookkeeping and webhook secret rotation

- `webhooks.secrets_rotated_at`: the previous secret stays valid 24 h after a rotation.
- `inbound_parts.message_id`: parts are kept (linked to the assembled message) after
  assembly so a late duplicate of a part is recognised; only open slots (message_id IS NULL)
  are unique, and the slot now includes the recipient and the reference size (an 8-bit and a
  16-bit reference with the same value are different messages).

Revision ID: 0002_inbound
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_inbound"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhooks", sa.Column("secrets_rotated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("inbound_parts", sa.Column("message_id", sa.Uuid(), nullable=True))
    op.drop_constraint("uq_inbound_parts_slot", "inbound_parts", type_="unique")
    op.create_index(
        "uq_inbound_parts_open_slot",
        "inbound_parts",
        ["route", "sender", "recipient", "ref_bits", "ref", "total", "seq"],
        unique=True,
        postgresql_where=sa.text("message_id IS NULL"),
        postgresql_nulls_not_distinct=True,
    )
    op.create_index(
        "ix_inbound_parts_open",
        "inbound_parts",
        ["received_at"],
        postgresql_where=sa.text("message_id IS NULL"),
    )
    op.create_index("ix_inbound_parts_message", "inbound_parts", ["message_id"])
    op.create_index("ix_event_log_message", "event_log", ["message_id"])
    op.create_index("ix_event_log_created", "event_log", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_event_log_created", table_name="event_log")
    op.drop_index("ix_event_log_message", table_name="event_log")
    op.drop_index("ix_inbound_parts_message", table_name="inbound_parts")
    op.drop_index("ix_inbound_parts_open", table_name="inbound_parts")
    op.drop_index("uq_inbound_parts_open_slot", table_name="inbound_parts")
    op.execute("DELETE FROM inbound_parts WHERE message_id IS NOT NULL")
    op.create_unique_constraint(
        "uq_inbound_parts_slot", "inbound_parts", ["route", "sender", "ref", "total", "seq"]
    )
    op.drop_column("inbound_parts", "message_id")
    op.drop_column("webhooks", "secrets_rotated_at")
