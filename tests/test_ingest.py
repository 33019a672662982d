"""Nothing twice under concurrency: two copies of one story ingested at the same moment.

Two feeds carry the same article (one URL with tracking parameters, one without). Their polls
run at once — as two tasks, and as two replicas (two Store instances on one database). With
`Store.ingest()`, the second waits for the first and joins its story: one story, one alert per
(rule, channel). The sleep between `known` and `apply` widens the window in which an
unserialised pair would both see "no such story" and start one each.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.model import Copy, Decision, DedupePolicy, Feed, FeedState, FeedUpdate, Item, Rule
from monitor.notify import render
from monitor.pipeline import decide, fingerprints, lookup_keys
from monitor.rules import compile_rules
from monitor.store import Store, dialect
from monitor.store.tables import items

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
    keys = lookup_keys(items, fingerprints(items, DedupePolicy()))
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


ARTICLE = (
    "Iran's parliament on Sunday ratified the comprehensive strategic partnership treaty with "
    "Russia, state media reported, after a closed session in which deputies approved the "
    "twenty-year agreement by a large majority. The treaty covers defence cooperation, energy "
    "projects and transport corridors, and commits both governments to consult on security "
    "threats. Officials in Moscow welcomed the vote and said the Federation Council would "
    "take up the document within weeks."
)
TREATY = compile_rules([Rule("treaty", "treaty AND ratif*", realert_on_update=True)], {})


def rewrite_of_w1() -> Item:
    """The wire's item "w1" (ARTICLE) rewritten: same GUID, a new headline, most text new."""
    return Item(
        "wire",
        "w1",
        "https://wire.example/w1",
        "Parliament ratifies treaty after all-night session",
        "The vote came at dawn. "
        + ARTICLE.replace("twenty-year", "20-year")[:200]
        + " Deputies ratified it 190 to 30 and the speaker signed it at once.",
    )


async def poll(store: Store, feed: Feed, items: list[Item], now: datetime) -> Decision:
    state = FeedState(feed.name, feed.url, None, None, None, None, None, 0, None, polls=1)
    policy = DedupePolicy()
    prints = fingerprints(items, policy)
    keys = lookup_keys(items, prints)
    async with store.ingest() as tx:
        known = await tx.known(
            feed.name,
            keys.guids,
            keys.urls,
            keys.hashes,
            bands=keys.bands,
            since=now - policy.window,
        )
        decision = decide(
            feed,
            state,
            items,
            known,
            TREATY,
            ("desk",),
            now=now,
            backlog_window=timedelta(hours=24),
            dedupe_policy=policy,
            prints=prints,
        )
        await tx.apply(decision, FeedUpdate(feed.name, now, now, success=True))
    return decision


async def test_a_rewritten_copy_joins_through_the_band_index_within_the_window(
    store: Store,
) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire, paper = FEEDS
    original = Item("wire", "w1", "https://wire.example/w1", "Iran ratifies treaty", ARTICLE)
    await poll(store, wire, [original], NOW)
    copy = Item(
        "paper",
        "p1",
        "https://paper.example/p1",
        "Tehran lawmakers back pact with Moscow",
        ARTICLE.replace("Sunday", "Sunday evening") + "\n© Paper 2026. Subscribe now.",
    )
    decision = await poll(store, paper, [copy], NOW + timedelta(hours=3))
    assert decision.items[0].joined
    counts = await store.counts()
    assert counts["items"] == 2 and counts["alerts"] == 1  # one story, one alert
    (story,) = await store.stories()
    assert story.items == 2 and set(story.feeds) == {"wire", "paper"}
    assert story.carried == (("wire", NOW), ("paper", NOW + timedelta(hours=3)))

    # Past the window the index no longer holds the original: a copy starts a new story.
    later = NOW + timedelta(days=8)
    assert await store.prune_bands(later - timedelta(days=7)) == 16 * 2
    late = Item("paper", "p2", "https://paper.example/p2", "Treaty ratified, a week on", ARTICLE)
    assert not (await poll(store, paper, [late], later)).items[0].joined


async def test_a_material_update_is_stored_and_alerts_once_per_version(store: Store) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire = FEEDS[0]
    first = Item("wire", "w1", "https://wire.example/w1", "Parliament debates treaty", ARTICLE)
    await poll(store, wire, [first], NOW)
    rewritten = rewrite_of_w1()
    decision = await poll(store, wire, [rewritten], NOW + timedelta(hours=1))
    assert len(decision.updates) == 1
    again = await poll(store, wire, [rewritten], NOW + timedelta(hours=2))
    assert again.updates == ()  # the stored text is now the new version
    counts = await store.counts()
    assert counts["items"] == 1 and counts["alerts"] == 2  # the first alert and one follow-up
    (stored,) = await store.items_since(NOW - timedelta(days=1))
    assert stored.title.startswith("Parliament ratifies treaty")


