"""The store over real backends: every test that takes `store`/`store_url` runs on SQLite and
PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from monitor import model
from monitor.store import AlertRow, Applied, Store, dialect, migrations
from monitor.store.tables import metadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def feed(name: str, url: str | None = None, *, enabled: bool = True) -> model.Feed:
    return model.Feed(
        name, url or f"https://{name}.example/feed", timedelta(minutes=10), enabled=enabled
    )


def record(
    feed_name: str,
    guid: str,
    *,
    story: str | None = None,
    url: str | None = None,
    content_hash: str | None = None,
    published: datetime | None = None,
    title: str | None = None,
) -> model.ItemRecord:
    link = url or f"https://{feed_name}.example/{guid}"
    item = model.Item(
        feed=feed_name,
        guid=guid,
        url=link,
        title=title or f"title {guid}",
        summary=f"summary {guid}",
        content="content",
        author="someone",
        published=published,
        updated=None,
        text="",
    )
    return model.ItemRecord(
        item=item,
        canonical_url=link,
        content_hash=content_hash or f"hash-{feed_name}-{guid}",
        story=story or f"story-{feed_name}-{guid}",
        baseline=False,
        joined_by=None,
    )


def matched(rec: model.ItemRecord, rule: str = "treaty") -> model.ItemMatch:
    return model.ItemMatch(
        rec.item.feed,
        rec.item.guid,
        model.Match(rule, f"… {rec.item.title} …", ((2, 7),), ("title",)),
    )


def alert(rec: model.ItemRecord, rule: str = "treaty", channel: str = "desk") -> model.Alert:
    return model.Alert(rule, channel, rec.story, rec.item.feed, rec.item.guid)


def ok(
    name: str,
    at: datetime = T0,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    url: str | None = None,
    disabled_reason: str | None = None,
) -> model.FeedUpdate:
    """A successful poll at `at`, next one 10 minutes later."""
    return model.FeedUpdate(
        name,
        at,
        at + 10 * MIN,
        True,
        url=url,
        etag=etag,
        last_modified=last_modified,
        disabled_reason=disabled_reason,
    )


def decision(name: str, *recs: model.ItemRecord, rule: str = "treaty") -> model.Decision:
    return model.Decision(
        feed=name,
        items=recs,
        matches=tuple(matched(r, rule) for r in recs),
        alerts=tuple(alert(r, rule) for r in recs),
    )


# --- feeds ---------------------------------------------------------------------------------


async def test_sync_feeds_adds_renames_and_removes(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b")], T0)
    assert [f.name for f in await store.feed_states()] == ["a", "b"]
    new = (await store.feed_states())[0]
    assert (new.next_poll, new.polls, new.error_count, new.url) == (None, 0, 0, feed("a").url)

    # "b" renamed to "c" (same URL), "a" removed from the config, "d" disabled.
    await store.sync_feeds([feed("c", feed("b").url), feed("d", enabled=False)], T0)
    assert [f.name for f in await store.feed_states()] == ["c"]
    claimed = await store.claim_due_feeds(T0, limit=10, lease=MIN, owner="w")
    assert [f.name for f in claimed] == ["c"]
    assert (await store.counts())["feeds"] == 1

    # Back in the config: the stored row is reused, not duplicated.
    await store.sync_feeds([feed("a"), feed("c", feed("b").url)], T0)
    assert [f.name for f in await store.feed_states()] == ["a", "c"]

    with pytest.raises(ValueError, match="unique"):
        await store.sync_feeds([feed("a"), feed("a")], T0)


async def test_sync_feeds_new_config_url_resets_url_and_validators(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.claim_due_feeds(T0, limit=1, lease=MIN, owner="w")
    await store.apply(
        model.Decision("a"),
        ok("a", etag='"v1"', last_modified="Wed, 01 May 2024", url="https://moved.example/feed"),
    )
    (state,) = await store.feed_states()
    assert (state.url, state.etag, state.polls) == ("https://moved.example/feed", '"v1"', 1)

    # Same config URL again: the redirected URL and validators stay.
    await store.sync_feeds([feed("a")], T0 + MIN)
    assert (await store.feed_states())[0] == state

    await store.sync_feeds([feed("a", "https://new.example/rss")], T0 + MIN)
    (state,) = await store.feed_states()
    assert (state.url, state.etag, state.last_modified) == ("https://new.example/rss", None, None)
    assert state.next_poll is None  # due now
    assert state.polls == 1  # history kept


async def test_claim_due_feeds_leases(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b"), feed("c")], T0)
    await store.claim_due_feeds(T0, limit=3, lease=MIN, owner="w")
    await store.apply(model.Decision("a"), ok("a", T0))  # next poll T0+10m
    await store.apply(model.Decision("b"), ok("b", T0 - 5 * MIN))  # next poll T0+5m
    await store.apply(model.Decision("c"), ok("c", T0 - 5 * MIN, disabled_reason="410 Gone"))
    await store.sync_feeds([feed("a"), feed("b"), feed("c"), feed("new")], T0)

    assert [f.name for f in await store.claim_due_feeds(T0, limit=5, lease=MIN, owner="w")] == [
        "new"
    ]
    later = T0 + 11 * MIN  # every feed due, the lease of "new" expired
    claimed = await store.claim_due_feeds(later, limit=5, lease=10 * MIN, owner="w1")
    # Most overdue first; the disabled feed never.
    assert [f.name for f in claimed] == ["new", "b", "a"]
    assert await store.claim_due_feeds(later + MIN, limit=5, lease=MIN, owner="w2") == []
    again = await store.claim_due_feeds(later + 10 * MIN, limit=1, lease=MIN, owner="w2")
    assert [f.name for f in again] == ["new"]  # lease expired; limit respected
    assert await store.claim_due_feeds(T0, limit=0, lease=MIN, owner="w") == []


async def test_forced_claim_ignores_the_schedule_but_not_leases(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b"), feed("gone")], T0)
    await store.claim_due_feeds(T0, limit=3, lease=MIN, owner="w")
    await store.apply(model.Decision("a"), ok("a"))
    await store.apply(model.Decision("gone"), ok("gone", disabled_reason="410 Gone"))
    # "b" is still leased; "a" is not due for 10 minutes; "gone" is disabled.
    assert await store.claim_due_feeds(T0, limit=5, lease=MIN, owner="w") == []
    forced = await store.claim_due_feeds(T0, limit=5, lease=MIN, owner="w", force=True)
    assert [f.name for f in forced] == ["a"]


@pytest.mark.postgres
async def test_concurrent_claimers_never_share_a_feed(pg_url: str) -> None:
    async with await Store.open(pg_url) as one, await Store.open(pg_url) as two:
        await one.sync_feeds([feed(f"f{i:02}") for i in range(40)], T0)
        seen: list[str] = []
        for _ in range(3):
            got = await asyncio.gather(
                *(
                    s.claim_due_feeds(T0, limit=7, lease=MIN, owner=f"o{i}")
                    for i, s in enumerate([one, two, one, two])
                )
            )
            seen += [f.name for batch in got for f in batch]
        assert len(seen) == len(set(seen)) == 40


# --- apply -----------------------------------------------------------------------------------


async def test_apply_stores_everything_once(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b")], T0)
    r1, r2 = record("a", "1"), record("a", "2", story="shared")
    d = decision("a", r1, r2)
    assert await store.apply(d, ok("a")) == Applied(
        items=2, matches=2, alerts=2, channels=("desk", "desk")
    )
    assert await store.apply(d, ok("a", T0 + MIN)) == Applied(items=0, matches=0, alerts=0)

    # Another outlet's copy of the same story, same rule and channel: same key, no new alert.
    copy = record("b", "x", story="shared")
    assert await store.apply(decision("b", copy), ok("b")) == Applied(1, 1, 0)
    counts = await store.counts()
    assert counts == {
        "feeds": 2,
        "items": 3,
        "matches": 3,
        "alerts": 2,
        "pending": 2,
        "sent": 0,
        "dead": 0,
    }
    assert await store.outbox_depth() == 2


async def test_apply_is_all_or_nothing(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    good = record("a", "1")
    dangling = model.Alert("treaty", "desk", "s", "a", "no-such-guid")
    bad = model.Decision("a", items=(good,), alerts=(dangling,))
    with pytest.raises(ValueError, match="no-such-guid"):
        await store.apply(bad, ok("a"))
    with pytest.raises(LookupError):
        await store.apply(decision("never-synced", record("never-synced", "1")), ok("never-synced"))
    with pytest.raises(ValueError):
        await store.apply(decision("a", good), ok("b"))
    assert (await store.counts())["items"] == 0
    assert (await store.feed_states())[0].last_polled is None


async def test_failed_poll_counts_errors_and_keeps_validators(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.apply(model.Decision("a"), ok("a", etag='"e"', last_modified="lm"))
    for n in (1, 2):
        failed = model.FeedUpdate(
            "a", T0 + n * MIN, T0 + 2 * n * MIN, False, error="timed out", status=None
        )
        await store.apply(model.Decision("a"), failed)
    (state,) = await store.feed_states()
    assert (state.error_count, state.last_error) == (2, "timed out")
    assert (state.etag, state.last_modified, state.polls) == ('"e"', "lm", 1)
    assert (state.last_success, state.last_polled) == (T0, T0 + 2 * MIN)

    await store.apply(model.Decision("a"), ok("a", T0 + 5 * MIN))  # 200 without validators
    (state,) = await store.feed_states()
    assert (state.error_count, state.last_error, state.etag, state.polls) == (0, None, None, 2)


async def test_apply_releases_the_lease(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.claim_due_feeds(T0, limit=1, lease=timedelta(hours=1), owner="w")
    await store.apply(model.Decision("a"), model.FeedUpdate("a", T0, T0, True))
    assert len(await store.claim_due_feeds(T0, limit=1, lease=MIN, owner="w")) == 1


async def test_record_poll_groups_concurrent_polls_as_apply_would_store_each(
    store: Store,
) -> None:
    """304s, failures, a move and a 410 finishing at once: each feed as if applied alone."""
    names = [f"f{i:02}" for i in range(12)]
    await store.sync_feeds([feed(n) for n in names], T0)
    await store.claim_due_feeds(T0, limit=len(names), lease=timedelta(hours=1), owner="w")
    failed = model.FeedUpdate("f01", T0, T0 + 2 * MIN, False, error="timed out", status=None)
    gone = model.FeedUpdate("f02", T0, T0 + MIN, False, status=410, disabled_reason="HTTP 410")
    moved = ok("f03", etag='"m"', url="https://moved.example/feed")
    updates = [ok(n, etag=f'"{n}"', last_modified="lm") for n in names[4:]]
    stray = ok("never-synced")
    outcomes = await asyncio.gather(
        *(store.record_poll(u) for u in [failed, stray, gone, moved, *updates]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], LookupError)  # refused alone; the others are stored
    assert [o for i, o in enumerate(outcomes) if i != 1] == [None] * (len(outcomes) - 1)

    by_name = {s.name: s for s in await store.feed_states()}
    assert (by_name["f01"].error_count, by_name["f01"].last_error, by_name["f01"].polls) == (
        1,
        "timed out",
        0,
    )
    assert by_name["f02"].disabled_reason == "HTTP 410"
    assert (by_name["f03"].url, by_name["f03"].etag) == ("https://moved.example/feed", '"m"')
    for n in names[4:]:
        state = by_name[n]
        assert (state.etag, state.last_modified, state.polls, state.error_count) == (
            f'"{n}"',
            "lm",
            1,
            0,
        )
        assert (state.last_success, state.next_poll) == (T0, T0 + 10 * MIN)
    assert by_name["f00"].last_polled is None  # not polled: untouched
    # Leases released: every recorded feed can be claimed again (f00 still holds its lease).
    again = await store.claim_due_feeds(T0, limit=50, lease=MIN, owner="x", force=True)
    assert sorted(s.name for s in again) == sorted(set(names) - {"f00", "f02"})


async def test_concurrent_applies_on_one_store(store: Store) -> None:
    """20 pollers finishing at once: no "database is locked", nothing lost."""
    names = [f"f{i:02}" for i in range(20)]
    await store.sync_feeds([feed(n) for n in names], T0)
    decisions = [decision(n, *(record(n, str(k)) for k in range(5))) for n in names]
    results = await asyncio.gather(
        *(store.apply(d, ok(d.feed)) for d in decisions),
        *(store.claim_due_feeds(T0, limit=1, lease=MIN, owner="x") for _ in range(5)),
        *(store.known(n, ["0"], [], []) for n in names),
    )
    assert [(r.items, r.matches, r.alerts) for r in results[:20]] == [(5, 5, 5)] * 20
    assert (await store.counts())["items"] == 100


# --- reads for the pipeline ---------------------------------------------------------------------


async def test_known_reports_seen_guids_and_stories_across_feeds(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b")], T0)
    first = record("a", "1", story="s-first", url="https://x.example/story", content_hash="h1")
    await store.apply(decision("a", first), ok("a", T0))
    later = record("b", "9", story="s-later", url="https://x.example/story", content_hash="h1")
    await store.apply(decision("b", later), ok("b", T0 + MIN))

    state = await store.known("a", ["1", "2"], ["https://x.example/story", "nope"], ["h1", "h2"])
    assert state.seen_guids == frozenset({"1"})
    assert dict(state.story_by_url) == {"https://x.example/story": "s-first"}  # the earliest
    assert dict(state.story_by_hash) == {"h1": "s-first"}
    assert (await store.known("b", ["1"], [], [])).seen_guids == frozenset()

    many = [str(n) for n in range(1200)]  # more than one IN chunk
    assert (await store.known("a", many, [], [])).seen_guids == frozenset({"1"})


async def test_items_since_returns_items_in_fetch_order(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.apply(decision("a", record("a", "old")), ok("a", T0))
    await store.apply(decision("a", record("a", "new")), ok("a", T0 + 5 * MIN))
    assert [i.guid for i in await store.items_since(T0)] == ["old", "new"]
    assert [i.guid for i in await store.items_since(T0 + MIN)] == ["new"]
    assert [i.guid for i in await store.items_since(T0, limit=1)] == ["old"]


async def test_item_pages_walk_every_item_in_fetch_order(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b")], T0)
    await store.apply(decision("a", record("a", "1"), record("a", "2"), record("a", "3")), ok("a"))
    await store.apply(decision("b", record("b", "4"), record("b", "5")), ok("b", T0 + MIN))
    await store.apply(decision("a", record("a", "6")), ok("a", T0 + 2 * MIN))

    pages = [[i.guid for i in page] async for page in store.item_pages(T0, size=2)]
    # Pages break inside a run of items fetched at the same moment without losing one.
    assert pages == [["1", "2"], ["3", "4"], ["5", "6"]]
    assert [[i.guid for i in p] async for p in store.item_pages(T0 + MIN, size=4)] == [
        ["4", "5", "6"]
    ]
    assert [p async for p in store.item_pages(T0 + 3 * MIN)] == []


async def test_find_items_by_guid_url_or_canonical_url(store: Store) -> None:
    await store.sync_feeds([feed("a"), feed("b")], T0)
    await store.apply(decision("a", record("a", "g1", url="https://x.example/s")), ok("a"))
    await store.apply(decision("b", record("b", "g2", url="https://x.example/s")), ok("b", T0))
    await store.apply(decision("b", record("b", "g3")), ok("b", T0 + MIN))

    assert [i.feed for i in await store.find_items("https://x.example/s")] == ["a", "b"]
    assert [i.guid for i in await store.find_items("g3")] == ["g3"]
    wanted = "https://x.example/s?utm_source=rss"
    assert await store.find_items(wanted) == []
    assert [i.guid for i in await store.find_items(wanted, "https://x.example/s")] == ["g1", "g2"]


async def test_article_page_metadata_round_trips_and_an_update_without_it_keeps_it(
    store: Store,
) -> None:
    await store.sync_feeds([feed("a")], T0)
    rec = record("a", "1")
    page = {
        "text": "The article's main text.",
        "page_title": "The page's headline",
        "page_author": "Sara Example; Ali Example",
        "page_published": datetime(2024, 4, 30, 9, 15, tzinfo=timezone(timedelta(hours=2))),
    }
    rec = replace(rec, item=replace(rec.item, **page))
    bare = record("a", "2")
    await store.apply(decision("a", rec, bare), ok("a"))

    stored = {i.guid: i for i in await store.items_since(T0)}
    assert stored["1"] == rec.item and stored["2"] == bare.item
    published = stored["1"].page_published
    assert published == datetime(2024, 4, 30, 7, 15, tzinfo=UTC)
    assert published is not None and published.tzinfo is UTC
    two = stored["2"]
    assert (two.page_title, two.page_author, two.page_published) == ("", "", None)
    headline, byline = "The page's headline", "Sara Example; Ali Example"
    kept = (await store.articles("a", ["1"], ["https://a.example/1"])).by_guid["1"]
    assert (kept.title, kept.author, kept.published) == (headline, byline, published)

    # A material update from the feed reuses the stored text without the page's metadata:
    # the metadata stays; an update that carries the page's metadata rewrites it.
    changed = replace(
        rec.item, title="A new feed title", page_title="", page_author="", page_published=None
    )
    upd = model.ItemUpdate(changed, "hash-2", None, ())
    await store.apply(model.Decision("a", updates=(upd,)), ok("a", T0 + MIN))
    (item,) = await store.find_items("1")
    assert item.title == "A new feed title"
    assert (item.page_title, item.page_author, item.page_published) == (headline, byline, published)
    upd = model.ItemUpdate(replace(changed, page_title="Another headline"), "hash-3", None, ())
    await store.apply(model.Decision("a", updates=(upd,)), ok("a", T0 + 2 * MIN))
    (item,) = await store.find_items("1")
    page = (item.page_title, item.page_author, item.page_published)
    assert page == ("Another headline", "", None)


# --- the outbox ----------------------------------------------------------------------------------


async def _alert_with_copies(store: Store) -> model.ItemRecord:
    await store.sync_feeds([feed("a"), feed("b"), feed("c")], T0)
    early = record("c", "c1", story="s", published=T0 - 30 * MIN)
    await store.apply(model.Decision("c", items=(early,)), ok("c", T0 - 20 * MIN))
    lead = record("a", "a1", story="s", published=T0 - 10 * MIN)
    await store.apply(decision("a", lead), ok("a", T0))
    dupe = record("a", "a2", story="s", published=T0 - 5 * MIN)  # same feed: not a copy
    b_copy = record("b", "b1", story="s", published=None)  # ordered by fetch time
    await store.apply(model.Decision("a", items=(dupe,)), ok("a", T0 + MIN))
    await store.apply(model.Decision("b", items=(b_copy,)), ok("b", T0 + 2 * MIN))
    return lead


async def test_claim_deliveries_carries_item_match_and_copies(store: Store) -> None:
    lead = await _alert_with_copies(store)
    assert await store.claim_deliveries(T0 - MIN, limit=5, lease=MIN, owner="n") == []

    (d,) = await store.claim_deliveries(T0, limit=5, lease=MIN, owner="n")
    assert (d.channel, d.rule, d.priority, d.story, d.attempts, d.created) == (
        "desk",
        "treaty",
        "normal",
        "s",
        0,
        T0,
    )
    assert d.item == lead.item
    assert d.match == matched(lead).match
    assert d.also == (
        model.Copy("c", "https://c.example/c1", T0 - 30 * MIN),
        model.Copy("b", "https://b.example/b1", None),
    )
    # Leased: nobody else gets it until the lease expires.
    assert (
        await store.claim_deliveries(T0 + timedelta(seconds=30), limit=5, lease=MIN, owner="m")
        == []
    )
    (again,) = await store.claim_deliveries(T0 + MIN, limit=5, lease=MIN, owner="m")
    assert again.id == d.id


async def test_delivery_without_stored_match(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    rec = record("a", "1")
    await store.apply(model.Decision("a", items=(rec,), alerts=(alert(rec),)), ok("a"))
    (d,) = await store.claim_deliveries(T0, limit=1, lease=MIN, owner="n")
    assert (d.match, d.also) == (None, ())


async def test_mark_sent_failed_dead_and_retry(store: Store) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.apply(decision("a", record("a", "1"), record("a", "2")), ok("a"))
    first, second = await store.claim_deliveries(T0, limit=5, lease=MIN, owner="n")

    await store.mark_sent(first.id, T0 + MIN)
    await store.mark_failed(second.id, T0 + MIN, "smtp 451", retry_at=T0 + 10 * MIN)
    assert await store.claim_deliveries(T0 + 5 * MIN, limit=5, lease=MIN, owner="n") == []
    (retried,) = await store.claim_deliveries(T0 + 10 * MIN, limit=5, lease=MIN, owner="n")
    assert (retried.id, retried.attempts) == (second.id, 1)

    await store.mark_failed(second.id, T0 + 11 * MIN, "smtp 550", retry_at=None)
    assert await store.claim_deliveries(T0 + 60 * MIN, limit=5, lease=MIN, owner="n") == []
    assert await store.outbox_depth() == 0
    log = {row.id: row for row in await store.alerts()}
    assert log[first.alert_id] == AlertRow(
        id=first.alert_id,
        rule="treaty",
        channel="desk",
        feed="a",
        title="title 1",
        url="https://a.example/1",
        created=T0,
        status="sent",
        attempts=1,
        last_error=None,
        sent_at=T0 + MIN,
    )
    dead = log[second.alert_id]
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 2, "smtp 550")

    assert await store.retry_dead(first.alert_id, T0) == 0  # sent, not dead
    assert await store.retry_dead(None, T0 + 61 * MIN) == 1
    (revived,) = await store.claim_deliveries(T0 + 61 * MIN, limit=5, lease=MIN, owner="n")
    assert (revived.id, revived.attempts) == (second.id, 0)
    counts = await store.counts()
    assert (counts["pending"], counts["sent"], counts["dead"]) == (1, 1, 0)

    with pytest.raises(LookupError):
        await store.mark_sent(9999, T0)


async def test_concurrent_mark_sent_commit_together_and_an_unknown_id_fails_alone(
    store: Store,
) -> None:
    await store.sync_feeds([feed("a")], T0)
    await store.apply(decision("a", *(record("a", str(k)) for k in range(6))), ok("a"))
    claimed = await store.claim_deliveries(T0, limit=10, lease=MIN, owner="n")
    outcomes = await asyncio.gather(
        store.mark_sent(9999, T0),
        *(store.mark_sent(d.id, T0 + k * MIN) for k, d in enumerate(claimed)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], LookupError)
    assert outcomes[1:] == [None] * len(claimed)
    log = {row.id: row for row in await store.alerts()}
    for k, d in enumerate(claimed):
        row = log[d.alert_id]
        assert (row.status, row.attempts, row.sent_at) == ("sent", 1, T0 + k * MIN)
    assert await store.outbox_depth() == 0


@pytest.mark.postgres
async def test_concurrent_outbox_claimers_never_share_a_delivery(pg_url: str) -> None:
    async with await Store.open(pg_url) as one, await Store.open(pg_url) as two:
        await one.sync_feeds([feed("a")], T0)
        await one.apply(decision("a", *(record("a", str(n)) for n in range(30))), ok("a"))
        got = await asyncio.gather(
            *(s.claim_deliveries(T0, limit=4, lease=MIN, owner="o") for s in [one, two] * 5)
        )
        ids = [d.id for batch in got for d in batch]
        assert len(ids) == len(set(ids)) == 30  # 10 claims of 4: all, once


# --- reports ---------------------------------------------------------------------------------


async def test_alerts_and_stories_reports(store: Store) -> None:
    await _alert_with_copies(store)
    await store.apply(model.Decision("b", items=(record("b", "lonely"),)), ok("b", T0 + 3 * MIN))
    (row,) = await store.alerts()
    assert (row.feed, row.title, row.status) == ("a", "title a1", "pending")
    stories = await store.stories()
    assert [(s.story, s.items, s.feeds, s.title, s.first_seen) for s in stories] == [
        ("s", 4, ("c", "a", "b"), "title c1", T0 - 20 * MIN)
    ]
    assert await store.stories(limit=0) == []


# --- time --------------------------------------------------------------------------------------


async def test_datetimes_round_trip_as_aware_utc(store: Store) -> None:
    tehran = timezone(timedelta(hours=3, minutes=30))
    at = datetime(2024, 5, 1, 15, 30, 0, 123456, tzinfo=tehran)  # 12:00:00.123456 UTC
    await store.sync_feeds([feed("a")], at)
    rec = record("a", "1", published=at)
    await store.apply(decision("a", rec), ok("a", at))
    (state,) = await store.feed_states()
    (item,) = await store.items_since(at - MIN)
    for value in (state.last_polled, state.next_poll, item.published):
        assert value is not None
        assert value.tzinfo is UTC
    assert state.last_polled == item.published == T0 + timedelta(microseconds=123456)

    with pytest.raises(ValueError, match="naive"):
        await store.items_since(datetime(2024, 5, 1))
    (d,) = await store.claim_deliveries(at, limit=1, lease=MIN, owner="n")
    assert d.created.tzinfo is UTC


# --- migrations and opening -------------------------------------------------------------------


def _schema_diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_migrated_schema_equals_tables(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.close()
    store = await Store.open(store_url)  # a second open: nothing to do, nothing breaks
    await store.close()
    engine = dialect.create_engine(dialect.async_url(store_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
            assert await conn.run_sync(migrations.current) == migrations.head()
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert tables == {
        "alembic_version",
        "feeds",
        "items",
        "matches",
        "alerts",
        "deliveries",
        "item_bands",
        "announcements",
    }


async def test_a_database_behind_head_is_upgraded_and_one_at_head_is_only_read(
    store_url: str,
) -> None:
    assert migrations.HEAD == migrations.head()  # the file names agree with Alembic
    engine = dialect.create_engine(dialect.async_url(store_url))
    try:
        async with engine.begin() as conn:
            assert not await conn.run_sync(migrations.at_head)  # never migrated
            await conn.run_sync(migrations.upgrade, "0009")
            assert not await conn.run_sync(migrations.at_head)
        await (await Store.open(store_url)).close()
        async with engine.connect() as conn:
            assert await conn.run_sync(migrations.at_head)
            assert await conn.run_sync(migrations.current) == migrations.HEAD
    finally:
        await engine.dispose()


async def test_open_without_migrate_leaves_an_empty_database_empty(store_url: str) -> None:
    store = await Store.open(store_url, migrate=False)
    await store.close()
    engine = dialect.create_engine(dialect.async_url(store_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(migrations.current) is None
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(pg_url) for _ in range(4)))
    for store in stores:
        await store.close()
    async with await Store.open(pg_url) as store:
        assert (await store.counts())["feeds"] == 0


async def test_sqlite_paths_and_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with await Store.open("sqlite:///var/sub/newsmon.db") as store:
        assert store.dialect == "sqlite"
        await store.sync_feeds([feed("a")], T0)
    assert (tmp_path / "var" / "sub" / "newsmon.db").exists()

    async with await Store.open("sqlite+aiosqlite:///:memory:") as store:
        await store.sync_feeds([feed("a")], T0)
        await asyncio.gather(*(store.apply(model.Decision("a"), ok("a")) for _ in range(5)))
        assert (await store.feed_states())[0].polls == 5


def test_url_mapping() -> None:
    assert dialect.async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert dialect.async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert dialect.async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert dialect.async_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"
    for bad in ("mysql://u@h/db", "postgresql+psycopg2://u@h/db"):
        with pytest.raises(ValueError, match="unsupported"):
            dialect.async_url(bad)


async def test_an_announcement_is_claimed_once_and_health_helpers_answer(store: Store) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await store.ping()
    assert await store.claim_announcement("feed\x1ffailing\x1f2026-11-20", now)
    assert not await store.claim_announcement("feed\x1ffailing\x1f2026-11-20", now)
    assert all(s.last_new_item is None for s in await store.feed_states())
