"""The near-duplicate lookup reads the band index alone: (band, fetched_at, item_id).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_item_bands_band_fetched_at_item_id", "item_bands", ["band", "fetched_at", "item_id"]
    )
    op.drop_index("ix_item_bands_band", table_name="item_bands")


def downgrade() -> None:
    op.create_index("ix_item_bands_band", "item_bands", ["band"])
    op.drop_index("ix_item_bands_band_fetched_at_item_id", table_name="item_bands")
