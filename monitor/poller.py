"""The poll of one feed: the pipeline of DESIGN.md after the daemon has claimed the feed.

    fetch | parse (worker process) | article text (`full_text` feeds) | stored hashes (store)
          | prepare: fingerprints + rule matches (worker process)
          | ingest, batched with the polls ready beside it (monitor.ingest):
            known (store) | decide + plan_update | apply (store)
          | metrics, log

`Poller.poll()` never raises: a feed's failure (a fetch error, a document that is no feed, a
parse stopped by the workers' limits) is stored as the feed's next state, and a bug is logged
and stored as an internal error, so one feed cannot stop the daemon or its other feeds. It
reads the daemon's injected clock once, when the poll starts, and hands that `now` on.

The daemon owns the long-lived parts and hands them in; on reload it swaps in a new
`PollConfig` and, when the `http:` settings changed, a new fetcher. A poll reads both where it
uses them, so a poll in flight during a reload goes on with what is current at each step.
Safe to run concurrently for different feeds: the ingest is exclusive in the store, and
polls that reach it together share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.articles import with_article_text
from monitor.dedupe import canonical_url
from monitor.fetch import Fetcher
from monitor.ingest import Ingests, ParsedPoll
from monitor.metrics import DedupeKind, Metrics, poll_outcome
from monitor.model import (
    Decision,
    DedupePolicy,
    Feed,
    FeedState,
    FeedUpdate,
    FetchResult,
    Item,
)
from monitor.parse import ParsedFeed, parse_feed
from monitor.pipeline import Prematched, is_baseline, plan_update
from monitor.prepare import MatchJob, Prepared, parse_and_prepare, prepare, rules_blob
from monitor.prepare import load as load_rules
from monitor.rules import RuleSet
from monitor.store import Store
from monitor.workers import WorkerError, WorkerPool

log = logging.getLogger("newsmon")

# Metric labels for how a copy joined its story.
_JOINED: dict[str | None, DedupeKind] = {
    "url": "joined_url",
    "hash": "joined_hash",
    "near": "joined_near",
}


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one feed did, for the log and `poll --once`."""

    feed: str
    status: int | None
    new_items: int = 0
    alerts: int = 0
    not_modified: bool = False
    error: str | None = None
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class PollConfig:
    """What a poll reads from the configuration; replaced whole on reload."""

    feeds: Mapping[str, Feed]  # by name; a claimed feed missing here was removed meanwhile
    rules: RuleSet
    channels: tuple[str, ...]  # the names of the channels alerts are queued for
    dedupe: DedupePolicy
    backlog_window: timedelta  # `polling.backlog_window`: what a first poll may alert


