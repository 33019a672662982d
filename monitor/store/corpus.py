"""SQL for the corpus: items, their matches and the alerts they raise.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.rows import Applied
from monitor.store.tables import PENDING, alerts, deliveries, item_bands, items, matches

log = logging.getLogger("newsmon")

# At most this many near-duplicate candidates are read for one batch (50 items share ~800
# band keys). Texts of one outlet's template (a daily calendar) can make a band common; past
# this bound the newest candidates are kept and a warning says recall may suffer.
MAX_NEAR_CANDIDATES = 20_000
# A stored item its feed lists again has its `last_seen` rewritten only when it is older than
# this: retention counts in days, so an hour's lag is nothing, and an unchanged feed polled
# every few minutes does not rewrite every one of its rows on every poll.
LISTED_REFRESH = timedelta(hours=1)


async def known(
    conn: AsyncConnection,
    feed: str,
    guids: Collection[str],
    urls: Collection[str],
    hashes: Collection[str],
    *,
    bands: Collection[int] = (),
    since: datetime | None = None,
) -> model.KnownState:
    seen: dict[str, model.Seen] = {}
    for batch in dialect.chunks(set(guids)):
        rows = await conn.execute(
            select(items.c.guid, items.c.content_hash, items.c.signature, items.c.story).where(
                items.c.feed == feed, items.c.guid.in_(batch)
            )
        )
        for row in rows:
            seen[row.guid] = model.Seen(row.content_hash, row.signature, row.story)
    return model.KnownState(
        story_by_url=await _earliest_story(conn, items.c.canonical_url, urls),
        story_by_hash=await _earliest_story(conn, items.c.content_hash, hashes),
        own_story_by_hash=await _earliest_story(
            conn, items.c.content_hash, hashes, items.c.feed == feed
        ),
        near=await _near(conn, bands, since),
        seen=seen,
    )


async def articles(
    conn: AsyncConnection, feed: str, guids: Collection[str], urls: Collection[str]
) -> model.StoredArticles:
    by_guid: dict[str, model.ArticleText] = {}
    for batch in dialect.chunks(set(guids)):
        rows = await conn.execute(
            select(items.c.guid, *_ARTICLE).where(items.c.feed == feed, items.c.guid.in_(batch))
        )
        for row in rows:
            by_guid[row.guid] = _article(row)
    by_url: dict[str, model.ArticleText] = {}
    for batch in dialect.chunks(set(urls)):
        rows = await conn.execute(
            select(items.c.canonical_url, *_ARTICLE)
            .where(items.c.canonical_url.in_(batch), items.c.text != "")
            .order_by(
                sa.func.coalesce(items.c.updated_at, items.c.fetched_at).desc(), items.c.id.desc()
            )
        )
        for row in rows:
            by_url.setdefault(row.canonical_url, _article(row))
    return model.StoredArticles(by_guid, by_url)


# The columns of what an article page gave its item (model.ArticleText).
_ARTICLE = (
    items.c.text,
    items.c.text_problem,
    items.c.page_title,
    items.c.page_author,
    items.c.page_published,
)


def _article(row: Row[*tuple[Any, ...]]) -> model.ArticleText:
    return model.ArticleText(
        row.text, row.text_problem, row.page_title, row.page_author, row.page_published
    )


async def _near(
    conn: AsyncConnection, bands: Collection[int], since: datetime | None
) -> tuple[model.NearCandidate, ...]:
    found: dict[int, tuple[str, bytes]] = {}
    matched: dict[int, list[int]] = {}
    for batch in dialect.chunks(set(bands)):
        query = (
            select(items.c.id, items.c.story, items.c.signature, item_bands.c.band)
            .select_from(item_bands.join(items, items.c.id == item_bands.c.item_id))
            .where(item_bands.c.band.in_(batch), items.c.signature.is_not(None))
            .order_by(item_bands.c.fetched_at.desc())
            .limit(MAX_NEAR_CANDIDATES)
        )
        if since is not None:
            query = query.where(item_bands.c.fetched_at >= since)
        for row in await conn.execute(query):
            found.setdefault(row.id, (row.story, row.signature))
            matched.setdefault(row.id, []).append(row.band)
        if len(found) >= MAX_NEAR_CANDIDATES:
            log.warning("near-duplicate candidates capped at %d", MAX_NEAR_CANDIDATES)
            break
    return tuple(
        model.NearCandidate(story, signature, tuple(matched[item_id]))
        for item_id, (story, signature) in found.items()
    )


async def store(
    conn: AsyncConnection, backend: str, decision: model.Decision, now: datetime
) -> Applied:
    """Insert what `decision` holds that is not stored yet; count what was inserted."""
    new_items = await _insert_items(conn, backend, decision.items, now)
    updated = await _update_items(conn, decision.updates, now)
    await _still_listed(conn, decision.feed, decision.still_listed, now)
    refs = {(m.feed, m.guid) for m in decision.matches}
    refs |= {(a.feed, a.guid) for a in decision.alerts}
    banded = {(r.item.feed, r.item.guid): r.bands for r in decision.items if r.bands}
    banded |= {(u.item.feed, u.item.guid): u.bands for u in decision.updates if u.bands}
    ids = await _item_ids(conn, refs | banded.keys())
    missing = refs - ids.keys()
    if missing:
        raise ValueError(f"matches or alerts refer to items not stored: {sorted(missing)}")
    await _index_bands(conn, backend, {ids[ref]: keys for ref, keys in banded.items()}, now)

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
                "revision": a.revision,
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
    return Applied(
        items=new_items,
        matches=new_matches,
        alerts=len(new_alerts),
        updated=updated,
        channels=tuple(row.channel for row in new_alerts),
    )


# Where a walk over the corpus stopped: the (fetched_at, id) of the last item it read.
Cursor = tuple[datetime, int]


async def since(
    conn: AsyncConnection, moment: datetime, limit: int, after: Cursor | None = None
) -> tuple[list[model.Item], Cursor | None]:
    """Items fetched at or after `moment`, in (fetched_at, id) order, past `after`; at most
    `limit`, and the cursor of the last one (None when there is none)."""
    query = select(items).where(items.c.fetched_at >= moment)
    if after is not None:
        at, last = after
        query = query.where(
            sa.or_(items.c.fetched_at > at, sa.and_(items.c.fetched_at == at, items.c.id > last))
        )
    rows = (await conn.execute(query.order_by(items.c.fetched_at, items.c.id).limit(limit))).all()
    cursor = (rows[-1].fetched_at, rows[-1].id) if rows else None
    return [to_item(row) for row in rows], cursor


async def find(conn: AsyncConnection, wanted: str, canonical: str | None) -> list[model.Item]:
    """Items whose GUID or URL is `wanted`, or whose canonical URL is `canonical`; oldest first."""
    match = sa.or_(items.c.guid == wanted, items.c.url == wanted)
    if canonical:
        match = sa.or_(match, items.c.canonical_url == canonical)
    rows = await conn.execute(select(items).where(match).order_by(items.c.fetched_at, items.c.id))
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
        page_title=row.page_title,
        page_author=row.page_author,
        page_published=row.page_published,
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
            "page_title": r.item.page_title,
            "page_author": r.item.page_author,
            "page_published": r.item.page_published,
            "signature": r.signature,
            "content_hash": r.content_hash,
            "story": r.story,
            "baseline": r.baseline,
            "fetched_at": now,
            "last_seen": now,
        }
        for r in records
    ]
    stmt = dialect.insert_ignore(items, ["feed", "guid"], backend)
    return len((await conn.execute(stmt.returning(items.c.id), rows)).all())


async def _update_items(
    conn: AsyncConnection, updates: Sequence[model.ItemUpdate], now: datetime
) -> int:
    """Rewrite items whose text changed materially; they keep their story, their id and their
    first fetch time, and record `now` as their last update. The page's metadata is rewritten
    only when the update carries some: it comes from the one page fetch, and an update that
    reuses the stored text without it must not erase it."""
    for u in updates:
        page = {}
        if u.item.page_title or u.item.page_author or u.item.page_published is not None:
            page = {
                "page_title": u.item.page_title,
                "page_author": u.item.page_author,
                "page_published": u.item.page_published,
            }
        await conn.execute(
            sa.update(items)
            .where(items.c.feed == u.item.feed, items.c.guid == u.item.guid)
            .values(
                **page,
                url=u.item.url,
                title=u.item.title,
                summary=u.item.summary,
                content=u.item.content,
                author=u.item.author,
                published=u.item.published,
                updated=u.item.updated,
                text=u.item.text,
                text_problem=u.item.text_problem,
                content_hash=u.content_hash,
                signature=u.signature,
                # fetched_at stays: the story's first-seen and "also reported by" times are
                # when the item first came, not when it was last rewritten.
                updated_at=now,
                last_seen=now,
            )
        )
    return len(updates)


async def _still_listed(
    conn: AsyncConnection, feed: str, guids: Sequence[str], now: datetime
) -> None:
    """Refresh `last_seen` of the feed's stored items its document lists again (one UPDATE
    per chunk, touching only rows older than ``LISTED_REFRESH``)."""
    stale = now - LISTED_REFRESH
    for batch in dialect.chunks(list(guids)):
        await conn.execute(
            sa.update(items)
            .where(items.c.feed == feed, items.c.guid.in_(batch), items.c.last_seen < stale)
            .values(last_seen=now)
        )


async def _index_bands(
    conn: AsyncConnection, backend: str, bands: dict[int, tuple[int, ...]], now: datetime
) -> None:
    """(Re)index the band keys of these items: the near-duplicate index of the window."""
    if not bands:
        return
    for batch in dialect.chunks(list(bands)):
        await conn.execute(sa.delete(item_bands).where(item_bands.c.item_id.in_(batch)))
    rows = [
        {"item_id": item_id, "band": band, "fetched_at": now}
        for item_id, keys in bands.items()
        for band in keys
    ]
    await conn.execute(dialect.insert_ignore(item_bands, ["item_id", "band"], backend), rows)


async def prune_items(conn: AsyncConnection, before: datetime) -> int:
    """Delete items last listed before `before`; matches, alerts, deliveries and bands cascade.

    Each feed's latest listing is kept whatever its age: the items of its last parsed document
    (``last_seen`` within ``LISTED_REFRESH`` of the feed's newest). A feed that answers 304
    for months, or fails for months, still lists them; pruned, they would be stored as new
    and alerted again at its next full poll.
    """
    latest = sa.func.max(items.c.last_seen).label("latest")
    rows = await conn.execute(select(items.c.feed, latest).group_by(items.c.feed))
    fresh: list[str] = []  # feeds whose latest listing is newer than `before`: no exception
    cuts: dict[str, datetime] = {}  # the others: delete only what is older than that listing
    for row in rows:
        if row.latest is None:
            continue
        cut = row.latest - LISTED_REFRESH
        if cut >= before:
            fresh.append(row.feed)
        else:
            cuts[row.feed] = cut
    deleted = 0
    for batch in dialect.chunks(fresh):
        result = await conn.execute(
            sa.delete(items).where(items.c.feed.in_(batch), items.c.last_seen < before)
        )
        deleted += int(result.rowcount or 0)
    for feed, cut in cuts.items():
        result = await conn.execute(
            sa.delete(items).where(items.c.feed == feed, items.c.last_seen < cut)
        )
        deleted += int(result.rowcount or 0)
    return deleted


async def prune_bands(conn: AsyncConnection, before: datetime) -> int:
    """Drop band keys indexed before `before`: they left the dedupe window."""
    result = await conn.execute(sa.delete(item_bands).where(item_bands.c.fetched_at < before))
    return int(result.rowcount or 0)


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
    conn: AsyncConnection, column: Any, values: Collection[str], *where: Any
) -> dict[str, str]:
    stories: dict[str, str] = {}
    for batch in dialect.chunks(set(values)):
        rows = await conn.execute(
            select(column.label("value"), items.c.story)
            .where(column.in_(batch), *where)
            .order_by(items.c.fetched_at, items.c.id)
        )
        for row in rows:
            stories.setdefault(row.value, row.story)
    return stories