async def test_an_update_keeps_first_seen_and_its_follow_up_says_updated(
    store: Store, store_url: str
) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire, paper = FEEDS
    first = Item("wire", "w1", "https://wire.example/w1", "Parliament debates treaty", ARTICLE)
    await poll(store, wire, [first], NOW)
    copy = Item("paper", "p1", "https://paper.example/p1", "Deputies back the pact", ARTICLE)
    await poll(store, paper, [copy], NOW + timedelta(minutes=10))
    rewritten = rewrite_of_w1()
    assert len((await poll(store, wire, [rewritten], NOW + timedelta(hours=1))).updates) == 1

    # The story still started when the wire's item first came, and the paper came 10 min later.
    (story,) = await store.stories()
    assert story.first_seen == NOW
    assert story.carried == (("wire", NOW), ("paper", NOW + timedelta(minutes=10)))
    engine = dialect.create_engine(dialect.async_url(store_url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(items.c.guid, items.c.fetched_at, items.c.updated_at).order_by(
                    items.c.guid
                )
            )
            stamps = {row.guid: (row.fetched_at, row.updated_at) for row in rows}
    finally:
        await engine.dispose()
    assert stamps == {
        "p1": (NOW + timedelta(minutes=10), None),
        "w1": (NOW, NOW + timedelta(hours=1)),
    }

    # The first alert and the follow-up reach the renderer told apart.
    claimed = await store.claim_deliveries(
        NOW + timedelta(hours=2), limit=10, lease=timedelta(minutes=1), owner="t"
    )
    first_alert, follow_up = sorted(claimed, key=lambda d: d.created)
    assert first_alert.revision == "" and follow_up.revision != ""
    assert follow_up.also == (Copy("paper", copy.url, None),)
    title, body = render(first_alert)  # claimed late: it carries the item as it is now
    assert title == rewritten.title and "Updated" not in body
    title, body = render(follow_up)
    assert title == "Updated: Parliament ratifies treaty after all-night session"
    assert body.splitlines()[0].startswith("Updated: 2026-11-23 13:00 UTC")


async def test_retention_prunes_old_items_with_everything_hanging_off_them(store: Store) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire = FEEDS[0]
    old = Item("wire", "w-old", "https://wire.example/old", "Parliament ratifies treaty", ARTICLE)
    await poll(store, wire, [old], NOW - timedelta(days=200))
    new = Item("wire", "w-new", "https://wire.example/new", "Treaty ratified again", ARTICLE[:300])
    await poll(store, wire, [new], NOW)
    before = await store.counts()
    assert before["items"] == 2 and before["alerts"] == 2
    assert await store.prune_items(NOW - timedelta(days=180)) == 1
    after = await store.counts()
    assert after["items"] == 1 and after["alerts"] == 1 and after["matches"] == 1
    assert after["pending"] == 1  # the old alert's delivery went with it
    assert [i.guid for i in await store.items_since(NOW - timedelta(days=365))] == ["w-new"]


async def test_retention_keeps_what_a_feed_still_lists_and_prunes_what_it_dropped(
    store: Store,
) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire, paper = FEEDS
    kept = Item("wire", "w-kept", "https://wire.example/kept", "Treaty talks resume", "")
    dropped = Item("wire", "w-gone", "https://wire.example/gone", "Ceasefire holds", "")
    await poll(store, wire, [kept, dropped], NOW - timedelta(days=200))
    # The wire still lists `kept` a day ago; `dropped` left its document long since.
    await poll(store, wire, [kept], NOW - timedelta(days=150))
    await poll(store, wire, [kept], NOW - timedelta(days=1))
    # The paper was parsed once, long ago, and answered 304 ever since: what it listed then is
    # what it lists now (its latest listing), however old.
    quiet = Item("paper", "p-quiet", "https://paper.example/quiet", "An unchanged page", "")
    await poll(store, paper, [quiet], NOW - timedelta(days=300))

    assert await store.prune_items(NOW - timedelta(days=180)) == 1
    left = {i.guid for i in await store.items_since(NOW - timedelta(days=365))}
    assert left == {"w-kept", "p-quiet"}
    # Listed again, it is still the stored item: nothing new to store or to alert.
    again = await poll(store, wire, [kept], NOW)
    assert again.items == () and again.alerts == () and again.still_listed == ("w-kept",)

    # Once the paper lists something else, the old page is an ordinary dropped item.
    fresh = Item("paper", "p-new", "https://paper.example/new", "A new page", "")
    await poll(store, paper, [fresh], NOW)
    assert await store.prune_items(NOW - timedelta(days=180)) == 1
    left = {i.guid for i in await store.items_since(NOW - timedelta(days=365))}
    assert left == {"w-kept", "p-new"}


async def test_sqlite_file_and_new_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "newsmon.db"
    async with await Store.open(f"sqlite:///{path}"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_an_existing_sqlite_file_is_made_private_and_an_open_directory_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database left by an older version, copied in, or created under umask 022, in a
    # directory made by `mkdir -p`.
    directory = tmp_path / "var"
    directory.mkdir()
    directory.chmod(0o755)
    path = directory / "newsmon.db"
    async with await Store.open(f"sqlite:///{path}") as store:
        await store.sync_feeds(FEEDS, NOW)
    files = [path, directory / "newsmon.db-wal", directory / "newsmon.db-shm"]
    for file in files:
        file.touch()
        file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="newsmon"):
        async with await Store.open(f"sqlite:///{path}") as store:
            assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
            assert {s.name for s in await store.feed_states()} == {"wire", "paper"}
    warned = caplog.text
    assert all(f"database file {f} was mode 644; made owner-only" in warned for f in files)
    assert (
        f"database directory {directory.resolve()} is mode 755: other users can list it" in warned
    )
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755  # the operator's to change


async def test_a_feed_remembers_when_it_last_brought_a_new_item(store: Store) -> None:
    await store.sync_feeds(FEEDS, NOW)
    wire = FEEDS[0]
    first = Item("wire", "w1", "https://wire.example/w1", "Treaty ratified", ARTICLE)
    await poll(store, wire, [first], NOW)
    await poll(store, wire, [first], NOW + timedelta(hours=1))  # nothing new: unchanged
    (state,) = [s for s in await store.feed_states() if s.name == "wire"]
    assert state.last_new_item == NOW and state.last_success == NOW + timedelta(hours=1)
