"""The initial schema: feeds, items, matches, alerts, deliveries (the outbox).

Written by hand to equal ``monitor.store.tables`` at the time; datetimes are plain
``DateTime(timezone=True)`` here because the UTC conversion is Python-side only.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config_url", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("configured", sa.Boolean(), nullable=False),
        sa.Column("etag", sa.Text()),
        sa.Column("last_modified", sa.Text()),
        sa.Column("next_poll", _ts()),
        sa.Column("last_polled", _ts()),
        sa.Column("last_success", _ts()),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.Text()),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", _ts()),
        sa.Column("created", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_feeds"),
    )

    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("feed", sa.String(200), nullable=False),
        sa.Column("guid", sa.Text(), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("canonical_url", sa.Text()),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("published", _ts()),
        sa.Column("updated", _ts()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("story", sa.String(200), nullable=False),
        sa.Column("baseline", sa.Boolean(), nullable=False),
        sa.Column("fetched_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.UniqueConstraint("feed", "guid", name="uq_items_feed_guid"),
    )
    op.create_index("ix_items_canonical_url", "items", ["canonical_url"])
    op.create_index("ix_items_content_hash", "items", ["content_hash"])
    op.create_index("ix_items_story", "items", ["story"])
    op.create_index("ix_items_fetched_at", "items", ["fetched_at"])

    op.create_table(
        "matches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("snippet", sa.Text(), nullable=False),
        sa.Column("highlights", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("created", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_matches"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name="fk_matches_item_id_items", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("item_id", "rule", name="uq_matches_item_id_rule"),
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("story", sa.String(200), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("created", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name="fk_alerts_item_id_items", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("key", name="uq_alerts_key"),
    )
    op.create_index("ix_alerts_created", "alerts", ["created"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", _ts()),
        sa.Column("last_error", sa.Text()),
        sa.Column("sent_at", _ts()),
        sa.Column("created", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_deliveries_alert_id_alerts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("alert_id", name="uq_deliveries_alert_id"),
    )
    op.create_index(
        "ix_deliveries_status_next_attempt_at", "deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("alerts")
    op.drop_table("matches")
    op.drop_table("items")
    op.drop_table("feeds")
