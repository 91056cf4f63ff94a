"""incoming SMS stored whatever their content

- `inbound_messages` / `inbound_parts`: `sender` and `recipient` become `text` (an SMSC may
  send an address of any length; they were varchar(32) and such an SMS was refused), and a
  nullable `raw_hex` keeps the original text when characters PostgreSQL cannot hold (NUL,
  lone surrogates) were replaced with U+FFFD.
- Indexes that held whole numbers could not take long ones (a btree entry is at most 2704
  bytes): `ix_inbound_sender` becomes a hash index (equality is all it serves) and the open
  slot of a part is unique on the md5 of its sender and recipient.

Downgrading cuts numbers to 32 characters and drops `raw_hex` (the replaced text stays).

Revision ID: 0006_inbound_any_content
Revises: 0005_key_routes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_inbound_any_content"
down_revision = "0005_key_routes"
branch_labels = None
depends_on = None

_TABLES = ("inbound_messages", "inbound_parts")
_SLOT_TAIL = ["ref_bits", "ref", "total", "seq"]


def _open_slot(columns: list[str | sa.TextClause]) -> None:
    op.create_index(
        "uq_inbound_parts_open_slot",
        "inbound_parts",
        columns,
        unique=True,
        postgresql_where=sa.text("message_id IS NULL"),
        postgresql_nulls_not_distinct=True,
    )


def upgrade() -> None:
    op.drop_index("uq_inbound_parts_open_slot", table_name="inbound_parts")
    op.drop_index("ix_inbound_sender", table_name="inbound_messages")
    for table in _TABLES:
        for column, nullable in (("sender", False), ("recipient", True)):
            op.alter_column(
                table,
                column,
                type_=sa.Text(),
                existing_type=sa.String(32),
                existing_nullable=nullable,
            )
        op.add_column(table, sa.Column("raw_hex", sa.Text(), nullable=True))
    op.create_index("ix_inbound_sender", "inbound_messages", ["sender"], postgresql_using="hash")
    _open_slot(["route", sa.text("md5(sender)"), sa.text("md5(recipient)"), *_SLOT_TAIL])


def downgrade() -> None:
    op.drop_index("uq_inbound_parts_open_slot", table_name="inbound_parts")
    op.drop_index("ix_inbound_sender", table_name="inbound_messages")
    for table in _TABLES:
        op.drop_column(table, "raw_hex")
        for column, nullable in (("sender", False), ("recipient", True)):
            op.alter_column(
                table,
                column,
                type_=sa.String(32),
                existing_type=sa.Text(),
                existing_nullable=nullable,
                postgresql_using=f"left({column}, 32)",
            )
    op.create_index("ix_inbound_sender", "inbound_messages", ["sender"])
    _open_slot(["route", "sender", "recipient", *_SLOT_TAIL])
