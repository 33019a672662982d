"""Items remember why a requested article text is missing or partial.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("text_problem", sa.Text()))


def downgrade() -> None:
    op.drop_column("items", "text_problem")
