"""SQL for the corpus: items, their matches and the alerts they raise.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.rows import Applied
from monitor.store.tables import PENDING, alerts, deliveries, items, matches


async def known(
    conn: AsyncConnection,
    feed: str,
    guids: Collection[str],
    urls: Collection[str],
    hashes: Collection[str],
) -> model.KnownState:
    seen: set[str] = set()
    for batch in dialect.chunks(set(guids)):
        rows = await conn.execute(
            select(items.c.guid).where(items.c.feed == feed, items.c.guid.in_(batch))
        )
        seen.update(rows.scalars())
    return model.KnownState(
        seen_guids=frozenset(seen),
        story_by_url=await _earliest_story(conn, items.c.canonical_url, urls),
        story_by_hash=await _earliest_story(conn, items.c.content_hash, hashes),
    )


async def store(
    conn: AsyncConnection, backend: str, decision: model.Decision, now: datetime
) -> Applied:
    """Insert what `decision` holds that is not stored yet; count what was inserted."""
    new_items = await _insert_items(conn, backend, decision.items, now)
    refs = {(m.feed, m.guid) for m in decision.matches}
    refs |= {(a.feed, a.guid) for a in decision.alerts}
    ids = await _item_ids(conn, refs)
    missing = refs - ids.keys()
    if missing:
        raise ValueError(f"matches or alerts refer to items not stored: {sorted(missing)}")

    new_matches = 0
    if decision.matches:
        rows = [
            {
                "item_id": ids[(m.feed, m.guid)],
                "rule": m.match.rule,
                "snippet": m.match.snippet,
                "highlights": json.dumps([list(span) for span in m.match.highlights]),
                "fields": json.dumps(list(m.match.fields)),
                "created": now,
            }
            for m in decision.matches
        ]
        stmt = dialect.insert_ignore(matches, ["item_id", "rule"], backend)
        new_matches = len((await conn.execute(stmt.returning(matches.c.id), rows)).all())

    new_alerts: list[Row[*tuple[Any, ...]]] = []
    if decision.alerts:
        rows = [
            {
                "key": a.key,
                "rule": a.rule,
                "channel": a.channel,
                "story": a.story,
                "item_id": ids[(a.feed, a.guid)],
                "priority": a.priority,
                "created": now,
            }
            for a in decision.alerts
        ]
        # The unique key is what keeps "one alert per (rule, story, channel)" across polls,
        # restarts and replicas: only the rows RETURNING gives back get a delivery.
        stmt = dialect.insert_ignore(alerts, ["key"], backend)
        result = await conn.execute(stmt.returning(alerts.c.id, alerts.c.channel), rows)
        new_alerts = list(result.all())
    if new_alerts:
        await conn.execute(
            deliveries.insert(),
            [
                {
                    "alert_id": row.id,
                    "channel": row.channel,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created": now,
                }
                for row in new_alerts
            ],
        )
    return Applied(items=new_items, matches=new_matches, alerts=len(new_alerts))


async def since(conn: AsyncConnection, moment: datetime, limit: int) -> list[model.Item]:
    rows = await conn.execute(
        select(items)
        .where(items.c.fetched_at >= moment)
        .order_by(items.c.fetched_at, items.c.id)
        .limit(limit)
    )
    return [to_item(row) for row in rows]


def to_item(row: Row[*tuple[Any, ...]]) -> model.Item:
    """The ``model.Item`` of a row holding the item columns under their own names."""
    return model.Item(
        feed=row.feed,
        guid=row.guid,
        url=row.url,
        title=row.title,
        summary=row.summary,
        content=row.content,
        author=row.author,
        published=row.published,
        updated=row.updated,
        text=row.text,
        text_problem=row.text_problem,
    )


async def _insert_items(
    conn: AsyncConnection, backend: str, records: Sequence[model.ItemRecord], now: datetime
) -> int:
    if not records:
        return 0
    rows = [
        {
            "feed": r.item.feed,
            "guid": r.item.guid,
            "url": r.item.url,
            "canonical_url": r.canonical_url,
            "title": r.item.title,
            "summary": r.item.summary,
            "content": r.item.content,
            "author": r.item.author,
            "published": r.item.published,
            "updated": r.item.updated,
            "text": r.item.text,
            "text_problem": r.item.text_problem,
            "content_hash": r.content_hash,
            "story": r.story,
            "baseline": r.baseline,
            "fetched_at": now,
        }
        for r in records
    ]
    stmt = dialect.insert_ignore(items, ["feed", "guid"], backend)
    return len((await conn.execute(stmt.returning(items.c.id), rows)).all())


async def _item_ids(
    conn: AsyncConnection, refs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    by_feed: dict[str, list[str]] = defaultdict(list)
    for feed, guid in refs:
        by_feed[feed].append(guid)
    ids: dict[tuple[str, str], int] = {}
    for feed, guids in by_feed.items():
        for batch in dialect.chunks(guids):
            rows = await conn.execute(
                select(items.c.id, items.c.guid).where(
                    items.c.feed == feed, items.c.guid.in_(batch)
                )
            )
            ids.update({(feed, row.guid): row.id for row in rows})
    return ids


async def _earliest_story(
    conn: AsyncConnection, column: Any, values: Collection[str]
) -> dict[str, str]:
    stories: dict[str, str] = {}
    for batch in dialect.chunks(set(values)):
        rows = await conn.execute(
            select(column.label("value"), items.c.story)
            .where(column.in_(batch))
            .order_by(items.c.fetched_at, items.c.id)
        )
        for row in rows:
            stories.setdefault(row.value, row.story)
    return stories
