"""Decide what one poll of one feed leads to. Pure: values in, values out.

    claim due feed | fetch | parse | store.known | decide + plan_update | store.apply

`decide()` takes the feed, its state, the parsed items, what the store already knows of them,
the compiled rules and `now`, and returns a `Decision`: the items to store (each with its story),
the rules they matched and the alerts to queue. `plan_update()` turns a fetch outcome into the
feed's next state (validators, next poll, backoff). Neither does I/O nor reads the clock, so
both are tested without a network or a database.

What counts as new: an item whose GUID this feed has not stored (or has stored with a text that
since changed materially: an update). What counts as the same story: the same canonical URL (any
feed), the same text (this feed; any feed for texts of 12+ words), or a near-duplicate text
(MinHash, texts of `DedupePolicy.min_words`+ words) — see `decide`. What is never alerted:
everything of a feed's first poll that is older than the backlog window or undated (the
baseline), so adding a feed does not flood the channels with its archive.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from monitor import dedupe
from monitor.model import (
    Alert,
    Decision,
    DedupePolicy,
    Feed,
    FeedState,
    FeedUpdate,
    FetchResult,
    Item,
    ItemMatch,
    ItemRecord,
    ItemUpdate,
    KnownState,
    KnownStories,
    Match,
    NearCandidate,
    Rule,
    Seen,
)

# A publication date this far ahead of `now` is a feed's mistake (2099, a wrong time zone),
# not news from the future: such an item is treated as undated when deciding the baseline.
FUTURE_SKEW = timedelta(days=1)
# Failing feeds back off exponentially from their interval up to this ceiling (plus jitter), so
# a dead host is asked about once a day, and retried promptly once it answers again.
MAX_BACKOFF = timedelta(hours=24)
# A server's Cache-Control max-age may stretch the interval, never beyond this.
MAX_CACHE_STRETCH = timedelta(hours=6)
# Next polls (and retries of failing feeds) are spread over this share of the wait, per feed,
# so feeds configured together, or failing together (the network was down), do not all fall
# due in the same second.
JITTER_SHARE = 0.1
# At start, the feeds that are due (new ones, and every feed that fell due while the daemon was
# down) are spread out rather than polled in the first seconds: polled in one burst, they would
# stay in step, within the 10 % jitter, for good. Each is moved by a random offset within this
# share of its interval, at most START_SPREAD_MAX (a new feed's first poll waits no longer than
# that), and the whole spread is no wider than START_SPACING per due feed: a handful of feeds
# start at once, a thousand over 100 s, about ten a second.
START_SPREAD_SHARE = 0.5
START_SPREAD_MAX = timedelta(minutes=5)
START_SPACING = timedelta(milliseconds=100)


class Matcher(Protocol):
    """What `decide` needs of the compiled rules (monitor.rules.RuleSet)."""

    @property
    def rules(self) -> tuple[Rule, ...]: ...

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]: ...


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The story keys of one parsed item, computed once per poll (signatures cost ~0.5 ms)."""

    url: str | None  # canonical URL
    content_hash: str
    substantial: bool  # enough words for equal text to mean the same report across feeds
    signature: bytes | None  # MinHash; None below `DedupePolicy.min_words`
    bands: tuple[int, ...]  # its LSH band keys


@dataclass(frozen=True, slots=True)
class Lookup:
    """The keys `store.known()` must be asked about before `decide` runs."""

    guids: frozenset[str]
    urls: frozenset[str]
    hashes: frozenset[str]
    bands: frozenset[int]


def _body(item: Item) -> str:
    return item.text or item.content or item.summary


