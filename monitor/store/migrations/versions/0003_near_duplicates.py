"""Near-duplicate index: MinHash signatures on items, LSH band keys per item.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("signature", sa.LargeBinary()))
    op.create_table(
        "item_bands",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("band", sa.BigInteger(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "band", name="pk_item_bands"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name="fk_item_bands_item_id_items",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_item_bands_band", "item_bands", ["band"])
    op.create_index("ix_item_bands_fetched_at", "item_bands", ["fetched_at"])


def downgrade() -> None:
    op.drop_table("item_bands")
    op.drop_column("items", "signature")
