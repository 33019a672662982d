"""The ingest of parsed polls: known -> decide -> apply for every poll ready at the same moment.

    parse + fingerprints (workers) | Ingests.submit | [ known | decide each | apply ] (store)

A poll whose items are parsed and fingerprinted submits them. One task per process takes every
poll waiting, up to `BATCH_ITEMS` items and each feed once, into one exclusive ingest
(`Store.ingest()`):

* one read of what the store holds for all of them: the GUIDs each feed stored already, then
  the URLs, content hashes and MinHash bands of the new items, whatever their feed;
* `decide` for each poll in turn, against one `StoryIndex`: a copy in a feed decided later in
  the batch joins the story of the first exactly as if that one were already stored, so the
  batch decides what the same polls one after the other would;
* one set of statements storing them all (items, bands, matches, alerts, deliveries and feed
  states), committed together.

Whatever is submitted while a batch runs forms the next one. There is no timer: a poll that
finds the ingest idle starts at once, so a lone changed feed is not held back, and a cold start
with hundreds of feeds parsed together is stored in a few dozen transactions instead of one per
feed. A batch that fails is retried poll by poll, so one bad poll fails alone and its error
reaches its own caller; a caller cancelled after submitting still has its poll stored.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitor.model import (
    Decision,
    DedupePolicy,
    Feed,
    FeedState,
    FeedUpdate,
    FetchResult,
    Item,
    KnownState,
    Seen,
)
from monitor.pipeline import (
    Fingerprint,
    Matcher,
    StoryIndex,
    decide,
    fingerprints,
    lookup_keys,
    plan_update,
)
from monitor.store import Store
from monitor.store.rows import Applied

log = logging.getLogger("newsmon")

# A batch holds at most this many parsed items (a poll larger than that goes alone): the
# ingest transaction, which other writers wait for, stays well under a second on two cores,
# and a feed that changes while a cold start's backlog is stored waits for one batch, not for
# the backlog.
BATCH_ITEMS = 1_000


@dataclass(frozen=True, slots=True)
class ParsedPoll:
    """One poll parsed and fingerprinted, with what it decides by (the config it read)."""

    feed: Feed
    state: FeedState
    result: FetchResult
    items: tuple[Item, ...]
    prints: tuple[Fingerprint, ...]  # `fingerprints(items, dedupe)`
    now: datetime  # the poll's start
    problem: str | None  # a 200 whose body held no usable feed
    rules: Matcher
    channels: tuple[str, ...]
    dedupe: DedupePolicy
    backlog_window: timedelta
    # The stored content hashes `prints` were made with (`fingerprints(stored=...)`): an item
    # listed with its stored hash was left unsigned and unmatched.
    stored: Mapping[str, str] = field(default_factory=dict)

    def checked(self, seen: Mapping[str, Seen]) -> ParsedPoll:
        """This poll, signed again here if the store changed since `stored` was read.

        An item left unsigned as unchanged that the ingest finds new, or stored with another
        text (a second poll of the feed after its lease ran out, a retention run in between),
        would otherwise be stored without a signature, or taken for a rewrite. Rare, so done
        here, on the loop; its matches are then made by `decide` (`Prematched` matches what it
        was not given).
        """
        for item, fp in zip(self.items, self.prints, strict=True):
            if self.stored.get(item.guid) != fp.content_hash:
                continue  # signed and matched in the worker
            now_stored = seen.get(item.guid)
            if now_stored is None or now_stored.content_hash != fp.content_hash:
                return replace(self, prints=fingerprints(self.items, self.dedupe), stored={})
        return self

    def decide(self, seen: Mapping[str, Seen], stories: StoryIndex) -> Decision:
        return decide(
            self.feed,
            self.state,
            self.items,
            KnownState(seen=seen),
            self.rules,
            self.channels,
            now=self.now,
            backlog_window=self.backlog_window,
            dedupe_policy=self.dedupe,
            prints=self.prints,
            stories=stories,
        )


@dataclass(frozen=True, slots=True)
class Ingested:
    """What the ingest made of one poll."""

    decision: Decision
    update: FeedUpdate  # the feed's next state, as stored
    applied: Applied  # what the store inserted (a replica may have stored some first)
    decided: float  # seconds `decide` took (dedupe; rules only for items the worker left)


# A submitted poll and the future its caller awaits.
_Waiting = tuple[ParsedPoll, asyncio.Future[Ingested]]


class Ingests:
    """Batches the ingest of parsed polls; see the module docstring. One per process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, poll: ParsedPoll) -> Ingested:
        """Store `poll` with whatever else is ready; returns once it is committed.

        Raises what storing it raised (``LookupError`` for a feed never synced, a database
        error); then nothing of it is stored, and the other polls of its batch are.
        """
        done: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._queue.append((poll, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ingest")
        return await asyncio.shield(done)

    def _take(self) -> list[_Waiting]:
        """The next batch, in the order submitted; a feed's second poll waits for the next."""
        batch: list[_Waiting] = []
        rest: list[_Waiting] = []
        feeds: set[str] = set()
        size = 0
        for entry in self._queue:
            poll = entry[0]
            full = bool(batch) and size + len(poll.items) > BATCH_ITEMS
            if full or poll.feed.name in feeds:
                rest.append(entry)
                continue
            batch.append(entry)
            feeds.add(poll.feed.name)
            size += len(poll.items)
        self._queue = rest
        return batch

    async def _run(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                try:
                    done = await self._ingest([poll for poll, _ in batch])
                except Exception as exc:
                    if len(batch) == 1:
                        batch[0][1].set_exception(exc)
                    else:
                        log.warning(
                            "ingest of %d polls failed, storing them one by one: %r",
                            len(batch),
                            exc,
                        )
                        await self._one_by_one(batch)
                    continue
            except BaseException:  # cancelled (the loop is closing): no caller waits forever
                for _, future in [*batch, *self._queue]:
                    future.cancel()
                self._queue.clear()
                raise
            for (_, future), ingested in zip(batch, done, strict=True):
                future.set_result(ingested)

    async def _one_by_one(self, batch: Sequence[_Waiting]) -> None:
        for poll, future in batch:
            try:
                (ingested,) = await self._ingest([poll])
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(ingested)

    async def _ingest(self, batch: Sequence[ParsedPoll]) -> list[Ingested]:
        started = time.perf_counter()
        clock = [started]  # the steps' ends, for the debug line below
        # known -> decide -> apply as one exclusive ingest: a copy of a story polled at the
        # same moment by another replica waits, then joins our story.
        async with self._store.ingest() as tx:
            clock.append(time.perf_counter())
            # What each feed stored already, first: only new items are looked up by URL, hash
            # and band. A feed that changed lists mostly known items, and the band lookup
            # (~20 candidates a new item in bench/speed.py) is most of the read.
            seen = await tx.seen({p.feed.name: {i.guid for i in p.items} for p in batch})
            batch = [p.checked(seen[p.feed.name]) for p in batch]
            urls, hashes, bands = _new_keys(batch, seen)
            since = min(p.now - p.dedupe.window for p in batch)
            stories = StoryIndex(await tx.stories(urls, hashes, bands=bands, since=since))
            clock.append(time.perf_counter())
            decided: list[tuple[Decision, FeedUpdate, float]] = []
            for p in batch:
                deciding = time.perf_counter()
                decision = p.decide(seen[p.feed.name], stories)
                elapsed = time.perf_counter() - deciding
                update = plan_update(p.feed, p.state, p.result, now=p.now, problem=p.problem)
                decided.append((decision, update, elapsed))
            clock.append(time.perf_counter())
            applied = await tx.apply_many([(d, u) for d, u, _ in decided])
        clock.append(time.perf_counter())
        log.debug(
            "ingested polls=%d items=%d elapsed=%.3fs "
            "lock=%.1fms lookup=%.1fms decide=%.1fms store=%.1fms",
            len(batch),
            sum(len(p.items) for p in batch),
            clock[-1] - started,
            *((end - start) * 1000 for start, end in itertools.pairwise(clock)),
        )
        return [Ingested(d, u, a, t) for (d, u, t), a in zip(decided, applied, strict=True)]


def _new_keys(
    batch: Sequence[ParsedPoll], seen: Mapping[str, Collection[str]]
) -> tuple[set[str], set[str], set[int]]:
    """The URLs, hashes and band keys of the batch's items their feeds have not stored."""
    urls: set[str] = set()
    hashes: set[str] = set()
    bands: set[int] = set()
    for p in batch:
        keys = lookup_keys(p.items, p.prints, stored=seen[p.feed.name])
        urls |= keys.urls
        hashes |= keys.hashes
        bands |= keys.bands
    return urls, hashes, bands
