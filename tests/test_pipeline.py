"""decide() and plan_update(): pure, so tested with values only (real rules, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor import dedupe
from monitor.model import Feed, FeedState, FetchResult, Item, KnownState, Rule
from monitor.pipeline import MAX_BACKOFF, decide, lookup_keys, plan_update
from monitor.rules import compile_rules

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)
FEED = Feed("wire", "https://wire.example/feed", timedelta(minutes=10), tags=("middle-east",))
CHANNELS = ("desk", "console")
RULES = compile_rules(
    [
        Rule("evin", '"evin prison"'),
        Rule("treaty", "@IRAN AND Russia AND ratif*", channels=("desk",), priority="high"),
        Rule("tagged", "Tehran", feeds=("tag:middle-east",)),
        Rule("off", "Iran", enabled=False),
    ],
    {"IRAN": ["Iran", "ایران"]},
)
LONG = (
    "Relatives of detainees gathered outside the prison gates on Sunday asking for news of "
    "the prisoners moved during the night, witnesses said."
)


def state(polls: int = 3, **kw: object) -> FeedState:
    base = FeedState("wire", FEED.url, None, None, None, None, None, 0, None, polls)
    return replace(base, **kw)  # type: ignore[arg-type]


def item(
    guid: str, title: str, *, age: timedelta | None = timedelta(hours=1), **kw: object
) -> Item:
    published = NOW - age if age is not None else None
    return Item(
        "wire",
        guid,
        kw.pop("url", f"https://wire.example/{guid}"),
        title,
        kw.pop("summary", ""),
        published=published,
        **kw,
    )  # type: ignore[arg-type]


def run(
    items: list[Item],
    st: FeedState | None = None,
    known: KnownState | None = None,
    feed: Feed = FEED,
):
    return decide(
        feed,
        st or state(),
        items,
        known or KnownState(),
        RULES,
        CHANNELS,
        now=NOW,
        backlog_window=WINDOW,
    )


def test_new_matching_item_queues_one_alert_per_channel_of_its_rule() -> None:
    d = run([item("a", "Iran's parliament ratifies treaty with Russia")])
    assert [(a.rule, a.channel, a.priority) for a in d.alerts] == [("treaty", "desk", "high")]
    assert [m.match.rule for m in d.matches] == ["treaty"]
    assert d.items[0].baseline is False and d.items[0].joined is False


def test_rule_without_channels_alerts_on_every_channel() -> None:
    d = run([item("a", "Families gather at Evin prison")])
    assert sorted(a.channel for a in d.alerts) == ["console", "desk"]
    assert len({a.key for a in d.alerts}) == 2


def test_non_matching_and_disabled_rules_store_without_alert() -> None:
    d = run([item("a", "Iran holds elections")])
    assert len(d.items) == 1 and d.alerts == () and d.matches == ()


def test_feed_tag_filter() -> None:
    assert [m.match.rule for m in run([item("a", "Tehran traffic")]).matches] == ["tagged"]
    untagged = replace(FEED, tags=())
    assert run([item("a", "Tehran traffic")], feed=untagged).matches == ()


def test_first_poll_is_a_baseline_except_recent_items() -> None:
    items = [
        item("old", "Evin prison news", age=timedelta(days=3)),
        item("undated", "Evin prison update", age=None),
        item("future", "Evin prison 2099", age=timedelta(days=-30)),
        item("fresh", "Evin prison today", age=timedelta(hours=2)),
    ]
    d = run(items, state(polls=0))
    assert {r.item.guid: r.baseline for r in d.items} == {
        "old": True,
        "undated": True,
        "future": True,
        "fresh": False,
    }
    assert {a.guid for a in d.alerts} == {"fresh"}
    # After the baseline, an undated or old new item is news: it alerts.
    later = run(items, state(polls=1))
    assert {a.guid for a in later.alerts} == {"old", "undated", "future", "fresh"}


def test_seen_guids_and_repeats_in_one_document_are_not_new() -> None:
    items = [item("a", "Evin prison"), item("a", "Evin prison (repeat)"), item("b", "Other")]
    d = run(items, known=KnownState(seen_guids=frozenset({"b"})))
    assert [r.item.guid for r in d.items] == ["a"]
    assert d.seen == 2
    assert len(d.alerts) == 2  # "a" on both channels, once


def test_same_canonical_url_joins_the_stored_story() -> None:
    url = "https://News.example.com/2026/evin?utm_source=rss&id=7#top"
    key = dedupe.canonical_url("http://www.news.example.com/2026/evin?id=7")
    assert key is not None
    known = KnownState(story_by_url={key: "s:existing"})
    d = run([item("x", "Evin prison: copy", url=url)], known=known)
    assert d.items[0].story == "s:existing" and d.items[0].joined
    assert {a.story for a in d.alerts} == {"s:existing"}


def test_copies_within_one_batch_share_a_story() -> None:
    d = run(
        [
            item("x", "Evin prison", url="https://a.example/p?utm_medium=x"),
            item("y", "Evin prison again", url="https://a.example/p"),
        ]
    )
    assert d.items[0].story == d.items[1].story
    assert d.items[1].joined and not d.items[0].joined
    # Two items, one story: the alert keys collapse, so the store keeps one per channel.
    assert len({a.key for a in d.alerts}) == 2


def test_content_fingerprint_joins_only_substantial_texts() -> None:
    rotated = [
        item("g1", "Evin prison", summary=LONG, url=None),
        item("g2", "Evin prison", summary=LONG, url=None),
    ]
    d = run(rotated)
    assert d.items[1].story == d.items[0].story
    short = [item("h1", "Evin prison", url=None), item("h2", "Evin prison", url=None)]
    d = run(short)
    assert d.items[0].story != d.items[1].story


def test_lookup_keys_cover_what_decide_asks() -> None:
    items = [
        item("g1", "Evin", summary=LONG),
        item("g2", "Evin", url="https://x.example/?fbclid=1"),
    ]
    keys = lookup_keys(items)
    assert keys.guids == {"g1", "g2"}
    assert keys.urls == {"https://wire.example/g1", "https://x.example/"}
    assert len(keys.hashes) == 1  # the short one is not looked up by content


# --- plan_update ------------------------------------------------------------------------------


def ok(**kw: object) -> FetchResult:
    fields: dict[str, object] = {
        "status": 200,
        "body": b"<rss/>",
        "etag": '"v1"',
        "last_modified": "Sun, 22 Nov 2026 10:00:00 GMT",
    }
    fields.update(kw)
    return FetchResult(FEED.url, FEED.url, **fields)  # type: ignore[arg-type]


def test_success_keeps_validators_and_schedules_within_jitter() -> None:
    u = plan_update(FEED, state(error_count=3), ok(), now=NOW)
    assert u.success and u.error is None
    assert (u.etag, u.last_modified) == ('"v1"', "Sun, 22 Nov 2026 10:00:00 GMT")
    assert NOW + FEED.interval <= u.next_poll <= NOW + FEED.interval * 1.1
    again = plan_update(FEED, state(), ok(), now=NOW)
    assert again.next_poll == u.next_poll  # jitter is stable per feed


def test_not_modified_is_a_success() -> None:
    u = plan_update(FEED, state(), ok(status=304, body=None, not_modified=True), now=NOW)
    assert u.success and u.etag == '"v1"'


def test_cache_control_stretches_interval_within_a_cap() -> None:
    u = plan_update(FEED, state(), ok(headers={"cache-control": "public, max-age=3600"}), now=NOW)
    assert u.next_poll >= NOW + timedelta(hours=1)
    huge = plan_update(FEED, state(), ok(headers={"cache-control": "max-age=9999999"}), now=NOW)
    assert huge.next_poll <= NOW + timedelta(hours=7)


def test_failures_back_off_exponentially_to_a_ceiling_and_keep_validators() -> None:
    failing = FetchResult(FEED.url, FEED.url, 500, None, error="HTTP 500")
    st = state(etag='"old"', last_modified="x")
    delays = [
        plan_update(FEED, state(error_count=n, etag='"old"'), failing, now=NOW).next_poll - NOW
        for n in range(12)
    ]
    assert delays == sorted(delays) and delays[0] == FEED.interval
    assert delays[-1] == MAX_BACKOFF
    u = plan_update(FEED, st, failing, now=NOW)
    assert not u.success and u.error == "HTTP 500" and u.etag == '"old"' and u.last_modified == "x"


def test_retry_after_is_a_floor() -> None:
    limited = FetchResult(
        FEED.url, FEED.url, 429, None, error="HTTP 429", retry_after=timedelta(hours=2)
    )
    assert plan_update(FEED, state(), limited, now=NOW).next_poll == NOW + timedelta(hours=2)


def test_gone_disables_the_feed() -> None:
    u = plan_update(
        FEED, state(), FetchResult(FEED.url, FEED.url, 410, None, error="HTTP 410"), now=NOW
    )
    assert u.disabled_reason == "410 Gone" and not u.success


def test_permanent_redirect_moves_the_feed() -> None:
    u = plan_update(FEED, state(), ok(permanent_redirect="https://new.example/feed"), now=NOW)
    assert u.url == "https://new.example/feed"


def test_a_200_without_a_feed_is_a_failure_that_drops_its_validators() -> None:
    st = state(etag='"good"', last_modified="before")
    u = plan_update(
        FEED, st, ok(etag='"challenge"'), now=NOW, problem="not a feed: looks like HTML"
    )
    assert not u.success and u.error == "not a feed: looks like HTML"
    assert u.etag == '"good"' and u.last_modified == "before"


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://www.Example.com/a/b?utm_source=x&utm_medium=y", "https://example.com/a/b"),
        ("http://example.com:80/a?id=3&fbclid=zz#frag", "https://example.com/a?id=3"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?b=2&a=1"),
        ("ftp://example.com/a", None),
        ("not a url", None),
        ("", None),
        (None, None),
        ("https://[::1", None),
    ],
)
def test_canonical_url(url: str | None, key: str | None) -> None:
    assert dedupe.canonical_url(url) == key


def test_content_hash_ignores_case_punctuation_and_spacing() -> None:
    a = dedupe.content_hash("Evin Prison: News", "Families  wait.")
    assert a == dedupe.content_hash("evin prison news", "families wait")
    assert a != dedupe.content_hash("Evin prison news", "families left")
    assert dedupe.story_key("f", "g") == dedupe.story_key("f", "g") != dedupe.story_key("f", "h")


def test_very_long_urls_become_digests_that_still_compare_equal() -> None:
    long = "https://x.example/" + "a" * 5000
    key = dedupe.canonical_url(long + "?utm_source=x")
    assert key is not None and key.startswith("sha256:") and len(key) < 100
    assert key == dedupe.canonical_url(long)
