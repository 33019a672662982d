"""Held deliveries: why a delivery waits for a digest, and which digest message carried it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable columns without defaults: SQLite adds them in place, no table rebuild.
    op.add_column("deliveries", sa.Column("hold", sa.String(10)))
    op.add_column("deliveries", sa.Column("digest", sa.Integer()))
    op.create_index("ix_deliveries_channel_sent_at", "deliveries", ["channel", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_channel_sent_at", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("digest")
        batch.drop_column("hold")
