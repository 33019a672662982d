"""Prometheus metrics: what the daemon counts, and their text exposition for /metrics.

`Metrics` owns one `CollectorRegistry` of its own (never prometheus_client's global one), so
two daemons in one test process, or a reload, never see each other's series. The daemon calls
its small typed methods where things happen; `render()` gives the exposition text.

Contract:

- Every method is cheap (a dict look-up and an add under a lock) and safe to call from any
  thread or task; none raises for a value the daemon can produce.
- Label values come from the configuration (feed states, rule and channel names) or from a
  closed set (outcomes, dedupe kinds, status codes clamped to 100-599), so the number of
  series stays bounded whatever a hostile server answers.
- Durations are seconds (float); counts are non-negative integers.

Imports only prometheus_client and `monitor.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from monitor.model import FeedUpdate, FetchResult

FeedStateName = Literal["ok", "failing", "silent", "disabled"]
PollOutcomeName = Literal["ok", "not_modified", "error", "gone"]
DedupeKind = Literal["new_story", "joined_url", "joined_hash", "joined_near", "update"]
AlertState = Literal["queued", "sent", "retried", "dead"]

FEED_STATES: Final = get_args(FeedStateName)
POLL_OUTCOMES: Final = get_args(PollOutcomeName)
DEDUPE_KINDS: Final = get_args(DedupeKind)
ALERT_STATES: Final = get_args(AlertState)

# Feed requests take from tens of milliseconds to the whole deadline (http.timeout, 30 s by
# default); buckets spread over that range, with one past it for slow redirect chains.
HTTP_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Matching one batch against 1,000 rules takes ~0.4 ms an item (docs/benchmarks.md), so a
# batch of one to a few hundred items falls between a millisecond and a second.
RULE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

NAMESPACE: Final = "newsmon"
# What `generate_latest` writes: the classic text format. Spelled out because newer clients
# label their default 1.0.0 and older ones (0.20) lack a constant for it.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def status_code(status: int | None) -> str:
    """The `code` label of an HTTP status: "200", ..., "none" without a response, "other"
    outside 100-599 (a server can send any three digits; the series must stay bounded)."""
    if status is None:
        return "none"
    return str(status) if 100 <= status <= 599 else "other"


def status_class(status: int | None) -> str:
    """The `class` label: "2xx" ... "5xx", "none" or "other" as for `status_code`."""
    code = status_code(status)
    return f"{code[0]}xx" if code.isdigit() else code


def poll_outcome(result: FetchResult, update: FeedUpdate | None = None) -> PollOutcomeName:
    """How one poll ended, for `Metrics.poll`: gone (410), not_modified (304), ok (a usable 200
    that `update` did not turn into a failure, e.g. a body holding no feed), or error."""
    if result.gone or (update is not None and update.disabled_reason):
        return "gone"
    if update is not None and not update.success:
        return "error"
    if result.not_modified:
        return "not_modified"
    return "ok" if result.ok else "error"


class Metrics:
    """The daemon's metrics in a registry of their own. See the module docstring."""

    content_type: Final = CONTENT_TYPE

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self._feeds = Gauge(
            "feeds", "Configured feeds by health state.", ["state"], namespace=ns, registry=r
        )
        self._polls = Counter(
            "polls", "Feed polls by outcome.", ["outcome"], namespace=ns, registry=r
        )
        self._http = Counter(
            "http_responses",
            "Final HTTP status of feed requests ('none': no response).",
            ["code", "class"],
            namespace=ns,
            registry=r,
        )
        self._latency = Histogram(
            "http_request_duration_seconds",
            "Time spent on one feed request, redirects included.",
            namespace=ns,
            registry=r,
            buckets=HTTP_BUCKETS,
        )
        self._items = Counter("items_stored", "New items stored.", namespace=ns, registry=r)
        self._matches = Counter(
            "matches", "Rule matches on new items.", ["rule"], namespace=ns, registry=r
        )
        self._alerts = Counter(
            "alerts",
            "Alert deliveries by channel and what became of them.",
            ["channel", "state"],
            namespace=ns,
            registry=r,
        )
        self._outbox = Gauge(
            "outbox_depth", "Deliveries waiting in the outbox.", namespace=ns, registry=r
        )
        self._dedupe = Counter(
            "dedupe_decisions",
            "What became of each new or changed item: a new story, a copy joining one (by "
            "URL, exact text or near-duplicate text), or a material update.",
            ["decision"],
            namespace=ns,
            registry=r,
        )
        self._rules = Histogram(
            "rule_evaluation_seconds",
            "Time spent matching one poll's items against every rule.",
            namespace=ns,
            registry=r,
            buckets=RULE_BUCKETS,
        )
        # Series that exist from the start read 0 rather than "no data", so a rate() or an
        # alert on them works before the first event.
        for state in FEED_STATES:
            self._feeds.labels(state)
        for outcome in POLL_OUTCOMES:
            self._polls.labels(outcome)
        for kind in DEDUPE_KINDS:
            self._dedupe.labels(kind)

    # --- events -------------------------------------------------------------------------

    def poll(self, outcome: PollOutcomeName, status: int | None, seconds: float) -> None:
        """One poll ended: its outcome (see `poll_outcome`), final HTTP status (None: no
        response) and the request's duration (FetchResult.elapsed)."""
        self._polls.labels(outcome).inc()
        self._http.labels(status_code(status), status_class(status)).inc()
        self._latency.observe(max(0.0, seconds))

    def items_stored(self, count: int) -> None:
        """`count` new items were committed."""
        if count > 0:
            self._items.inc(count)

    def match(self, rule: str, count: int = 1) -> None:
        """`rule` matched `count` new items."""
        if count > 0:
            self._matches.labels(rule).inc(count)

    def decision(self, kind: DedupeKind, count: int = 1) -> None:
        """`count` items were decided `kind` by dedupe."""
        if count > 0:
            self._dedupe.labels(kind).inc(count)

    def rule_time(self, seconds: float) -> None:
        """Matching one poll's items took `seconds`."""
        self._rules.observe(max(0.0, seconds))

    def alert(self, channel: str, state: AlertState, count: int = 1) -> None:
        """`count` alerts of `channel` were queued, sent, scheduled again, or given up on."""
        if count > 0:
            self._alerts.labels(channel, state).inc(count)

    # --- levels, set by a periodic job ----------------------------------------------------

    def feed_states(self, counts: Mapping[FeedStateName, int]) -> None:
        """Set the number of feeds in each health state; a state absent from `counts` is 0."""
        for state in FEED_STATES:
            self._feeds.labels(state).set(counts.get(state, 0))

    def outbox_depth(self, depth: int) -> None:
        self._outbox.set(depth)

    # --- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric; `content_type` is its
        Content-Type header."""
        return generate_latest(self.registry)
