"""pending webhook deliveries indexed per URL

- `ix_deliveries_url_due`: pending deliveries by (url, next_attempt_at). The dispatcher
  claims per URL (a skip scan over the distinct URLs, then each URL's oldest due rows), so a
  dead endpoint's backlog is never walked through while claiming for the others.
  `ix_deliveries_due` stays: the backlog count (all URLs, due now) still uses it.

Built CONCURRENTLY: the table is written all the time by a running gateway.

Revision ID: 0003_deliveries_by_url
Revises: 0002_inbound
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_deliveries_by_url"
down_revision = "0002_inbound"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_deliveries_url_due",
            "webhook_deliveries",
            ["url", "next_attempt_at"],
            postgresql_where=sa.text("status = 'pending'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_deliveries_url_due",
            table_name="webhook_deliveries",
            postgresql_concurrently=True,
        )
