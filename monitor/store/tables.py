"""The schema: SQLAlchemy Core tables on one ``MetaData``.

This module is the reference the migrations must equal: ``migrations/versions`` is written by
hand to produce exactly these tables, and a test compares a migrated database with ``metadata``.
A change here is a change there, in the same commit, as a new revision.

Datetimes are stored through :class:`UTCDateTime`: tz-aware UTC in, tz-aware UTC out, on every
backend. SQLite has no time zone type, so it holds naive UTC text whose fixed-width format
(``YYYY-MM-DD HH:MM:SS.ffffff``) sorts and compares in time order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Named constraints so that migrations can refer to them by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is tz-aware UTC on the Python side, whatever the backend.

    Binding a naive datetime raises ``ValueError``: a naive value is a bug upstream (every
    value in ``monitor.model`` is aware), and guessing its zone would silently shift it.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime given to the store: {value!r}; pass tz-aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite's DATETIME text has no offset; storing naive UTC keeps text order = time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


feeds = Table(
    "feeds",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("config_url", Text, nullable=False),  # as written in the config
    Column("url", Text, nullable=False),  # the one polled: differs after a 301/308
    Column("configured", Boolean, nullable=False),  # False: gone from the config, kept for history
    Column("etag", Text),
    Column("last_modified", Text),
    Column("next_poll", UTCDateTime),  # NULL: due now
    Column("last_polled", UTCDateTime),
    Column("last_success", UTCDateTime),
    Column("error_count", Integer, nullable=False),
    Column("last_error", Text),
    Column("polls", Integer, nullable=False),
    Column("disabled_reason", Text),
    Column("lease_owner", String(200)),
    Column("lease_until", UTCDateTime),
    Column("created", UTCDateTime, nullable=False),
    Column("last_new_item", UTCDateTime),  # when an apply last stored a new item (0006)
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Deliberately no foreign key to feeds: the corpus outlives a feed's configuration.
    Column("feed", String(200), nullable=False),
    Column("guid", Text, nullable=False),
    Column("url", Text),
    Column("canonical_url", Text),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("published", UTCDateTime),
    Column("updated", UTCDateTime),
    Column("text", Text, nullable=False),
    Column("text_problem", Text),  # why the article text is missing or partial (0002)
    # The article page's own title, author and date (0009), beside the feed's; "" / NULL when
    # the page gave none or was never fetched.
    Column("page_title", Text, nullable=False, server_default=""),
    Column("page_author", Text, nullable=False, server_default=""),
    Column("page_published", UTCDateTime),
    Column("signature", LargeBinary),  # MinHash signature; NULL below the near-dup minimum (0003)
    Column("content_hash", String(128), nullable=False),
    Column("story", String(200), nullable=False),
    Column("baseline", Boolean, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),  # first stored; an update keeps it
    Column("updated_at", UTCDateTime),  # last material update of its text; NULL: none (0007)
    # When a poll last found the item in its feed (0008): set on insert, refreshed (at most
    # hourly) while the feed lists it. Retention prunes by it, not by fetched_at: an item
    # pruned while its feed still lists it would come back as new and alert again. Nullable
    # only because SQLite cannot add a NOT NULL column to a filled table; never NULL.
    Column("last_seen", UTCDateTime),
    UniqueConstraint("feed", "guid"),
    Index(None, "canonical_url"),
    Index(None, "content_hash"),
    Index(None, "story"),
    Index(None, "fetched_at"),
    Index(None, "last_seen"),  # retention's DELETE
    Index(None, "feed", "last_seen"),  # each feed's latest listing, which retention keeps
)

# The near-duplicate index (0003): one row per LSH band of an item's signature. Rows older
# than the dedupe window are pruned; a lookup joins a batch's bands to find candidate stories.
item_bands = Table(
    "item_bands",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("band", BigInteger, primary_key=True),
    Column("fetched_at", UTCDateTime, nullable=False),
    # Covers the near-duplicate lookup (band IN …, fetched_at in the window): no table row read.
    Index(None, "band", "fetched_at", "item_id"),
    Index(None, "fetched_at"),
)

matches = Table(
    "matches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("snippet", Text, nullable=False),
    Column("highlights", Text, nullable=False),  # JSON: [[start, end], ...]
    Column("fields", Text, nullable=False),  # JSON: ["title", ...]
    Column("created", UTCDateTime, nullable=False),
    UniqueConstraint("item_id", "rule"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),  # model.Alert.key: (rule, story, channel)
    Column("rule", String(200), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("story", String(200), nullable=False),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("priority", String(20), nullable=False),
    # model.Alert.revision: the text version a follow-up is about; "" for a first alert (0007)
    Column("revision", String(64), nullable=False, server_default=""),
    Column("created", UTCDateTime, nullable=False),
    UniqueConstraint("key"),
    Index(None, "created"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("status", String(10), nullable=False),  # 'pending' | 'held' | 'sent' | 'dead'
    Column("attempts", Integer, nullable=False),
    # pending: due for an attempt; held: when the digest that will carry it falls due
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_until", UTCDateTime),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    Column("created", UTCDateTime, nullable=False),
    # Why it was (or is) held for a digest: 'digest' | 'quiet' | 'rate'; NULL: never held (0004).
    Column("hold", String(10)),
    # Rows sent in one digest message share this number (the smallest delivery id among
    # them), so the hourly limit counts messages, not alerts; NULL: sent on its own (0004).
    Column("digest", Integer),
    UniqueConstraint("alert_id"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "channel", "sent_at"),  # the hourly limit counts a channel's recent sends (0004)
)

PENDING, HELD, SENT, DEAD = "pending", "held", "sent", "dead"
# Why a delivery is held: the channel's digest cron, its quiet hours, its max_per_hour.
HOLD_DIGEST, HOLD_QUIET, HOLD_RATE = "digest", "quiet", "rate"


# Announcements made once per episode (feed health on the admin channel), across restarts and
# replicas: the first to insert the key sends it (0005).
announcements = Table(
    "announcements",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("created", UTCDateTime, nullable=False),
)
