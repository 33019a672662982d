"""SQL for the corpus: items, their matches and the alerts they raise.

Functions take an open connection inside the caller's transaction; ``Store`` owns
transactions and states the contracts.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor import model
from monitor.store import dialect
from monitor.store.rows import Applied
from monitor.store.tables import (
    PENDING,
    UTCDateTime,
    alerts,
    deliveries,
    item_bands,
    items,
    matches,
)

log = logging.getLogger("newsmon")

# At most this many near-duplicate candidates are read for one batch (50 items share ~800
# band keys). Texts of one outlet's template (a daily calendar) can make a band common; past
# this bound the newest candidates are kept and a warning says recall may suffer.
MAX_NEAR_CANDIDATES = 20_000
# A band key shared by more items of the window than this is a common phrase, not a story (in
# bench/speed.py's corpus 41 of ~200,000 band keys hold over 50 items each, and 78% of all the
# colliding pairs): only its newest MAX_PER_BAND items are candidates. A copy still meets an
# older original through any of its other 15 bands.
MAX_PER_BAND = 50
# A stored item its feed lists again has its `last_seen` rewritten only when it is older than
# this: retention counts in days, so an hour's lag is nothing, and an unchanged feed polled
# every few minutes does not rewrite every one of its rows on every poll.
LISTED_REFRESH = timedelta(hours=1)


async def known(
    conn: AsyncConnection,
    backend: str,
    feed: str,
    guids: Collection[str],
    urls: Collection[str],
    hashes: Collection[str],
    *,
    bands: Collection[int] = (),
    since: datetime | None = None,
) -> model.KnownState:
    """`seen` and `stories` for one feed: its own hashes are the ones stored by `feed`."""
    found = await stories(conn, backend, urls, hashes, bands, since)
    return model.KnownState(
        story_by_url=found.story_by_url,
        story_by_hash=found.story_by_hash,
        own_story_by_hash={h: s for (f, h), s in found.own_story_by_hash.items() if f == feed},
        near=found.near,
        seen=(await seen(conn, {feed: guids}))[feed],
    )


async def seen(
    conn: AsyncConnection, guids: Mapping[str, Collection[str]]
) -> dict[str, dict[str, model.Seen]]:
    """What is stored of these GUIDs, by feed then GUID, for several feeds at once."""
    found: dict[str, dict[str, model.Seen]] = {feed: {} for feed in guids}
    for where in _feed_guid_clauses(guids):
        rows = await conn.execute(
            select(
                items.c.feed, items.c.guid, items.c.content_hash, items.c.signature, items.c.story
            ).where(where)
        )
        for row in rows:
            found[row.feed][row.guid] = model.Seen(row.content_hash, row.signature, row.story)
    return found


async def stories(
    conn: AsyncConnection,
    backend: str,
    urls: Collection[str],
    hashes: Collection[str],
    bands: Collection[int],
    since: datetime | None,
) -> model.KnownStories:
    """The stories stored items offer new items with these keys, whatever their feed."""
    by_hash: dict[str, str] = {}
    own: dict[tuple[str, str], str] = {}
    for batch in dialect.chunks(set(hashes)):
        rows = await conn.execute(
            select(items.c.content_hash, items.c.feed, items.c.story)
            .where(items.c.content_hash.in_(batch))
            .order_by(items.c.fetched_at, items.c.id)
        )
        for row in rows:
            by_hash.setdefault(row.content_hash, row.story)
            own.setdefault((row.feed, row.content_hash), row.story)
    return model.KnownStories(
        story_by_url=await _earliest_story(conn, items.c.canonical_url, urls),
        story_by_hash=by_hash,
        own_story_by_hash=own,
        near=await _near(conn, backend, bands, since),
    )


def _feed_guid_clauses(guids: Mapping[str, Collection[str]]) -> Iterator[sa.ColumnElement[bool]]:
    """WHERE clauses that together select these (feed, GUID) pairs, CHUNK GUIDs at most each.

    ``feed = ? AND guid IN (…)`` joined by OR: SQLite answers it from the (feed, guid) index,
    where a row-value ``(feed, guid) IN (…)`` scans the table.
    """
    clauses: list[sa.ColumnElement[bool]] = []
    size = 0
    for feed, wanted in guids.items():
        for batch in dialect.chunks(set(wanted)):
            if clauses and size + len(batch) > dialect.CHUNK:
                yield sa.or_(*clauses)
                clauses, size = [], 0
            clauses.append(sa.and_(items.c.feed == feed, items.c.guid.in_(batch)))
            size += len(batch)
    if clauses:
        yield sa.or_(*clauses)


async def listed_hashes(conn: AsyncConnection, feed: str) -> dict[str, str]:
    """Content hash by GUID of the items of `feed`'s latest listing (``last_seen`` within
    ``LISTED_REFRESH`` of the feed's newest), from the (feed, last_seen) index."""
    latest = await conn.scalar(select(sa.func.max(items.c.last_seen)).where(items.c.feed == feed))
    if latest is None:
        return {}
    rows = await conn.execute(
        select(items.c.guid, items.c.content_hash).where(
            items.c.feed == feed, items.c.last_seen >= latest - LISTED_REFRESH
        )
    )
    return {guid: content_hash for guid, content_hash in rows}


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
    conn: AsyncConnection, backend: str, bands: Collection[int], since: datetime | None
) -> tuple[model.NearCandidate, ...]:
    """The stored items sharing one of `bands`, fetched at or after `since`, with the bands
    they share: at most MAX_PER_BAND a band and MAX_NEAR_CANDIDATES in all, the newest
    (the highest ids: items are numbered as they are stored)."""
    if not bands:
        return ()
    # (band, item) pairs first, from the (band, fetched_at, item_id) index alone; then the
    # story and signature of each distinct item once, however many bands it shares.
    query = select(item_bands.c.band, item_bands.c.item_id).where(
        dialect.among(item_bands.c.band, bands, backend)
    )
    if since is not None:
        query = query.where(item_bands.c.fetched_at >= since)
    by_band: dict[int, list[int]] = defaultdict(list)
    for band, item_id in await conn.execute(query):
        by_band[band].append(item_id)
    matched: dict[int, list[int]] = defaultdict(list)
    for band, stored in by_band.items():
        if len(stored) > MAX_PER_BAND:
            stored = sorted(stored, reverse=True)[:MAX_PER_BAND]
        for item_id in stored:
            matched[item_id].append(band)
    wanted = sorted(matched, reverse=True)
    if len(wanted) > MAX_NEAR_CANDIDATES:
        log.warning("near-duplicate candidates capped at %d", MAX_NEAR_CANDIDATES)
        wanted = wanted[:MAX_NEAR_CANDIDATES]
    rows = await conn.execute(
        select(items.c.id, items.c.story, items.c.signature).where(
            dialect.among(items.c.id, wanted, backend), items.c.signature.is_not(None)
        )
    )
    found = {item_id: (story, signature) for item_id, story, signature in rows}
    return tuple(model.NearCandidate(*found[i], tuple(matched[i])) for i in wanted if i in found)


