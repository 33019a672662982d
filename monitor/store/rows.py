"""Values the store returns that are its own (the domain values live in ``monitor.model``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Applied:
    """What one ``Store.apply`` actually inserted (rows already stored are not counted)."""

    items: int
    matches: int
    alerts: int  # each with one pending delivery
    updated: int = 0  # stored items rewritten because their text changed materially
    channels: tuple[str, ...] = ()  # the channel of each alert inserted


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One line of the alert log (``newsmon alerts``): the alert, its item and its delivery."""

    id: int
    rule: str
    channel: str
    feed: str  # the feed of the item that triggered it
    title: str
    url: str | None
    created: datetime
    status: str  # 'pending' | 'sent' | 'dead'
    attempts: int
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoryRow:
    """One story group (``newsmon stories``)."""

    story: str
    title: str  # the title of its first item
    first_seen: datetime  # when its first item was fetched
    items: int
    feeds: tuple[str, ...]  # the feeds that carried it, in the order they did
    carried: tuple[tuple[str, datetime], ...] = ()  # (feed, when its first copy was fetched)
