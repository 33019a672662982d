"""Decide what one poll of one feed leads to. Pure: values in, values out.

    claim due feed | fetch | parse | store.known | decide + plan_update | store.apply

`decide()` takes the feed, its state, the parsed items, what the store already knows of them,
the compiled rules and `now`, and returns a `Decision`: the items to store (each with its story),
the rules they matched and the alerts to queue. `plan_update()` turns a fetch outcome into the
feed's next state (validators, next poll, backoff). Neither does I/O nor reads the clock, so
both are tested without a network or a database.

What counts as new: an item whose GUID this feed has not stored. What counts as the same story:
the same canonical URL (any feed), or, for items with enough words, the same content fingerprint.
What is never alerted: everything of a feed's first poll that is older than the backlog window or
undated (the baseline), so adding a feed does not flood the channels with its archive.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from monitor import dedupe
from monitor.model import (
    Alert,
    Decision,
    Feed,
    FeedState,
    FeedUpdate,
    FetchResult,
    Item,
    ItemMatch,
    ItemRecord,
    KnownState,
    Match,
    Rule,
)

# A publication date this far ahead of `now` is a feed's mistake (2099, a wrong time zone),
# not news from the future: such an item is treated as undated when deciding the baseline.
FUTURE_SKEW = timedelta(days=1)
# Failing feeds back off exponentially from their interval up to this ceiling, so a dead host
# is asked about once a day at most, and retried promptly once it answers again.
MAX_BACKOFF = timedelta(hours=24)
# A server's Cache-Control max-age may stretch the interval, never beyond this.
MAX_CACHE_STRETCH = timedelta(hours=6)
# Next polls are spread over this share of the interval, per feed, so feeds configured together
# (or a restart) do not all fall due in the same second.
JITTER_SHARE = 0.1


class Matcher(Protocol):
    """What `decide` needs of the compiled rules (monitor.rules.RuleSet)."""

    @property
    def rules(self) -> tuple[Rule, ...]: ...

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]: ...


@dataclass(frozen=True, slots=True)
class Lookup:
    """The keys `store.known()` must be asked about before `decide` runs."""

    guids: frozenset[str]
    urls: frozenset[str]
    hashes: frozenset[str]


def _body(item: Item) -> str:
    return item.content or item.summary


def lookup_keys(items: Sequence[Item]) -> Lookup:
    """The GUIDs, canonical URLs and content fingerprints of `items` to look up in the store."""
    urls = {u for u in (dedupe.canonical_url(i.url) for i in items) if u}
    hashes = {
        dedupe.content_hash(i.title, _body(i))
        for i in items
        if dedupe.content_words(i.title, _body(i)) >= dedupe.MIN_WORDS_FOR_CONTENT_MATCH
    }
    return Lookup(frozenset(i.guid for i in items), frozenset(urls), frozenset(hashes))


def is_baseline(item: Item, first_poll: bool, now: datetime, backlog_window: timedelta) -> bool:
    """Whether `item` is stored without alerting: on a first poll, old, undated or far-future."""
    if not first_poll:
        return False
    published = item.published or item.updated
    if published is None or published > now + FUTURE_SKEW:
        return True
    return published < now - backlog_window


def decide(
    feed: Feed,
    state: FeedState,
    items: Sequence[Item],
    known: KnownState,
    rules: Matcher,
    channels: Sequence[str],
    *,
    now: datetime,
    backlog_window: timedelta,
) -> Decision:
    """The items to store, their stories, the rules they match and the alerts to queue.

    `channels` are the configured channel names; a rule without `channels:` alerts on all.
    Items already stored for this feed (by GUID) are counted in `seen` and otherwise ignored;
    repeated GUIDs within one document count once.
    """
    first_poll = state.polls == 0
    rule_by_name = {r.name: r for r in rules.rules}
    story_by_url: dict[str, str] = dict(known.story_by_url)
    story_by_hash: dict[str, str] = dict(known.story_by_hash)
    seen_now: set[str] = set()
    records: list[ItemRecord] = []
    matches: list[ItemMatch] = []
    alerts: list[Alert] = []
    seen = 0

    for item in items:
        if item.guid in known.seen_guids or item.guid in seen_now:
            seen += 1
            continue
        seen_now.add(item.guid)

        url = dedupe.canonical_url(item.url)
        body = _body(item)
        fingerprint = dedupe.content_hash(item.title, body)
        substantial = dedupe.content_words(item.title, body) >= dedupe.MIN_WORDS_FOR_CONTENT_MATCH
        story = (url and story_by_url.get(url)) or (substantial and story_by_hash.get(fingerprint))
        joined = bool(story)
        if not story:
            story = dedupe.story_key(feed.name, item.guid)
        # Later copies in this same batch join this item's story.
        if url:
            story_by_url.setdefault(url, story)
        if substantial:
            story_by_hash.setdefault(fingerprint, story)

        baseline = is_baseline(item, first_poll, now, backlog_window)
        records.append(ItemRecord(item, url, fingerprint, story, baseline, joined))
        if baseline:
            continue
        for match in rules.match(item, feed_tags=feed.tags):
            matches.append(ItemMatch(feed.name, item.guid, match))
            rule = rule_by_name[match.rule]
            for channel in rule.channels or tuple(channels):
                alerts.append(Alert(rule.name, channel, story, feed.name, item.guid, rule.priority))

    return Decision(feed.name, tuple(records), tuple(matches), tuple(alerts), seen)


def _jitter(name: str, interval: timedelta) -> timedelta:
    # Stable per feed (crc32, not hash(): that one changes with every process), so replicas agree.
    share = (zlib.crc32(name.encode()) % 1000) / 1000 * JITTER_SHARE
    return interval * share


def _max_age(headers: Mapping[str, str]) -> timedelta | None:
    for part in headers.get("cache-control", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() == "max-age" and value.strip().isdigit():
            return timedelta(seconds=int(value))
    return None


def plan_update(
    feed: Feed,
    state: FeedState,
    result: FetchResult,
    *,
    now: datetime,
    problem: str | None = None,
) -> FeedUpdate:
    """The feed's next state after `result`.

    `problem` is set by the caller when a 200's body held no usable feed (an HTML challenge page,
    an empty document): that poll counts as a failure and its validators are not kept, or the
    next conditional GET would be answered 304 forever with the broken page.
    """
    interval = feed.interval
    if result.gone:
        return FeedUpdate(
            name=feed.name,
            polled_at=now,
            status=result.status,
            next_poll=now + MAX_BACKOFF,
            success=False,
            error="410 Gone: the server says the feed was removed",
            disabled_reason="410 Gone",
        )
    error = result.error or (problem if not result.not_modified else None)
    if error is None and result.ok:
        max_age = _max_age(result.headers)
        if max_age is not None and max_age > interval:
            interval = min(max_age, MAX_CACHE_STRETCH)
        return FeedUpdate(
            name=feed.name,
            polled_at=now,
            status=result.status,
            next_poll=now + interval + _jitter(feed.name, interval),
            success=True,
            url=result.permanent_redirect,
            etag=result.etag,
            last_modified=result.last_modified,
        )
    errors = state.error_count + 1
    # The first failure retries after one interval (a blip), then the wait doubles.
    backoff = min(interval * (2 ** min(errors - 1, 10)), MAX_BACKOFF)
    if result.retry_after is not None:
        backoff = max(backoff, min(result.retry_after, MAX_BACKOFF))
    return FeedUpdate(
        name=feed.name,
        polled_at=now,
        status=result.status,
        next_poll=now + backoff,
        success=False,
        error=error or "no usable response",
        etag=state.etag,
        last_modified=state.last_modified,
    )
