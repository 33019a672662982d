"""Items remember when their feed last listed them; retention prunes by that.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable: SQLite cannot add a NOT NULL column without a default to a filled table, and
    # rebuilding `items` would cascade deletes to the tables that refer to it. Every insert
    # sets it, and the rows already stored get their fetch time here.
    op.add_column("items", sa.Column("last_seen", sa.DateTime(timezone=True)))
    op.execute("UPDATE items SET last_seen = fetched_at")
    op.create_index("ix_items_last_seen", "items", ["last_seen"])
    op.create_index("ix_items_feed_last_seen", "items", ["feed", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_items_feed_last_seen", table_name="items")
    op.drop_index("ix_items_last_seen", table_name="items")
    op.drop_column("items", "last_seen")
