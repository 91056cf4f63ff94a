"""route-limited API keys

- `api_keys.routes`: the routes a key may send through and see (`modem:m2`, `smpp:b1`,
  `pool:name`, `modem:*`); empty means every route (the behaviour before this revision).

Revision ID: 0005_key_routes
Revises: 0004_lean_accept
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_key_routes"
down_revision = "0004_lean_accept"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("routes", sa.ARRAY(sa.String(80)), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_column("api_keys", "routes")