def fingerprints(
    items: Sequence[Item], policy: DedupePolicy, *, stored: Mapping[str, str] | None = None
) -> tuple[Fingerprint, ...]:
    """The story keys of each of `items`, parsed from one feed document.

    Lines the document repeats across its items (the outlet's own bylines, "Read more",
    newsletter plugs) are left out of the signatures: without that, two unrelated items of one
    outlet look alike (precision 0.63 instead of 0.997 in bench/dedupe_eval.py).

    `stored`: the content hash of each GUID this feed stored already. An item listed again
    with that same hash is unchanged, and `decide` only counts it: its signature (most of the
    cost) is not computed, and its `Fingerprint` has none.
    """
    bodies = [_body(i) for i in items]
    boilerplate = dedupe.repeated_lines(bodies)
    prints = []
    for item, body in zip(items, bodies, strict=True):
        content_hash = dedupe.content_hash(item.title, body)
        sig = None
        if stored is None or stored.get(item.guid) != content_hash:
            sig = dedupe.signature(
                item.title, body, boilerplate=boilerplate, min_words=policy.min_words
            )
        prints.append(
            Fingerprint(
                url=dedupe.canonical_url(item.url),
                content_hash=content_hash,
                substantial=dedupe.content_words(item.title, body)
                >= dedupe.MIN_WORDS_FOR_CONTENT_MATCH,
                signature=sig,
                bands=dedupe.band_keys(sig) if sig is not None else (),
            )
        )
    return tuple(prints)


def lookup_keys(
    items: Sequence[Item], prints: Sequence[Fingerprint], *, stored: Collection[str] = ()
) -> Lookup:
    """The GUIDs, canonical URLs, content hashes and band keys to look up in the store.

    `stored`: GUIDs this feed already stored (``KnownState.seen``), when known. `decide` looks
    no story up for them (an unchanged item is counted, a changed one keeps its story), so
    their URLs, hashes and bands are left out; their GUIDs stay in.
    """
    fresh = [p for i, p in zip(items, prints, strict=True) if i.guid not in stored]
    return Lookup(
        guids=frozenset(i.guid for i in items),
        urls=frozenset(p.url for p in fresh if p.url),
        hashes=frozenset(p.content_hash for p in fresh),
        bands=frozenset(b for p in fresh for b in p.bands),
    )


class _NearIndex:
    """Candidate stories by band key: the stored window's candidates, then the batch's items."""

    def __init__(self, candidates: Sequence[NearCandidate]) -> None:
        self._by_band: dict[int, list[NearCandidate]] = {}
        for candidate in candidates:
            # The store says which bands matched; recomputing them (~45 µs a candidate) was
            # a third of a cold run's time in bench/speed.py.
            self.add(candidate, candidate.bands or dedupe.band_keys(candidate.signature))

    def add(self, candidate: NearCandidate, bands: Sequence[int]) -> None:
        for band in bands:
            self._by_band.setdefault(band, []).append(candidate)

    def story(self, signature: bytes, bands: Sequence[int], threshold: float) -> str | None:
        """The story of the most similar candidate at or above `threshold`, if any."""
        found: dict[int, NearCandidate] = {}  # by id(): each candidate once, in band order
        for band in bands:
            for candidate in self._by_band.get(band, ()):
                found.setdefault(id(candidate), candidate)
        if not found:
            return None
        candidates = list(found.values())
        scores = dedupe.similarities(signature, [c.signature for c in candidates])
        best, best_score = None, threshold
        for candidate, score in zip(candidates, scores, strict=True):
            if score >= best_score:  # ties: the last one, as candidates come
                best, best_score = candidate.story, score
        return best


