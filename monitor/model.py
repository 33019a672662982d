"""The domain values that cross room boundaries.

Every value here is a frozen dataclass built from plain types: no ORM rows, no aiohttp
responses, no feedparser dicts leave the room that made them. Datetimes are always
timezone-aware UTC; durations are ``timedelta``; sizes are bytes.

This module imports nothing but the standard library (see DESIGN.md, "Rooms").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Feed:
    """A feed as configured by the user."""

    name: str  # unique; shown in alerts as the source
    url: str  # as written in the config (the store may hold a newer one after a 301/308)
    interval: timedelta  # time between two polls when the server says nothing else
    full_text: bool = False  # fetch the article page and match its main text (a later issue)
    tags: tuple[str, ...] = ()  # used by rules as `source:tag:x` and `feeds: [tag:x]`
    enabled: bool = True
    expect_update: timedelta = timedelta(days=2)  # failing or silent longer: the feed is unwell


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of a feed between polls."""

    name: str
    url: str  # the URL to poll now: the configured one, or where a permanent redirect led
    etag: str | None  # exactly as the server sent it, sent back in If-None-Match
    last_modified: str | None  # exactly as the server sent it, sent back in If-Modified-Since
    next_poll: datetime | None  # None: due now
    last_polled: datetime | None  # last attempt, whatever its outcome
    last_success: datetime | None  # last 200 or 304
    error_count: int  # consecutive failed polls; 0 after a success
    last_error: str | None  # reason of the last failure, for `newsmon feeds`
    polls: int  # successful polls so far; 0 means the next one is the baseline poll
    disabled_reason: str | None = None  # set when the server said 410 Gone
    created: datetime | None = None  # when the feed was first configured (health's baseline)
    last_new_item: datetime | None = None  # when a poll last brought an item not seen before


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """The limits one HTTP request works within (config `http:`)."""

    user_agent: str
    timeout: float  # seconds: total deadline of one request, redirects included
    max_body: int  # bytes, counted after decompression
    concurrency: int  # requests in flight at once, all hosts together
    per_host: int  # requests in flight at once to one host
    allow_private_networks: bool = False  # loopback, private and link-local targets allowed
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one conditional GET. Failures are values: `error` holds the reason."""

    url: str  # the URL asked for
    final_url: str  # where the last redirect led (== url without redirects)
    status: int | None  # the final HTTP status; None when no response came (DNS, refused, deadline)
    body: bytes | None  # decompressed body of a 200; None otherwise
    headers: Mapping[str, str] = field(
        default_factory=lambda: _EMPTY
    )  # final response's, lower-case
    etag: str | None = None  # from this response, or the one sent when the answer was 304
    last_modified: str | None = None  # idem
    not_modified: bool = False  # the server answered 304
    error: str | None = None  # why this is not a usable 200/304; None on success
    retry_after: timedelta | None = None  # from Retry-After (seconds or HTTP date) on 429/503
    permanent_redirect: str | None = None  # new URL when every hop of the chain was 301/308
    elapsed: float = 0.0  # seconds spent on the request

    @property
    def ok(self) -> bool:
        """True for a 200 with a body or a 304."""
        return self.error is None and (self.not_modified or self.body is not None)

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True, slots=True)
class Item:
    """One feed entry, normalised: plain text without markup, absolute links, UTC dates."""

    feed: str  # name of the feed it came from
    guid: str  # the entry's id; derived from link or content when the feed gives none
    url: str | None  # absolute link to the article
    title: str  # plain text
    summary: str  # plain text of the description / summary
    content: str = (
        ""  # plain text of the full content the feed carries (content:encoded, atom:content)
    )
    author: str = ""
    published: datetime | None = None  # UTC; None when the feed gives no usable date
    updated: datetime | None = None  # UTC
    text: str = ""  # main text of the article page, when the feed asks for full text
    text_problem: str | None = None  # why that text is missing or partial ("HTTP 404", ...)
    # The article page's own metadata, as extracted with `text` (kept apart from the feed's
    # title, author and date, which stand): "" / None when the page gave none or was not fetched.
    page_title: str = ""  # the page's headline
    page_author: str = ""  # the page's byline; several authors joined by "; "
    page_published: datetime | None = None  # UTC; the page's publication date


@dataclass(frozen=True, slots=True)
class Rule:
    """A watch rule as configured; `rules/` compiles `query`."""

    name: str
    query: str
    channels: tuple[str, ...] = ()  # channel names; empty: every channel
    feeds: tuple[str, ...] = ()  # feed names or `tag:x`; empty: every feed
    enabled: bool = True
    priority: str = "normal"  # "low" | "normal" | "high"
    origin: str | None = None  # "file:line" of the rule in the config, for error messages
    realert_on_update: bool = False  # a material update of an alerted item alerts again


@dataclass(frozen=True, slots=True)
class Match:
    """Why a rule matched an item: the passage with the matched words marked."""

    rule: str
    snippet: str  # a passage of the item's text around the first hit, plain text
    highlights: tuple[tuple[int, int], ...] = ()  # [start, end) character spans in `snippet`
    fields: tuple[str, ...] = ()  # the item fields that held a hit: "title", "summary", ...
    # every passage that satisfied the query: (field, start, end), [start, end) character
    # offsets in that field of the item, sorted, overlaps merged; `source:` hits have none.
    # Not stored: the snippet and its highlights are what alerts show.
    spans: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DedupePolicy:
    """How copies of a story are recognised (config `dedupe:`); defaults from docs/benchmarks.md."""

    window: timedelta = timedelta(days=7)  # how far back near-duplicates are looked for
    threshold: float = 0.3  # estimated Jaccard of 3-word shingles at which texts are one report
    min_words: int = 40  # below this (title + body), only exact keys join stories


@dataclass(frozen=True, slots=True)
class Channel:
    """An alert destination (config `channels:`)."""

    name: str
    urls: tuple[str, ...]  # apprise URLs or `console://`; may hold secrets: never log unmasked
    format: str = "auto"  # "text" | "markdown" | "html"; "auto": what the service renders
    template: str | None = None  # path of a Jinja2 template for the body (absolute)
    timezone: str = "UTC"  # IANA zone for times in alerts, digests and quiet hours
    digest: str | None = None  # 5-field cron line: collect alerts, send one message then
    max_per_hour: int | None = None  # beyond it, alerts are held for one digest
    quiet_hours: tuple[time, time] | None = None  # [start, end) local: non-urgent alerts held


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to queue: at most one per (rule, story, channel), ever."""

    rule: str
    channel: str
    story: str  # the story the item belongs to
    feed: str  # the item that triggered it: (feed, guid)
    guid: str
    priority: str = "normal"
    revision: str = ""  # set on a follow-up for a material update: one per text version

    @property
    def key(self) -> str:
        """The idempotency key; the store keeps it unique."""
        base = f"{self.rule}\x1f{self.story}\x1f{self.channel}"
        return f"{base}\x1f{self.revision}" if self.revision else base


