"""decide() and plan_update(): pure, so tested with values only (real rules, no I/O)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor import dedupe
from monitor.model import (
    DedupePolicy,
    Feed,
    FeedState,
    FetchResult,
    Item,
    KnownState,
    NearCandidate,
    Rule,
    Seen,
)
from monitor.pipeline import (
    MAX_BACKOFF,
    START_SPREAD_MAX,
    decide,
    fingerprints,
    lookup_keys,
    plan_update,
    spread_start,
)
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
    d = run(
        items, known=KnownState(seen={"b": Seen(dedupe.content_hash("Other", ""), None, "s:b")})
    )
    assert [r.item.guid for r in d.items] == ["a"]
    assert d.seen == 2
    assert len(d.alerts) == 2  # "a" on both channels, once


def test_same_canonical_url_joins_the_stored_story() -> None:
    url = "https://News.example.com/2026/evin?utm_source=rss&id=7#top"
    key = dedupe.canonical_url("http://www.news.example.com/2026/evin?id=7")
    assert key is not None
    known = KnownState(story_by_url={key: "s:existing"})
    d = run([item("x", "Evin prison: copy", url=url)], known=known)
    assert d.items[0].story == "s:existing" and d.items[0].joined_by == "url"
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


def test_content_fingerprint_joins_only_substantial_texts_across_feeds() -> None:
    rotated = [
        item("g1", "Evin prison", summary=LONG, url=None),
        item("g2", "Evin prison", summary=LONG, url=None),
    ]
    d = run(rotated)
    assert d.items[1].story == d.items[0].story
    # A short text stored by another feed ("Live updates") is no reason to join it...
    short = item("h1", "Evin prison", url=None)
    digest = dedupe.content_hash("Evin prison", "")
    d = run([short], known=KnownState(story_by_hash={digest: "s:elsewhere"}))
    assert d.items[0].story != "s:elsewhere" and not d.items[0].joined
    # ...but the same words again in the same feed under a new GUID are a re-post.
    d = run([short], known=KnownState(own_story_by_hash={digest: "s:ours"}))
    assert d.items[0].story == "s:ours" and d.items[0].joined_by == "hash"


def test_a_feed_rotating_guids_on_short_items_raises_no_alert_storm() -> None:
    first = run([item("rot-1", "Evin prison visits halted", url=None)])
    assert len(first.alerts) == 2
    digest = first.items[0].content_hash
    known = KnownState(own_story_by_hash={digest: first.items[0].story})
    again = run([item("rot-2", "Evin prison visits halted", url=None)], known=known)
    # Stored as a copy of the same story: its alerts carry the same keys, which the store
    # already holds, so nothing is sent twice.
    assert {a.key for a in again.alerts} == {a.key for a in first.alerts}


def test_lookup_keys_cover_what_decide_asks() -> None:
    items = [
        item("g1", "Evin", summary=LONG),
        item("g2", "Evin", url="https://x.example/?fbclid=1"),
    ]
    prints = fingerprints(items, DedupePolicy())
    keys = lookup_keys(items, prints)
    assert keys.guids == {"g1", "g2"}
    assert keys.urls == {"https://wire.example/g1", "https://x.example/"}
    assert len(keys.hashes) == 2  # every text: a short one may still be a re-post in its feed
    assert keys.bands == frozenset()  # neither reaches the near-duplicate minimum of 40 words
    # A GUID the feed stored already keeps its story: nothing to look up for it but the GUID.
    only_new = lookup_keys(items, prints, stored={"g1"})
    assert only_new.guids == {"g1", "g2"}
    assert only_new.urls == {"https://x.example/"}
    assert only_new.hashes == {prints[1].content_hash}


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
    assert delays == sorted(delays)
    assert FEED.interval <= delays[0] <= FEED.interval * 1.1  # plus the feed's jitter
    assert MAX_BACKOFF <= delays[-1] <= MAX_BACKOFF * 1.1
    u = plan_update(FEED, st, failing, now=NOW)
    assert not u.success and u.error == "HTTP 500" and u.etag == '"old"' and u.last_modified == "x"


def test_retry_after_is_a_floor() -> None:
    limited = FetchResult(
        FEED.url, FEED.url, 429, None, error="HTTP 429", retry_after=timedelta(hours=2)
    )
    next_poll = plan_update(FEED, state(), limited, now=NOW).next_poll
    assert NOW + timedelta(hours=2) <= next_poll <= NOW + timedelta(hours=2) * 1.1


def test_feeds_failing_together_do_not_retry_together() -> None:
    # The network was down: 200 feeds of one interval failed in the same second.
    failing = FetchResult(FEED.url, FEED.url, None, None, error="connection refused")
    for errors in (0, 3, 20):
        waits = [
            plan_update(
                replace(FEED, name=f"feed-{n}"), state(error_count=errors), failing, now=NOW
            ).next_poll
            - NOW
            for n in range(200)
        ]
        backoff = min(FEED.interval * 2**errors, MAX_BACKOFF)
        assert all(backoff <= w <= backoff * 1.1 for w in waits)
        assert max(waits) - min(waits) >= backoff * 0.09  # over (nearly) the whole 10 %
        assert max(Counter(waits).values()) <= 3  # never a crowd in one instant


def test_feeds_due_at_start_are_spread_over_part_of_their_interval() -> None:
    rng = random.Random(7)
    # A thousand overdue feeds of 10 minutes: over 100 s (0.1 s a feed), not all at once.
    due = [(f"feed-{n}", timedelta(minutes=10)) for n in range(1000)]
    plan = spread_start(due, NOW, rng=rng)
    offsets = sorted((t - NOW).total_seconds() for t in plan.values())
    assert set(plan) == {name for name, _ in due}
    assert 0 <= offsets[0] and offsets[-1] <= 100
    assert offsets[-1] - offsets[0] >= 95
    per_second = [sum(1 for o in offsets if s <= o < s + 1) for s in range(100)]
    assert max(per_second) <= 25, max(per_second)
    # Ten thousand: never past the cap, whatever the interval (a daily feed's first poll
    # waits minutes, not half a day).
    many = [(f"feed-{n}", timedelta(days=1)) for n in range(10_000)]
    assert max(spread_start(many, NOW, rng=rng).values()) <= NOW + START_SPREAD_MAX
    # Short intervals: within half of one.
    short = [(f"fast-{n}", timedelta(seconds=2)) for n in range(100)]
    assert max(spread_start(short, NOW, rng=rng).values()) <= NOW + timedelta(seconds=1)
    # A lone new feed starts at once (within 0.1 s); nothing due, nothing planned.
    (alone,) = spread_start([("new", timedelta(hours=1))], NOW, rng=rng).values()
    assert NOW <= alone <= NOW + timedelta(milliseconds=100)
    assert spread_start([], NOW, rng=rng) == {}
    # The same seed, the same plan: replayable.
    assert spread_start(due, NOW, rng=random.Random(7)) == plan


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


# --- near-duplicates and material updates -----------------------------------------------------

ARTICLE = (
    "Iran's parliament on Sunday ratified the comprehensive strategic partnership treaty with "
    "Russia, state media reported, after a closed session in which deputies approved the "
    "twenty-year agreement by a large majority. The treaty covers defence cooperation, energy "
    "projects and transport corridors, and commits both governments to consult on security "
    "threats. Officials in Moscow welcomed the vote and said the Federation Council would "
    "take up the document within weeks, while analysts noted that it stops short of a mutual "
    "defence clause."
)
OTHER = (
    "Families of prisoners held in Evin prison gathered outside the gates on Monday after "
    "reports that visits had been suspended for a second week. Lawyers said they had not been "
    "allowed to see their clients and that the judiciary gave no reason for the decision. A "
    "spokesman for the prisons organisation declined to comment when reached by telephone, "
    "and relatives said they would return every day until they received news of the inmates "
    "moved during the night."
)
POLICY = DedupePolicy()


def stored(title: str, body: str, story: str) -> NearCandidate:
    sig = dedupe.signature(title, body)
    assert sig is not None
    return NearCandidate(story, sig)


def test_a_rewritten_copy_from_another_outlet_joins_the_story() -> None:
    known = KnownState(near=(stored("Iran ratifies Russia treaty", ARTICLE, "s:orig"),))
    copy = item(
        "c1",
        "Tehran lawmakers back 20-year pact with Moscow",
        summary=ARTICLE.replace("Sunday", "Sunday evening") + "\nRead more on our website.",
        url="https://other.example/c1",
    )
    d = decide(
        FEED,
        state(),
        [copy],
        known,
        RULES,
        CHANNELS,
        now=NOW,
        backlog_window=WINDOW,
        dedupe_policy=POLICY,
    )
    assert d.items[0].story == "s:orig" and d.items[0].joined_by == "near"
    assert d.items[0].signature is not None and len(d.items[0].bands) == 16


def test_an_unrelated_long_text_starts_its_own_story() -> None:
    known = KnownState(near=(stored("Iran ratifies Russia treaty", ARTICLE, "s:orig"),))
    other = item("o1", "Evin visits suspended", summary=OTHER, url="https://x.example/o1")
    d = run([other], known=known)
    assert d.items[0].story != "s:orig" and not d.items[0].joined


def test_near_copies_in_one_document_share_a_story() -> None:
    a = item("a", "Parliament ratifies treaty", summary=ARTICLE, url="https://x.example/a")
    b = item("b", "Treaty with Russia ratified", summary=ARTICLE[:-60], url="https://x.example/b")
    d = run([a, b])
    assert d.items[0].story == d.items[1].story and d.items[1].joined


def seen_as(it: Item, story: str) -> KnownState:
    (fp,) = fingerprints([it], POLICY)
    return KnownState(
        seen={it.guid: Seen(fp.content_hash, fp.signature, story)},
    )


def test_a_retouched_item_is_not_an_update_a_rewritten_one_is() -> None:
    original = item("u1", "Evin prison families wait", summary=OTHER)
    known = seen_as(original, "s:u1")
    retouched = item("u1", "Evin prison families wait", summary=OTHER.replace("Monday", "Tuesday"))
    assert run([retouched], known=known).updates == ()
    rewritten = item("u1", "Evin prison: visits resume", summary=ARTICLE + " Evin prison reopened.")
    d = run([rewritten], known=known)
    assert [u.item.guid for u in d.updates] == ["u1"] and d.items == ()
    # Rules without realert_on_update alert only if the story never alerted them: the key is
    # the plain one, which the store already holds when it did.
    assert {(a.story, a.revision) for a in d.alerts} == {("s:u1", "")}


def test_realert_on_update_sends_one_follow_up_per_text_version() -> None:
    rules = compile_rules([Rule("evin", '"evin prison"', realert_on_update=True)], {})
    original = item("u1", "Evin prison families wait", summary=OTHER)
    rewritten = item("u1", "Evin prison: visits resume", summary=ARTICLE + " Evin prison reopened.")
    d = decide(
        FEED,
        state(),
        [rewritten],
        seen_as(original, "s:u1"),
        rules,
        CHANNELS,
        now=NOW,
        backlog_window=WINDOW,
    )
    revisions = {a.revision for a in d.alerts}
    assert len(revisions) == 1 and "" not in revisions
    assert {a.story for a in d.alerts} == {"s:u1"}
    first_key = {a.key for a in d.alerts}
    again = decide(
        FEED,
        state(),
        [rewritten],
        seen_as(original, "s:u1"),
        rules,
        CHANNELS,
        now=NOW,
        backlog_window=WINDOW,
    )
    assert {a.key for a in again.alerts} == first_key  # same version, same keys: sent once