class StoryIndex:
    """The stories a new item may join: what the store knew, then what the batch added.

    Built from the store's answer for one poll (`KnownState`: its feed's own hashes) or for a
    batch of polls of several feeds (`KnownStories`: own hashes by (feed, hash)). `decide`
    adds every new item it keeps, so a copy later in the batch, in the same document or in a
    feed decided after it, joins the first one's story exactly as if that one were stored.
    """

    def __init__(self, known: KnownState | KnownStories, feed: str | None = None) -> None:
        """`feed`: the feed whose own hashes `known` holds, when it is a `KnownState`."""
        self._by_url: dict[str, str] = dict(known.story_by_url)
        self._by_hash: dict[str, str] = dict(known.story_by_hash)
        self._own: dict[tuple[str, str], str]
        if isinstance(known, KnownStories):
            self._own = dict(known.own_story_by_hash)
        else:
            self._own = {(feed or "", h): s for h, s in known.own_story_by_hash.items()}
        self._near = _NearIndex(known.near)

    def earlier(
        self, feed: str, fp: Fingerprint, threshold: float
    ) -> tuple[str | None, str | None]:
        """The story an item of `feed` is a copy of, and by which key: "url", "hash", "near"."""
        if fp.url and fp.url in self._by_url:
            return self._by_url[fp.url], "url"
        own = self._own.get((feed, fp.content_hash))
        if own is not None:
            return own, "hash"
        if fp.substantial and fp.content_hash in self._by_hash:
            return self._by_hash[fp.content_hash], "hash"
        if fp.signature:
            story = self._near.story(fp.signature, fp.bands, threshold)
            if story:
                return story, "near"
        return None, None

    def add(self, feed: str, fp: Fingerprint, story: str) -> None:
        """A new item of `feed` kept with `story`: later copies find it by each of its keys."""
        if fp.url:
            self._by_url.setdefault(fp.url, story)
        self._own.setdefault((feed, fp.content_hash), story)
        if fp.substantial:
            self._by_hash.setdefault(fp.content_hash, story)
        if fp.signature:
            self._near.add(NearCandidate(story, fp.signature), fp.bands)


# A stored item whose GUID comes again with a text this different (estimated Jaccard of the
# two signatures below this) was rewritten, not retouched: a correction of a typo or a
# re-rendered byline stays well above it (bench/dedupe_eval.py: edited copies score >= 0.6).
MATERIAL_CHANGE = 0.5


def _material(seen: Seen, fp: Fingerprint) -> bool:
    if seen.content_hash == fp.content_hash:
        return False
    if seen.signature is None or fp.signature is None:
        return True  # short texts: any change of words (not of case or spacing) is material
    return dedupe.similarity(seen.signature, fp.signature) < MATERIAL_CHANGE


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
    dedupe_policy: DedupePolicy | None = None,
    prints: Sequence[Fingerprint] | None = None,
    stories: StoryIndex | None = None,
) -> Decision:
    """The items to store, their stories, the rules they match and the alerts to queue.

    `channels` are the configured channel names; a rule without `channels:` alerts on all.
    `prints` are `fingerprints(items, dedupe_policy)`, computed here when not given.
    `stories`: the index of a batch of polls decided one after the other (monitor.ingest),
    updated in place; without it the stories come from `known` alone, and `known.seen` is
    read either way.

    A new item joins the story of: an item with its canonical URL (any feed); else one with
    its exact text in this feed (a re-post under a new GUID, however short) or, for texts of
    `MIN_WORDS_FOR_CONTENT_MATCH` words or more, in any feed; else the most similar item
    above `dedupe_policy.threshold` among those sharing a MinHash band in the window (texts of
    `min_words` or more). Items already stored for this feed (by GUID) are counted in `seen`,
    unless their text changed materially: then they are rewritten (`updates`), keep their
    story, and alert again only for rules with `realert_on_update`. Repeated GUIDs within one
    document count once. The GUIDs of stored items listed again unchanged are
    `still_listed`: retention keeps what a feed still carries.
    """
    policy = dedupe_policy or DedupePolicy()
    prints = prints if prints is not None else fingerprints(items, policy)
    first_poll = state.polls == 0
    index = stories if stories is not None else StoryIndex(known, feed.name)
    done: set[str] = set()
    records: list[ItemRecord] = []
    updates: list[ItemUpdate] = []
    matching = _Matching(feed, rules, channels)
    seen = 0
    still_listed: list[str] = []

    for item, fp in zip(items, prints, strict=True):
        if item.guid in done:
            seen += 1
            continue
        done.add(item.guid)
        stored = known.seen.get(item.guid)
        if stored is not None:
            if not _material(stored, fp):
                seen += 1
                still_listed.append(item.guid)
                continue
            updates.append(ItemUpdate(item, fp.content_hash, fp.signature, fp.bands))
            matching.run(item, stored.story, revision=fp.content_hash[-12:])
            continue

        story, joined_by = index.earlier(feed.name, fp, policy.threshold)
        story = story or dedupe.story_key(feed.name, item.guid)
        index.add(feed.name, fp, story)  # later copies in this batch join this item's story

        baseline = is_baseline(item, first_poll, now, backlog_window)
        records.append(
            ItemRecord(
                item, fp.url, fp.content_hash, story, baseline, joined_by, fp.signature, fp.bands
            )
        )
        if not baseline:
            matching.run(item, story)

    return Decision(
        feed.name,
        tuple(records),
        tuple(matching.matches),
        tuple(matching.alerts),
        seen,
        tuple(updates),
        tuple(still_listed),
    )