class Poller:
    """Polls one feed at a time, as many at once as the daemon starts."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        workers: WorkerPool,
        config: PollConfig,
        *,
        metrics: Metrics,
        clock: Callable[[], datetime],
        on_alerts: Callable[[], None],
    ) -> None:
        """`on_alerts`: called after a poll queued alerts (the daemon drains the outbox)."""
        self.store = store
        self.fetcher = fetcher  # replaced by the daemon when the `http:` settings change
        self.config = config  # replaced by the daemon on reload
        self._workers = workers
        self._metrics = metrics
        self._clock = clock
        self._on_alerts = on_alerts
        self._ingests = Ingests(store)
        self._rules_blob = ("", b"")  # (RuleSet.key, prepare.rules_blob()) of the last poll

    async def load_rules(self) -> None:
        """Compile the current rules in each worker now (`newsmon run`, at start and after a
        reload), so that the first changed feed does not wait for it; a worker missed (busy,
        replaced later) compiles them at its first poll instead."""
        rules = self.config.rules
        blob = self._blob(rules)
        loads = [
            self._workers.run(load_rules, rules.key, blob) for _ in range(self._workers.workers)
        ]
        for outcome in await asyncio.gather(*loads, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.debug("rules not compiled ahead in a worker: %r", outcome)

    def _blob(self, rules: RuleSet) -> bytes:
        """`prepare.rules_blob(rules)`, made once per rule set."""
        if self._rules_blob[0] != rules.key:
            self._rules_blob = (rules.key, rules_blob(rules))
        return self._rules_blob[1]

    async def poll(self, state: FeedState) -> PollOutcome:
        """Fetch, parse, decide and store one feed. Never raises: a failure is logged and stored."""
        feed = self.config.feeds.get(state.name)
        if feed is None:  # removed from the config since it was claimed
            return PollOutcome(state.name, None, error="no longer configured")
        started = self._clock()
        try:
            outcome = await self._poll(feed, state, started)
        except Exception as exc:  # a bug, not a feed problem: keep the daemon and the feed going
            log.exception("poll failed feed=%s", feed.name)
            self._metrics.poll("error", None, 0.0)
            failed = FetchResult(state.url, state.url, None, None, error=f"internal error: {exc!r}")
            update = plan_update(feed, state, failed, now=started)
            with contextlib.suppress(Exception):
                await self.store.apply(Decision(feed.name), update)
            outcome = PollOutcome(feed.name, None, error=update.error)
        return outcome

    async def _poll(self, feed: Feed, state: FeedState, now: datetime) -> PollOutcome:
        result = await self.fetcher.fetch(
            state.url, etag=state.etag, last_modified=state.last_modified
        )
        if result.not_modified or not result.ok or result.body is None:
            update = plan_update(feed, state, result, now=now)
            await self.store.record_poll(update)  # committed with the polls finishing beside it
            self._metrics.poll(poll_outcome(result, update), result.status, result.elapsed)
            self._log_poll(feed, result, update, new=0, alerts=0)
            return PollOutcome(
                feed.name,
                result.status,
                not_modified=result.not_modified,
                error=update.error,
                elapsed=result.elapsed,
            )

        stages: dict[str, float] = {}  # seconds each stage took, for the debug line below
        started = time.perf_counter()
        config = self.config
        job = self._job(feed, state, now, config)
        # What the feed's latest listing stored, read outside the ingest (only this feed's own
        # poll writes its items): items listed again with the same text cost no signature and
        # no match in the worker. A hint; the ingest checks it (`ParsedPoll.checked`).
        stored = await self.store.listed_hashes(feed.name) if state.polls else {}
        if feed.full_text:  # the article pages are fetched between parse and prepare
            parsed = await self._parse(feed, result)
            stages["parse"] = time.perf_counter() - started
            items = parsed.items
            if items:
                items = await self._add_article_text(feed, state, items, now)
            stages["text"] = time.perf_counter() - started - stages["parse"]
            prepared = await self._workers.run(prepare, items, config.dedupe, stored, job)
            stages["prepare"] = time.perf_counter() - started - sum(stages.values())
        else:
            parsed, prepared = await self._parse_and_prepare(feed, result, config, stored, job)
            items = parsed.items
            stages["parse+prepare"] = time.perf_counter() - started
        # A 200 whose body holds no feed (an HTML challenge page, an empty document) is a failure;
        # a malformed feed that still yields items is used, and its problem logged.
        problem = parsed.problem if not parsed.items else None
        if parsed.problem and parsed.items:
            log.warning("feed malformed but usable feed=%s problem=%s", feed.name, parsed.problem)
        if parsed.truncated:
            log.warning("feed truncated feed=%s dropped=%d", feed.name, parsed.truncated)
        ready = ParsedPoll(
            feed,
            state,
            result,
            items,
            prepared.prints,
            now,
            problem,
            rules=Prematched(config.rules, prepared.matches),
            channels=config.channels,
            dedupe=config.dedupe,
            backlog_window=config.backlog_window,
            stored=stored,
        )
        ingesting = time.perf_counter()
        done = await self._ingests.submit(ready)
        stages["ingest"] = time.perf_counter() - ingesting
        log.debug(
            "poll stages feed=%s %s",
            feed.name,
            " ".join(f"{stage}={seconds * 1000:.1f}ms" for stage, seconds in stages.items()),
        )
        decision, update, applied = done.decision, done.update, done.applied
        self._count(result, update, decision, applied.items, applied.channels)
        self._metrics.rule_time(prepared.match_seconds + done.decided)
        self._log_poll(feed, result, update, new=applied.items, alerts=applied.alerts)
        for found in decision.matches:
            log.info(
                "rule matched feed=%s item=%s rule=%s", found.feed, found.guid, found.match.rule
            )
        if applied.alerts:
            self._on_alerts()
        return PollOutcome(
            feed.name,
            result.status,
            new_items=applied.items,
            alerts=applied.alerts,
            error=update.error,
            elapsed=result.elapsed,
        )

    def _count(
        self,
        result: FetchResult,
        update: FeedUpdate,
        decision: Decision,
        stored: int,
        channels: Sequence[str],
    ) -> None:
        """One parsed poll in the metrics."""
        m = self._metrics
        m.poll(poll_outcome(result, update), result.status, result.elapsed)
        m.items_stored(stored)
        for match in decision.matches:
            m.match(match.match.rule)
        for record in decision.items:
            m.decision(_JOINED.get(record.joined_by, "new_story"))
        if decision.updates:
            m.decision("update", len(decision.updates))
        for channel in channels:
            m.alert(channel, "queued")

    async def _parse_and_prepare(
        self,
        feed: Feed,
        result: FetchResult,
        config: PollConfig,
        stored: Mapping[str, str],
        job: MatchJob,
    ) -> tuple[ParsedFeed, Prepared]:
        """Parse, fingerprints and rule matches in one worker task (`prepare.parse_and_prepare`);
        a task stopped by the workers' limits is the feed's problem, not ours."""
        assert result.body is not None
        try:
            return await self._workers.run(
                parse_and_prepare,
                result.body,
                feed.name,
                result.final_url,
                dict(result.headers),
                config.dedupe,
                stored,
                job,
            )
        except WorkerError as exc:
            return _unparsed(exc), Prepared((), {}, 0.0)

    def _job(self, feed: Feed, state: FeedState, now: datetime, config: PollConfig) -> MatchJob:
        rules = config.rules
        first = state.polls == 0
        return MatchJob(
            rules.key,
            self._blob(rules),
            tuple(feed.tags),
            first,
            now,
            config.backlog_window,
        )

    async def _add_article_text(
        self, feed: Feed, state: FeedState, items: tuple[Item, ...], now: datetime
    ) -> tuple[Item, ...]:
        """Each new, alertable item with the main text of its article page (`full_text` feeds).

        Items already stored come back with the text stored with them (extracted when they
        were new: a re-poll never fetches a page again, and the item's fingerprint stays
        that of its article, not of the feed's summary); a new GUID whose page another item
        already brought reuses that text; baseline items are not worth a request. Pages are
        fetched concurrently through the same fetcher, so the per-host limit is the only
        wait, and a page that fails leaves its item with the feed's text, marked.
        """
        urls = {i.guid: canonical_url(i.url) for i in items}
        stored = await self.store.articles(
            feed.name, urls.keys(), {u for u in urls.values() if u is not None}
        )
        window = self.config.backlog_window
        first = state.polls == 0
        done: dict[str, Item] = {}
        wanted = []
        for item in items:
            url = urls[item.guid]
            kept = stored.by_guid.get(item.guid) or (stored.by_url.get(url) if url else None)
            if kept is not None:
                done[item.guid] = replace(
                    item,
                    text=kept.text,
                    text_problem=kept.problem,
                    page_title=kept.title,
                    page_author=kept.author,
                    page_published=kept.published,
                )
            elif not is_baseline(item, first, now, window):
                wanted.append(item)
        fetched = await asyncio.gather(
            *(with_article_text(self.fetcher, i, self._workers) for i in wanted)
        )
        done.update((i.guid, i) for i in fetched)
        return tuple(done.get(i.guid, i) for i in items)

    async def _parse(self, feed: Feed, result: FetchResult) -> ParsedFeed:
        """The feed's items; a parse stopped by its limits is the feed's problem, not ours."""
        assert result.body is not None
        try:
            return await self._workers.run(
                parse_feed,
                result.body,
                feed=feed.name,
                url=result.final_url,
                headers=dict(result.headers),
            )
        except WorkerError as exc:
            return _unparsed(exc)

    def _log_poll(
        self, feed: Feed, result: FetchResult, update: FeedUpdate, *, new: int, alerts: int
    ) -> None:
        if update.disabled_reason:
            log.error("feed disabled feed=%s reason=%s", feed.name, update.disabled_reason)
        elif update.error:
            log.warning(
                "poll failed feed=%s status=%s error=%s next=%s",
                feed.name,
                result.status,
                update.error,
                update.next_poll.isoformat(timespec="seconds"),
            )
        else:
            log.info(
                "polled feed=%s status=%s new=%d alerts=%d elapsed=%.2fs",
                feed.name,
                "304" if result.not_modified else result.status,
                new,
                alerts,
                result.elapsed,
            )
        if update.url:
            log.warning("feed moved permanently feed=%s url=%s", feed.name, update.url)


def _unparsed(stopped: WorkerError) -> ParsedFeed:
    """A document whose parse the workers' limits stopped: no items, the reason its problem."""
    return ParsedFeed(title="", link=None, items=(), version="", problem=str(stopped))
