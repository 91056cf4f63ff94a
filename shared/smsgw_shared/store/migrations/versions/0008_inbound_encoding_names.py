"""incoming SMS: room for every encoding name a worker gives

`inbound_messages.encoding` / `inbound_parts.encoding` were varchar(8): an SMS in SMPP
data_coding 6 or 7 (SMPP 3.4 §5.2.19), named `iso8859-5` / `iso8859-8`, was refused on every
attempt and dead-lettered. They become varchar(16).

Downgrading cuts longer names to 8 characters.

Revision ID: 0008_inbound_encoding_names
Revises: 0007_retention_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_inbound_encoding_names"
down_revision = "0007_retention_indexes"
branch_labels = None
depends_on = None

_TABLES = ("inbound_messages", "inbound_parts")


def upgrade() -> None:
    for table in _TABLES:
        op.alter_column(
            table, "encoding", type_=sa.String(16), existing_type=sa.String(8), nullable=False
        )


def downgrade() -> None:
    for table in _TABLES:
        op.alter_column(
            table,
            "encoding",
            type_=sa.String(8),
            existing_type=sa.String(16),
            nullable=False,
            postgresql_using="left(encoding, 8)",
        )