class _Matching:
    """Rule matches of one decision and the alerts they queue."""

    def __init__(self, feed: Feed, rules: Matcher, channels: Sequence[str]) -> None:
        self._feed = feed
        self._rules = rules
        self._by_name = {r.name: r for r in rules.rules}
        self._channels = tuple(channels)
        self.matches: list[ItemMatch] = []
        self.alerts: list[Alert] = []

    def run(self, item: Item, story: str, *, revision: str | None = None) -> None:
        """Match `item`; queue an alert per channel of each matching rule.

        `revision` marks a material update: rules with `realert_on_update` get a follow-up
        (one per text version); the others alert only if the story never alerted them.
        """
        for match in self._rules.match(item, feed_tags=self._feed.tags):
            self.matches.append(ItemMatch(self._feed.name, item.guid, match))
            rule = self._by_name[match.rule]
            again = revision if revision is not None and rule.realert_on_update else ""
            for channel in rule.channels or self._channels:
                self.alerts.append(
                    Alert(
                        rule.name, channel, story, self._feed.name, item.guid, rule.priority, again
                    )
                )


class Prematched:
    """A `Matcher` answering from matches made ahead, by GUID (in a worker process, where
    `monitor.prepare` matched the items that may be new); an item it was not given is
    matched by `rules` here."""

    def __init__(self, rules: Matcher, made: Mapping[str, Sequence[Match]]) -> None:
        self._rules = rules
        self._made = made

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules.rules

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]:
        made = self._made.get(item.guid)
        if made is None:
            return self._rules.match(item, feed_tags=feed_tags)
        return list(made)


def _jitter(name: str, interval: timedelta) -> timedelta:
    # Stable per feed (crc32, not hash(): that one changes with every process), so replicas agree.
    share = (zlib.crc32(name.encode()) % 1000) / 1000 * JITTER_SHARE
    return interval * share


def spread_start(
    due: Sequence[tuple[str, timedelta]], now: datetime, *, rng: random.Random
) -> dict[str, datetime]:
    """When each of the feeds `due` at start, as (name, interval), is polled first.

    Offsets are drawn from `rng` uniformly in ``[0, min(START_SPREAD_SHARE * interval,
    START_SPREAD_MAX, len(due) * START_SPACING)]``. Only the daemon's start uses this;
    ``poll --once`` polls every feed at once whatever its next poll.
    """
    width = START_SPACING * len(due)
    return {
        name: now + min(interval * START_SPREAD_SHARE, START_SPREAD_MAX, width) * rng.random()
        for name, interval in due
    }


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
    # The first failure retries after one interval (a blip), then the wait doubles; the jitter
    # comes on top, so Retry-After stays a floor and feeds that failed together (the network,
    # or one host, was down) do not retry together.
    backoff = min(interval * (2 ** min(errors - 1, 10)), MAX_BACKOFF)
    if result.retry_after is not None:
        backoff = max(backoff, min(result.retry_after, MAX_BACKOFF))
    return FeedUpdate(
        name=feed.name,
        polled_at=now,
        status=result.status,
        next_poll=now + backoff + _jitter(feed.name, backoff),
        success=False,
        error=error or "no usable response",
        etag=state.etag,
        last_modified=state.last_modified,
    )
