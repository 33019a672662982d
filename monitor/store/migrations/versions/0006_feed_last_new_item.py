"""Feeds remember when they last brought a new item (feed health's "silent").

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("feeds", sa.Column("last_new_item", sa.DateTime(timezone=True)))
    # Filled once from the corpus; from now on each apply that stores new items keeps it.
    op.execute(
        "UPDATE feeds SET last_new_item = "
        "(SELECT max(items.fetched_at) FROM items WHERE items.feed = feeds.name)"
    )


def downgrade() -> None:
    op.drop_column("feeds", "last_new_item")
