"""The repository: every read and write the rest of newsmon makes, as values in and out.

Contract for every method of :class:`Store`:

* Datetimes are tz-aware UTC in and out; a naive datetime raises ``ValueError``.
* Time is the caller's: every method that records a moment takes ``now`` (or uses
  ``update.polled_at``); the store never reads the clock.
* Safe to call concurrently from many tasks of one event loop, and from many processes on
  PostgreSQL. On SQLite every write transaction goes through one writer (an ``asyncio.Lock``
  and ``BEGIN IMMEDIATE``), so concurrent tasks queue instead of failing with "database is
  locked"; several *processes* writing one SQLite file wait on its busy timeout.
* A method that writes does so in one transaction: it all happens or none of it does.
* Other database errors (``sqlalchemy.exc.SQLAlchemyError``) escape as they are.

The SQL lives in one module per concern (``feeds``, ``corpus``, ``outbox``, ``reports``);
this class owns connections, transactions and the SQLite writer lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from monitor import model
from monitor.store import corpus, dialect, migrations, outbox, reports
from monitor.store import feeds as _feeds
from monitor.store.rows import AlertRow, Applied, StoryRow
from monitor.store.tables import DEAD, SENT, deliveries


async def _apply(
    conn: AsyncConnection,
    backend: str,
    polls: Sequence[tuple[model.Decision, model.FeedUpdate]],
) -> list[Applied]:
    for decision, update in polls:
        if decision.feed != update.name:
            raise ValueError(f"decision for {decision.feed!r}, update for {update.name!r}")
    applied = await corpus.store(conn, backend, [(d, u.polled_at) for d, u in polls])
    updates = [u for _, u in polls]
    fed = {u.name for u, a in zip(updates, applied, strict=True) if a.items}
    refused = await _feeds.record_polls(conn, updates, fed)
    if refused:
        raise next(iter(refused.values()))
    return applied


class Ingest:
    """The handle of :meth:`Store.ingest`: `known` and `apply` inside its one transaction."""

    def __init__(self, conn: AsyncConnection, backend: str) -> None:
        self._conn = conn
        self._backend = backend

    async def known(
        self,
        feed: str,
        guids: Collection[str],
        urls: Collection[str],
        hashes: Collection[str],
        *,
        bands: Collection[int] = (),
        since: datetime | None = None,
    ) -> model.KnownState:
        """As :meth:`Store.known`, seeing everything committed before this ingest began."""
        return await corpus.known(
            self._conn, self._backend, feed, guids, urls, hashes, bands=bands, since=since
        )

    async def apply(self, decision: model.Decision, update: model.FeedUpdate) -> Applied:
        """As :meth:`Store.apply`; committed when the ``ingest()`` block ends without error."""
        return (await _apply(self._conn, self._backend, [(decision, update)]))[0]

    async def seen(self, guids: Mapping[str, Collection[str]]) -> dict[str, dict[str, model.Seen]]:
        """`KnownState.seen` of several feeds at once: by feed (every feed asked), then GUID."""
        return await corpus.seen(self._conn, guids)

    async def stories(
        self,
        urls: Collection[str],
        hashes: Collection[str],
        *,
        bands: Collection[int] = (),
        since: datetime | None = None,
    ) -> model.KnownStories:
        """The stories of :meth:`Store.known` for the new items of several feeds at once: own
        hashes by (feed, hash) for every feed that stored one."""
        return await corpus.stories(self._conn, self._backend, urls, hashes, bands, since)

    async def apply_many(
        self, polls: Sequence[tuple[model.Decision, model.FeedUpdate]]
    ) -> list[Applied]:
        """:meth:`apply` for the polls of several feeds, one feed at most once, in one set of
        statements; what each inserted, in order. One refused poll (a feed never synced, a
        reference to no item) raises and fails the whole ingest."""
        return await _apply(self._conn, self._backend, polls)


@asynccontextmanager
async def _bad_values_raise() -> AsyncIterator[None]:
    """Surface a value the tables refused (a naive datetime) as the ``ValueError`` it is.

    SQLAlchemy wraps errors raised while binding parameters in ``StatementError``; callers
    should not have to know that the datetime check lives in a type decorator.
    """
    try:
        yield
    except sa.exc.StatementError as exc:
        if isinstance(exc.orig, ValueError):
            raise exc.orig from exc
        raise


# At most this many writes in one group of a `_GroupCommit`: the write transaction stays a few
# milliseconds long, so an ingest waiting for the writer is not held up behind it.
_GROUP_MAX = 500

_T = TypeVar("_T")


class _GroupCommit(Generic[_T]):
    """Small writes that many tasks make at once, committed together (group commit).

    ``await submit(value)`` returns once `value` is committed. The first value starts a task
    that takes the writer; whatever queues while it waits (and while each group commits) goes
    in the next group, up to ``_GROUP_MAX``, so there is no timer and no added latency when
    the writer is free. ``apply(conn, values)`` writes one group and returns the values it
    refused, by position, with their error: those fail alone, the rest commit. Any other
    error fails its whole group (none of it stored) and reaches each of its callers. A
    caller cancelled after submitting still has its value written.
    """

    def __init__(
        self,
        write: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        apply: Callable[[AsyncConnection, list[_T]], Awaitable[Mapping[int, Exception]]],
        name: str,
    ) -> None:
        self._write = write
        self._apply = apply
        self._name = name
        self._queue: list[tuple[_T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, value: _T) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((value, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        await asyncio.shield(done)

    async def wait(self) -> None:
        """Until every value submitted so far is written or failed."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            group: list[tuple[_T, asyncio.Future[None]]] = []
            try:
                async with self._write() as conn:
                    group = self._queue[:_GROUP_MAX]
                    del self._queue[:_GROUP_MAX]
                    refused = await self._apply(conn, [value for value, _ in group])
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # cancelled (the loop is closing): no caller waits forever
                for _, done in [*group, *self._queue]:
                    done.cancel()
                self._queue.clear()
                raise
            for i, (_, done) in enumerate(group):
                if not done.done():
                    error = refused.get(i)
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)


