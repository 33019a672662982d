"""SQL for the read-only views: the alert log, story groups, counts for metrics.

Functions take an open connection; ``Store`` owns transactions and states the contracts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, desc, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor.store import dialect
from monitor.store.rows import AlertRow, StoryRow
from monitor.store.tables import (
    DEAD,
    PENDING,
    SENT,
    alerts,
    announcements,
    deliveries,
    feeds,
    items,
    matches,
)


async def alert_log(conn: AsyncConnection, limit: int) -> list[AlertRow]:
    stmt = (
        select(
            alerts.c.id,
            alerts.c.rule,
            alerts.c.channel,
            items.c.feed,
            items.c.title,
            items.c.url,
            alerts.c.created,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.last_error,
            deliveries.c.sent_at,
        )
        .select_from(
            # Inner joins: every alert is inserted with its item and its one delivery.
            alerts.join(items, items.c.id == alerts.c.item_id).join(
                deliveries, deliveries.c.alert_id == alerts.c.id
            )
        )
        .order_by(alerts.c.created.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    return [AlertRow(**row._asdict()) for row in await conn.execute(stmt)]


async def stories(conn: AsyncConnection, limit: int) -> list[StoryRow]:
    count = func.count(items.c.id)
    first_seen = func.min(items.c.fetched_at).label("first_seen")
    groups = (
        select(items.c.story, first_seen, count.label("n"))
        .group_by(items.c.story)
        .having(or_(count > 1, items.c.story.in_(select(alerts.c.story))))
        .order_by(desc("first_seen"), items.c.story)
        .limit(limit)
    )
    found = list(await conn.execute(groups))
    members: dict[str, list[Row[*tuple[Any, ...]]]] = defaultdict(list)
    for batch in dialect.chunks([row.story for row in found]):
        rows = await conn.execute(
            select(items.c.story, items.c.feed, items.c.title, items.c.fetched_at)
            .where(items.c.story.in_(batch))
            .order_by(items.c.fetched_at, items.c.id)
        )
        for row in rows:
            members[row.story].append(row)
    return [
        StoryRow(
            story=row.story,
            title=members[row.story][0].title,
            first_seen=row.first_seen,
            items=row.n,
            feeds=tuple(dict.fromkeys(m.feed for m in members[row.story])),
            carried=tuple(_first_by_feed(members[row.story])),
        )
        for row in found
    ]


def _first_by_feed(rows: list[Row[*tuple[Any, ...]]]) -> list[tuple[str, datetime]]:
    first: dict[str, datetime] = {}
    for row in rows:  # ordered by fetch time
        first.setdefault(row.feed, row.fetched_at)
    return list(first.items())


async def counts(conn: AsyncConnection) -> dict[str, int]:
    def count(table: Any, *where: Any) -> Any:
        return select(func.count()).select_from(table).where(*where).scalar_subquery()

    stmt = select(
        count(feeds, feeds.c.configured).label("feeds"),
        count(items).label("items"),
        count(matches).label("matches"),
        count(alerts).label("alerts"),
        count(deliveries, deliveries.c.status == PENDING).label("pending"),
        count(deliveries, deliveries.c.status == SENT).label("sent"),
        count(deliveries, deliveries.c.status == DEAD).label("dead"),
    )
    row = (await conn.execute(stmt)).one()
    return {key: int(value) for key, value in row._asdict().items()}


async def claim_announcement(conn: AsyncConnection, backend: str, key: str, now: datetime) -> bool:
    stmt = dialect.insert_ignore(announcements, ["key"], backend).returning(announcements.c.key)
    return bool((await conn.execute(stmt, [{"key": key, "created": now}])).all())


async def release_announcement(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(announcements).where(announcements.c.key == key))
