"""Items keep their article page's own title, author and date beside the feed's.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # NOT NULL with a server default, so both SQLite and PostgreSQL can add them to a filled
    # table; the pages of items stored before this revision are not fetched again, so their
    # metadata stays "" / NULL.
    op.add_column("items", sa.Column("page_title", sa.Text(), nullable=False, server_default=""))
    op.add_column("items", sa.Column("page_author", sa.Text(), nullable=False, server_default=""))
    op.add_column("items", sa.Column("page_published", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("items", "page_published")
    op.drop_column("items", "page_author")
    op.drop_column("items", "page_title")
