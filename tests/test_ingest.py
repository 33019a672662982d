"""Nothing twice under concurrency: two copies of one story ingested at the same moment.

Two feeds carry the same article (one URL with tracking parameters, one without). Their polls
run at once — as two tasks, and as two replicas (two Store instances on one database). With
`Store.ingest()`, the second waits for the first and joins its story: one story, one alert per
(rule, channel). The sleep between `known` and `apply` widens the window in which an
unserialised pair would both see "no such story" and start one each.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from monitor.model import Feed, FeedState, FeedUpdate, Item, Rule
from monitor.pipeline import decide, lookup_keys
from monitor.rules import compile_rules
from monitor.store import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULES = compile_rules([Rule("evin", '"evin prison"')], {})
FEEDS = [Feed(n, f"https://{n}.example/feed", timedelta(minutes=10)) for n in ("wire", "paper")]
URLS = {
    "wire": "https://news.example/evin-fire?utm_source=wire",
    "paper": "https://www.news.example/evin-fire",
}


def item(feed: str) -> Item:
    return Item(feed, f"{feed}-1", URLS[feed], f"Fire at Evin prison ({feed})", "", published=NOW)


async def ingest(store: Store, feed: Feed) -> None:
    state = FeedState(feed.name, feed.url, None, None, None, None, None, 0, None, polls=1)
    items = [item(feed.name)]
    keys = lookup_keys(items)
    async with store.ingest() as tx:
        known = await tx.known(feed.name, keys.guids, keys.urls, keys.hashes)
        await asyncio.sleep(0.05)  # the other ingest runs here if nothing serialises them
        decision = decide(
            feed,
            state,
            items,
            known,
            RULES,
            ("desk", "mail"),
            now=NOW,
            backlog_window=timedelta(hours=24),
        )
        update = FeedUpdate(feed.name, NOW, NOW + feed.interval, success=True)
        await tx.apply(decision, update)


async def test_two_tasks_make_one_story(store: Store) -> None:
    await store.sync_feeds(FEEDS, NOW)
    await asyncio.gather(*(ingest(store, f) for f in FEEDS))
    counts = await store.counts()
    assert counts["items"] == 2 and counts["alerts"] == 2  # one per channel
    stories = await store.stories()
    assert len(stories) == 1 and stories[0].items == 2
    assert set(stories[0].feeds) == {"wire", "paper"}


async def test_two_replicas_make_one_story(store_url: str) -> None:
    first = await Store.open(store_url)
    second = await Store.open(store_url, migrate=False)
    try:
        await first.sync_feeds(FEEDS, NOW)
        await asyncio.gather(ingest(first, FEEDS[0]), ingest(second, FEEDS[1]))
        counts = await first.counts()
        assert counts["alerts"] == 2
        assert [s.items for s in await second.stories()] == [2]
    finally:
        await first.close()
        await second.close()


async def test_an_ingest_that_fails_stores_nothing(store: Store) -> None:
    await store.sync_feeds(FEEDS, NOW)
    try:
        async with store.ingest() as tx:
            feed = FEEDS[0]
            state = FeedState(feed.name, feed.url, None, None, None, None, None, 0, None, 1)
            decision = decide(
                feed,
                state,
                [item("wire")],
                await tx.known("wire", {"wire-1"}, set(), set()),
                RULES,
                ("desk",),
                now=NOW,
                backlog_window=timedelta(hours=24),
            )
            await tx.apply(decision, FeedUpdate("wire", NOW, NOW, success=True))
            raise RuntimeError("crash after apply, before commit")
    except RuntimeError:
        pass
    assert (await store.counts())["items"] == 0