@dataclass(frozen=True, slots=True)
class Copy:
    """Another outlet's copy of a story, for "also reported by"."""

    feed: str
    url: str | None
    published: datetime | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox row claimed for sending, with everything the alert text needs."""

    id: int
    alert_id: int
    channel: str
    rule: str
    priority: str
    item: Item
    match: Match | None
    story: str
    attempts: int  # attempts made before this one
    created: datetime
    also: tuple[Copy, ...] = ()  # other outlets that carried the story
    revision: str = ""  # Alert.revision: set on a follow-up for a material update of the item


# --- what pipeline.decide() returns and the store applies -------------------------------

_NO_STORIES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NearCandidate:
    """A stored item that shares a MinHash band with a new one: maybe the same report."""

    story: str
    signature: bytes  # its MinHash signature, to confirm the similarity before joining
    bands: tuple[int, ...] = ()  # the band keys it shares with the batch (all when empty)


@dataclass(frozen=True, slots=True)
class Seen:
    """What is stored of an item this feed already had, to notice a material update."""

    content_hash: str
    signature: bytes | None
    story: str


@dataclass(frozen=True, slots=True)
class ArticleText:
    """The article text stored with an item of a `full_text` feed, or why it is missing."""

    text: str  # the page's main text; "" when never fetched or when the fetch failed
    problem: str | None  # why the text is missing or partial (Item.text_problem)
    title: str = ""  # the page's own title, author and date (Item.page_*)
    author: str = ""
    published: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredArticles:
    """Article texts already stored for a batch of parsed items (read before pages are fetched)."""

    # guid -> what this feed stored with it: a known item is never fetched again, and its text
    # must come back with it, or the re-poll would look like a rewrite of the item
    by_guid: Mapping[str, ArticleText]
    # canonical URL -> an extracted text stored by any feed: the same page under a new GUID
    # (a feed that rotates GUIDs, an outlet's second feed) is not fetched again
    by_url: Mapping[str, ArticleText]


@dataclass(frozen=True, slots=True)
class KnownState:
    """What the store already holds that bears on a batch of parsed items (read before decide)."""

    # canonical URL -> story of the earliest item with it, any feed
    story_by_url: Mapping[str, str] = field(default_factory=lambda: _NO_STORIES)
    # content hash -> story of the earliest item with it, any feed
    story_by_hash: Mapping[str, str] = field(default_factory=lambda: _NO_STORIES)
    # content hash -> story, this feed only: a re-post under a new GUID, however short
    own_story_by_hash: Mapping[str, str] = field(default_factory=lambda: _NO_STORIES)
    near: tuple[NearCandidate, ...] = ()  # items in the dedupe window sharing a band
    # guid -> what is stored of it, for the items of this feed already stored
    seen: Mapping[str, Seen] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def seen_guids(self) -> frozenset[str]:
        """The guids of this feed already stored."""
        return frozenset(self.seen)


@dataclass(frozen=True, slots=True)
class KnownStories:
    """The stories stored items offer the new items of several feeds, read once for a batch
    of polls ingested together (`KnownState` answers for one feed)."""

    # canonical URL -> story of the earliest item with it, any feed
    story_by_url: Mapping[str, str] = field(default_factory=lambda: _NO_STORIES)
    # content hash -> story of the earliest item with it, any feed
    story_by_hash: Mapping[str, str] = field(default_factory=lambda: _NO_STORIES)
    # (feed, content hash) -> story of that feed's earliest item with it
    own_story_by_hash: Mapping[tuple[str, str], str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    near: tuple[NearCandidate, ...] = ()  # items in the dedupe window sharing a band


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A new item as it will be stored."""

    item: Item
    canonical_url: str | None  # the link without tracking parameters, fragment, default port …
    content_hash: str  # hash of the normalised title and text: recognises re-posts under new ids
    story: str  # the story it joins (an existing one, or its own new one)
    baseline: bool  # stored but never alerted: first poll, too old or undated
    joined_by: str | None  # how it joined an earlier story: "url" | "hash" | "near"; None: new
    signature: bytes | None = None  # MinHash signature; None below the near-dup minimum length
    bands: tuple[int, ...] = ()  # its LSH band keys, indexed for the dedupe window

    @property
    def joined(self) -> bool:
        """True when the item is a copy of a story seen before (in the store or this batch)."""
        return self.joined_by is not None


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """A stored item whose GUID stayed but whose text changed materially: stored anew."""

    item: Item
    content_hash: str
    signature: bytes | None
    bands: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ItemMatch:
    """A rule that matched a new item, referenced by (feed, guid)."""

    feed: str
    guid: str
    match: Match


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """How a poll changes a feed's state."""

    name: str
    polled_at: datetime
    next_poll: datetime
    success: bool  # a usable 200 or 304
    url: str | None = None  # new URL after a permanent redirect; None: unchanged
    etag: str | None = None  # the validators to send next time (None: send none)
    last_modified: str | None = None
    error: str | None = None  # the reason when not success
    disabled_reason: str | None = None  # set on 410 Gone
    status: int | None = None  # HTTP status, for the log and metrics


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything one poll of one feed leads to; applied by the store in one transaction."""

    feed: str
    items: tuple[ItemRecord, ...] = ()
    matches: tuple[ItemMatch, ...] = ()
    alerts: tuple[Alert, ...] = ()
    seen: int = 0  # parsed items that were already stored (not re-stored)
    updates: tuple[ItemUpdate, ...] = ()  # stored items whose text changed materially
    # GUIDs of stored items the document still lists, unchanged: their `last_seen` is
    # refreshed, so retention never prunes an item its feed still carries (which would come
    # back as new on the next poll and alert again)
    still_listed: tuple[str, ...] = ()
