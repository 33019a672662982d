"""Items keep their first fetch time and record their last material update apart; an alert
says which text version it follows up.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

# model.Alert.key: rule, story, channel and, on a follow-up, the revision, joined by \x1f.
_SEP = "\x1f"


def upgrade() -> None:
    # NULL: never updated. Before this revision an update overwrote fetched_at; that moment
    # is lost, so rows updated earlier keep the later fetched_at they were given.
    op.add_column("items", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.add_column("alerts", sa.Column("revision", sa.String(64), nullable=False, server_default=""))
    # Follow-ups queued before this revision carry their revision only in their key.
    alerts = sa.table(
        "alerts", sa.column("id", sa.Integer()), sa.column("key", sa.Text()), sa.column("revision")
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(alerts.c.id, alerts.c.key).where(alerts.c.key.like(f"%{_SEP}%{_SEP}%{_SEP}%"))
    )
    for row in list(rows):
        parts = row.key.split(_SEP)
        if len(parts) == 4 and parts[3]:
            bind.execute(sa.update(alerts).where(alerts.c.id == row.id).values(revision=parts[3]))


def downgrade() -> None:
    op.drop_column("alerts", "revision")
    op.drop_column("items", "updated_at")