async def store(
    conn: AsyncConnection, backend: str, decisions: Sequence[tuple[model.Decision, datetime]]
) -> list[Applied]:
    """Insert what each decision holds that is not stored yet, with the moment of its poll;
    count what was inserted, decision by decision.

    One statement per kind of row for the whole batch (items, bands, matches, alerts,
    deliveries): several feeds' polls are stored together when they are ready together.
    """
    feed_of = {decision.feed: i for i, (decision, _) in enumerate(decisions)}
    if len(feed_of) != len(decisions):
        raise ValueError("a batch holds one decision per feed")
    inserted = await _insert_items(conn, backend, decisions)
    new_items = Counter(feed for feed, _ in inserted)
    for decision, now in decisions:
        await _update_items(conn, decision.updates, now)
        await _still_listed(conn, decision.feed, decision.still_listed, now)

    refs = {(m.feed, m.guid) for d, _ in decisions for m in d.matches}
    refs |= {(a.feed, a.guid) for d, _ in decisions for a in d.alerts}
    banded: dict[tuple[str, str], tuple[tuple[int, ...], datetime]] = {}
    for decision, now in decisions:
        banded |= {(r.item.feed, r.item.guid): (r.bands, now) for r in decision.items if r.bands}
        banded |= {(u.item.feed, u.item.guid): (u.bands, now) for u in decision.updates if u.bands}
    ids = dict(inserted)
    ids |= await _item_ids(conn, (refs | banded.keys()) - ids.keys())
    missing = refs - ids.keys()
    if missing:
        raise ValueError(f"matches or alerts refer to items not stored: {sorted(missing)}")
    # An item inserted just now has no band rows to replace; one stored before (an update, or
    # a replica's insert that won) has its band rows rewritten.
    fresh = set(inserted.values())
    await _index_bands(
        conn,
        backend,
        {ids[ref]: keys for ref, keys in banded.items() if ref in ids},
        replace={ids[ref] for ref in banded if ref in ids} - fresh,
    )
    feed_by_id = {item_id: feed for (feed, _), item_id in ids.items()}

    new_matches: Counter[str] = Counter()
    rows = [
        {
            "item_id": ids[(m.feed, m.guid)],
            "rule": m.match.rule,
            "snippet": m.match.snippet,
            "highlights": json.dumps([list(span) for span in m.match.highlights]),
            "fields": json.dumps(list(m.match.fields)),
            "created": now,
        }
        for d, now in decisions
        for m in d.matches
    ]
    if rows:
        stmt = dialect.insert_ignore(matches, ["item_id", "rule"], backend)
        result = await conn.execute(stmt.returning(matches.c.item_id), rows)
        new_matches.update(feed_by_id[item_id] for item_id in result.scalars())

    new_alerts: list[Row[*tuple[Any, ...]]] = []
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
        for d, now in decisions
        for a in d.alerts
    ]
    if rows:
        # The unique key is what keeps "one alert per (rule, story, channel)" across polls,
        # restarts and replicas: only the rows RETURNING gives back get a delivery.
        stmt = dialect.insert_ignore(alerts, ["key"], backend)
        stmt = stmt.returning(alerts.c.id, alerts.c.channel, alerts.c.item_id, alerts.c.created)
        new_alerts = list((await conn.execute(stmt, rows)).all())
    if new_alerts:
        await conn.execute(
            deliveries.insert(),
            [
                {
                    "alert_id": row.id,
                    "channel": row.channel,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": row.created,
                    "created": row.created,
                }
                for row in new_alerts
            ],
        )
    channels: dict[str, list[str]] = {}
    for row in new_alerts:
        channels.setdefault(feed_by_id[row.item_id], []).append(row.channel)
    return [
        Applied(
            items=new_items[d.feed],
            matches=new_matches[d.feed],
            alerts=len(channels.get(d.feed, ())),
            updated=len(d.updates),
            channels=tuple(channels.get(d.feed, ())),
        )
        for d, _ in decisions
    ]


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
    conn: AsyncConnection, backend: str, decisions: Sequence[tuple[model.Decision, datetime]]
) -> dict[tuple[str, str], int]:
    """Insert the decisions' new items; the id of each row inserted, by (feed, guid)."""
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
        for decision, now in decisions
        for r in decision.items
    ]
    if not rows:
        return {}
    stmt = dialect.insert_ignore(items, ["feed", "guid"], backend)
    result = await conn.execute(stmt.returning(items.c.id, items.c.feed, items.c.guid), rows)
    return {(row.feed, row.guid): row.id for row in result}


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
    conn: AsyncConnection,
    backend: str,
    bands: Mapping[int, tuple[tuple[int, ...], datetime]],
    *,
    replace: Collection[int],
) -> None:
    """Index the band keys of these items (by id: keys, fetch time), the near-duplicate index
    of the window; the items in `replace` had rows already, which are dropped first."""
    if not bands:
        return
    if replace:
        await conn.execute(
            sa.delete(item_bands).where(dialect.among(item_bands.c.item_id, replace, backend))
        )
    # One INSERT … SELECT per poll moment (a batch holds a few): 16 rows an item, which as an
    # executemany cost more in SQLAlchemy's per-row parameter handling than in the database.
    by_time: dict[datetime, list[tuple[int, int]]] = defaultdict(list)
    for item_id, (keys, now) in bands.items():
        by_time[now].extend((item_id, band) for band in keys)
    for now, pairs in by_time.items():
        rows = dialect.int_rows(("item_id", "band"), pairs, backend)
        # WHERE true: SQLite's parser needs it between an INSERT's SELECT and ON CONFLICT.
        source = select(rows.c.item_id, rows.c.band, sa.literal(now, UTCDateTime())).where(
            sa.true()
        )
        stmt = dialect.insert_ignore(item_bands, ["item_id", "band"], backend)
        await conn.execute(stmt.from_select(["item_id", "band", "fetched_at"], source))


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