def _failed(error: str, retry_at: datetime | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "attempts": deliveries.c.attempts + 1,
        "last_error": error,
        "lease_owner": None,
        "lease_until": None,
    }
    if retry_at is None:
        values["status"] = DEAD
    else:
        values["next_attempt_at"] = retry_at
    return values


class Store:
    """newsmon's storage, over SQLite (one node) or PostgreSQL (many replicas).

    Open with :meth:`open` (also an async context manager); never construct directly.
    """

    dialect: str  # "sqlite" | "postgresql"

    def __init__(self, engine: AsyncEngine, *, serialize_reads: bool) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{dialect.WRITE_OPTION: True})
        self.dialect = engine.dialect.name
        # SQLite allows one writer per file: queue writers here rather than on its busy lock.
        self._writer = asyncio.Lock() if self.dialect == dialect.SQLITE else None
        # An in-memory database is one shared connection: readers must queue too.
        self._reader = self._writer if serialize_reads else None
        # A feed state or a delivery's 'sent' is a few columns: the transaction and the round
        # trips to the database thread cost more than the write, so concurrent ones share them.
        self._polls = _GroupCommit(self._write, _feeds.record_polls, "record-polls")
        self._sent = _GroupCommit(self._write, outbox.settle_sent, "mark-sent")

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Self:
        """Connect to `url` and, with `migrate`, upgrade its schema to the newest revision.

        `url`: ``sqlite:///var/newsmon.db`` (relative to the working directory; the parent
        directory is created), ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` (one
        connection, gone on close), ``postgresql://user@host/db``; the ``+aiosqlite`` /
        ``+asyncpg`` forms are accepted. Raises ``ValueError`` for another backend or driver.
        Migrating an up-to-date database does nothing. On PostgreSQL the migration holds an
        advisory lock, so replicas starting together migrate once.
        """
        target = dialect.async_url(url)
        engine = dialect.create_engine(target)
        store = cls(engine, serialize_reads=dialect.is_memory(target))
        if migrate:
            try:
                await store._migrate()
            except BaseException:
                await engine.dispose()
                raise
        return store

    async def close(self) -> None:
        """Close every connection. In-flight calls must have finished."""
        await self._polls.wait()
        await self._sent.wait()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed on normal exit, rolled back on an exception."""
        if self._writer is None:
            async with _bad_values_raise(), self._write_engine.begin() as conn:
                yield conn
            return
        async with _bad_values_raise(), self._writer, self._write_engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        if self._reader is None:
            async with _bad_values_raise(), self._engine.connect() as conn:
                yield conn
            return
        async with _bad_values_raise(), self._reader, self._engine.connect() as conn:
            yield conn

    async def _migrate(self) -> None:
        async with self._read() as conn:
            if await conn.run_sync(migrations.at_head):
                return
        async with self._write() as conn:
            await dialect.lock_for_migration(conn)
            await conn.run_sync(migrations.upgrade)

    # --- feeds ---------------------------------------------------------------------------

    async def sync_feeds(self, feeds: Sequence[model.Feed], now: datetime) -> None:
        """Make the stored feeds follow the configuration.

        A new name is stored as configured and due now. A changed URL replaces the polled URL
        and clears what belonged to the old one: validators, error count, 410 state, next poll
        (``polls`` is kept). A name absent from `feeds`, or with ``enabled=False``, stays
        stored (with its items) but unconfigured: never claimed, not in :meth:`feed_states`.
        Raises ``ValueError`` when two feeds share a name.
        """
        async with self._write() as conn:
            await _feeds.sync(conn, self.dialect, feeds, now)

    async def claim_due_feeds(
        self, now: datetime, *, limit: int, lease: timedelta, owner: str, force: bool = False
    ) -> list[model.FeedState]:
        """Lease up to `limit` due feeds to `owner` until ``now + lease``, most overdue first.

        Due: configured, not disabled, ``next_poll`` unset or reached (any ``next_poll`` with
        `force`, for ``poll --once``), and no live lease. A leased feed is not claimed again,
        by anyone, until :meth:`apply` releases it or the lease expires; on PostgreSQL
        concurrent claimers skip each other's locked rows.
        """
        if limit <= 0:
            return []
        async with self._write() as conn:
            return await _feeds.claim(
                conn, self.dialect, now, limit=limit, lease=lease, owner=owner, force=force
            )

    async def reschedule(self, next_polls: Mapping[str, datetime], now: datetime) -> None:
        """Set the next poll of each named feed that is due at `now` (``next_poll`` unset or
        reached) and not leased; the others keep theirs. For spreading due feeds at start."""
        async with self._write() as conn:
            await _feeds.reschedule(conn, next_polls, now)

    async def feed_states(self) -> list[model.FeedState]:
        """Every configured feed (disabled ones included), by name."""
        async with self._read() as conn:
            return await _feeds.states(conn)

    # --- items -----------------------------------------------------------------------------

    async def known(
        self,
        feed: str,
        guids: Collection[str],
        urls: Collection[str],
        hashes: Collection[str],
        *,
        bands: Collection[int] = (),
        since: datetime | None = None,
    ) -> model.KnownState:
        """What is already stored of a batch of parsed items, for ``pipeline.decide``.

        ``seen`` (its keys: ``seen_guids``): those of `guids` that `feed` already stored, with their
        content hash, signature and story. ``story_by_url`` and ``story_by_hash``: for each of
        `urls` (canonical URLs) and `hashes` (content hashes) stored by any feed, the story of
        the earliest fetched item that has it; ``own_story_by_hash`` the same within `feed`.
        ``near``: items whose band keys (indexed at or after `since`) include one of `bands`,
        newest first (the highest ids): the newest ``corpus.MAX_PER_BAND`` of a band shared
        by more (a common phrase, not a story), ``corpus.MAX_NEAR_CANDIDATES`` in all.
        """
        async with self._read() as conn:
            return await corpus.known(
                conn, self.dialect, feed, guids, urls, hashes, bands=bands, since=since
            )

    async def listed_hashes(self, feed: str) -> dict[str, str]:
        """The content hash of each item of `feed`'s latest listing, by GUID: what its last
        parsed documents listed (their ``last_seen`` is within an hour of the newest), read
        before the next document is parsed. A hint: an item listed earlier and back again
        is missing from it."""
        async with self._read() as conn:
            return await corpus.listed_hashes(conn, feed)

    async def articles(
        self, feed: str, guids: Collection[str], urls: Collection[str]
    ) -> model.StoredArticles:
        """Article texts already stored, before the pages of a `full_text` feed are fetched.

        ``by_guid``: for each of `guids` that `feed` stored, its text, text problem and the
        page's title, author and date (an empty text too: the item was stored without a page).
        ``by_url``: for each of `urls` (canonical URLs), the newest non-empty text any feed
        stored with that URL, with its page's metadata.
        """
        async with self._read() as conn:
            return await corpus.articles(conn, feed, guids, urls)

    async def ping(self) -> None:
        """A cheap round trip to the database; raises what the driver raises when it is down."""
        async with self._read() as conn:
            await conn.execute(sa.select(1))

    async def claim_announcement(self, key: str, now: datetime) -> bool:
        """True for the first caller with `key` (any process, any replica); False afterwards."""
        async with self._write() as conn:
            return await reports.claim_announcement(conn, self.dialect, key, now)

    async def release_announcement(self, key: str) -> None:
        """Forget that `key` was claimed (its send failed): the next claim of it wins again."""
        async with self._write() as conn:
            await reports.release_announcement(conn, key)

    async def prune_items(self, before: datetime) -> int:
        """Delete items their feed last listed before `before`, with their matches, alerts and
        deliveries.

        An item's ``last_seen`` is refreshed by each :meth:`apply` whose decision lists it
        (``Decision.still_listed``), at most hourly; each feed's latest listing is kept
        whatever its age (a feed answering 304 or failing still lists it). Stories need no
        pruning: a story is the items that carry its key, so it lasts exactly as long as one
        of them does. Returns how many items were deleted.
        """
        async with self._write() as conn:
            return await corpus.prune_items(conn, before)

    async def prune_bands(self, before: datetime) -> int:
        """Drop near-duplicate band keys indexed before `before`; returns how many."""
        async with self._write() as conn:
            return await corpus.prune_bands(conn, before)

    async def apply(self, decision: model.Decision, update: model.FeedUpdate) -> Applied:
        """Store one poll's outcome in one transaction; safe to repeat.

        Inserts the decision's items (fetched at ``update.polled_at``), matches and alerts,
        skipping those already stored (same (feed, guid), same (item, rule), same alert key:
        a replica or an earlier attempt got there first), and one pending delivery, due at
        ``update.polled_at``, per alert actually inserted; refreshes ``last_seen`` of the
        stored items the document listed again (``decision.still_listed``). Then records the
        poll on the feed
        (success: errors reset, validators replaced, ``polls`` + 1; failure: ``error_count``
        + 1, validators kept; ``update.url`` and ``update.disabled_reason`` when set) and
        releases its lease. Matches and alerts refer to items by (feed, guid): one of the
        decision's items or one stored earlier.
        Raises ``ValueError`` for a reference to no item or when ``decision.feed !=
        update.name``, ``LookupError`` for a feed never synced; then nothing is stored.
        """
        async with self._write() as conn:
            return (await _apply(conn, self.dialect, [(decision, update)]))[0]

    async def record_poll(self, update: model.FeedUpdate) -> None:
        """As ``apply(Decision(update.name), update)``: a poll that stored no items (a 304, a
        failure) recorded on its feed, its lease released; returns once committed.

        Group commit (see :class:`_GroupCommit`): an update for a feed never synced fails
        alone (``LookupError``); any other error fails its whole group. A crash before the
        commit leaves the lease to expire: the feed is polled again, nothing else is lost.
        """
        await self._polls.submit(update)

    @asynccontextmanager
    async def ingest(self) -> AsyncIterator[Ingest]:
        """One poll's read-decide-write as one transaction, exclusive against other ingests.

        Use as ``async with store.ingest() as tx: known = await tx.known(...); decision =
        decide(...); await tx.apply(decision, update)``. No other ingest, in this process or
        another replica, runs between `known` and `apply`: two copies of one story polled at
        the same moment from two feeds join one story and raise one alert. Keep the body
        short and free of I/O but the handle's: other writers wait for it.
        """
        async with self._write() as conn:
            await dialect.lock_for_ingest(conn)
            yield Ingest(conn, self.dialect)

    async def items_since(self, since: datetime, limit: int = 10000) -> list[model.Item]:
        """Items fetched at or after `since`, oldest first, at most `limit` of them."""
        async with self._read() as conn:
            return (await corpus.since(conn, since, limit))[0]

    async def item_pages(
        self, since: datetime, *, size: int = 500
    ) -> AsyncIterator[list[model.Item]]:
        """Every item fetched at or after `since`, oldest first, `size` at a time.

        Each page is its own short read that resumes after the last item of the page before,
        in (fetch time, id) order: memory stays bounded whatever the size of the corpus, no
        connection is held while the caller works on a page, and no item is skipped. Items
        stored (or rewritten with a new fetch time) during the walk come at its end.
        """
        after: corpus.Cursor | None = None
        while True:
            async with self._read() as conn:
                page, after = await corpus.since(conn, since, size, after)
            if page:
                yield page
            if len(page) < size:
                return

    async def find_items(self, wanted: str, canonical: str | None = None) -> list[model.Item]:
        """Every stored item whose GUID or URL is `wanted` or whose canonical URL is
        `canonical` (``dedupe.canonical_url`` of it), any feed, any age; oldest first."""
        async with self._read() as conn:
            return await corpus.find(conn, wanted, canonical)

    # --- the outbox ------------------------------------------------------------------------

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, outbox.Gate] | None = None,
    ) -> list[model.Delivery]:
        """Lease up to `limit` due pending deliveries to send now to `owner` until ``now + lease``.

        Due: pending, ``next_attempt_at <= now``, no live lease; earliest due first. Each
        comes with its item, the rule's match on it (None if none was stored) and ``also``:
        one copy per other feed that stored an item of the same story, earliest first (by
        publication, else fetch time). On PostgreSQL concurrent claimers skip each other's
        locked rows.

        `gates` (by channel name; a channel without one is never held) hold rows back in the
        same transaction instead of returning them: to 'held' until ``hold_until`` (hold
        'digest'); else, for an alert without priority high, until ``quiet_until`` ('quiet');
        else, beyond ``max_per_hour`` messages of the channel in the rolling hour before
        `now` (a digest counts once, leased pending rows count as sent), until that hour is
        over and at least an hour after the channel's last digest ('rate'). Rate-limited
        claims are serialised across replicas (PostgreSQL advisory lock). A claim that holds
        what it looks at keeps looking, up to ``outbox.MAX_SCANS`` batches of `limit`.
        """
        if limit <= 0:
            return []
        async with self._write() as conn:
            return await outbox.claim(
                conn, self.dialect, now, limit=limit, lease=lease, owner=owner, gates=gates or {}
            )

    async def claim_held(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, outbox.Gate] | None = None,
    ) -> list[model.Delivery]:
        """Lease up to `limit` held deliveries whose digest is due (``next_attempt_at <= now``,
        no live lease) to `owner` until ``now + lease``, with the same details as
        :meth:`claim_deliveries`, ordered by channel, then due time, then id.

        A row whose channel's gate has ``quiet_until`` and whose alert is not priority high
        is not returned but held on until then ('quiet'). On PostgreSQL concurrent claimers
        skip each other's locked rows, so one replica sends a given digest.
        """
        if limit <= 0:
            return []
        async with self._write() as conn:
            return await outbox.claim_held(
                conn, self.dialect, now, limit=limit, lease=lease, owner=owner, gates=gates or {}
            )

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """The channel accepted it: status 'sent' at `now`, one more attempt, lease released.

        Raises ``LookupError`` for an unknown id. Committed together with the marks that
        concurrent sends make (group commit, see :class:`_GroupCommit`); returns once
        committed. A crash before the commit means the delivery is sent again after its
        lease, as a crash between the send and the mark always did.
        """
        await self._sent.submit((delivery_id, now))

    async def mark_digest_sent(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """The channel accepted one digest message carrying these deliveries: all 'sent' at
        `now`, one more attempt each, leases released, in one transaction. They share a
        digest number (the smallest id), so the hourly limit counts them as one message.
        Ids that no longer exist (pruned meanwhile) are skipped."""
        if not delivery_ids:
            return
        values = {
            "status": SENT,
            "sent_at": now,
            "attempts": deliveries.c.attempts + 1,
            "lease_owner": None,
            "lease_until": None,
            "digest": min(delivery_ids),
        }
        async with self._write() as conn:
            await outbox.settle_many(conn, delivery_ids, values)

    async def mark_digest_failed(
        self, delivery_ids: Sequence[int], now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """A digest message failed: as :meth:`mark_failed` for each delivery, in one
        transaction; held rows stay held (due again at `retry_at`) unless dead."""
        async with self._write() as conn:
            await outbox.settle_many(conn, delivery_ids, _failed(error, retry_at))

    async def mark_failed(
        self, delivery_id: int, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """An attempt failed with `error`: retry at `retry_at`, or give up ('dead') when None.

        Either way one more attempt is counted and the lease released; a held delivery stays
        held. `now` is the time of the failure (nothing stores it yet). Raises
        ``LookupError`` for an unknown id.
        """
        async with self._write() as conn:
            await outbox.settle(conn, delivery_id, _failed(error, retry_at))

    async def retry_dead(self, alert_id: int | None, now: datetime) -> int:
        """Put the dead deliveries of alert `alert_id` (None: every dead one) back in the
        outbox, pending at `now`. `alert_id` is the alert's id, as :meth:`alerts` lists it.

        Pending, not held: the channel's gates decide afresh whether it waits for a digest.
        Its attempts restart from 0 so that the sender's retry budget applies afresh; its
        last error is kept. Returns how many were revived (0 for an alert with none dead).
        """
        async with self._write() as conn:
            return await outbox.revive(conn, alert_id, now)

    async def outbox_depth(self) -> int:
        """Deliveries waiting in the outbox: pending (due or not) and held."""
        async with self._read() as conn:
            return await outbox.depth(conn)

    async def holds(self, alert_ids: Collection[int]) -> dict[int, tuple[str, datetime]]:
        """For each of `alert_ids` whose delivery is held: (why, when its digest is due).
        Why: 'digest', 'quiet' or 'rate'."""
        async with self._read() as conn:
            return await outbox.holds(conn, alert_ids)

    # --- reports ---------------------------------------------------------------------------

    async def alerts(self, limit: int = 50) -> list[AlertRow]:
        """The newest `limit` alerts with their delivery state, newest first."""
        async with self._read() as conn:
            return await reports.alert_log(conn, limit)

    async def stories(self, limit: int = 50) -> list[StoryRow]:
        """Stories carried by more than one item or that raised an alert, newest first.

        Newest: by the time their first item was fetched.
        """
        async with self._read() as conn:
            return await reports.stories(conn, limit)

    async def counts(self) -> dict[str, int]:
        """Sizes for metrics: ``feeds`` (configured), ``items``, ``matches``, ``alerts``, and
        deliveries by status: ``pending``, ``sent``, ``dead``."""
        async with self._read() as conn:
            return await reports.counts(conn)
