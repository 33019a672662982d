"""The daemon: polls feeds as they fall due, delivers the outbox, stops gracefully.

One poll of one feed is the pipeline of DESIGN.md:

    claim (store, here) | fetch | parse (worker process) | known (store)
                        | decide + plan_update | apply (store)

The daemon claims due feeds and schedules their polls; everything after the claim is
`poller.Poller`, which the daemon builds with the parts it owns and updates on reload.

`Daemon` owns the long-lived parts (store, fetcher, parse workers, rules, notifier) on an
`AsyncExitStack`, so shutdown closes them in reverse order without hand-written sequencing.
`run()` drives it with APScheduler jobs on the asyncio loop until SIGTERM/SIGINT. SIGHUP reloads
the configuration, and so does a change to the config file or to any rule file (`watch_files`
looks every second); a broken file is reported and the running configuration stays.
`poll_once()` is `newsmon poll --once`.

This is the only module below the CLI that reads the clock: every other stage is handed `now`
(the poller, this module's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.announce import ADMIN, Announcer
from monitor.config import ConfigError, Settings, load_config
from monitor.fetch import Fetcher
from monitor.health import FeedHealth, assess_all, counts, newly_unwell
from monitor.metrics import AlertState, Metrics
from monitor.model import Feed, FeedState
from monitor.notify import DrainReport, Notifier, OutboxWorker
from monitor.notify.digest import digest_trigger
from monitor.pipeline import spread_start
from monitor.poller import PollConfig, Poller
from monitor.poller import PollOutcome as PollOutcome  # re-exported: `poll_once()` returns it
from monitor.rules import RuleSet, compile_rules
from monitor.store import Store
from monitor.systemd import SystemdNotify, Watchdog, watchdog_interval
from monitor.watch import Snapshot, snapshot_files, watch_files
from monitor.web import WebServer, start_web
from monitor.workers import WorkerPool

log = logging.getLogger("newsmon")

# How often the daemon looks for due feeds. Feeds carry their own intervals (minutes); this only
# bounds how late a due feed starts, and each look is one indexed query.
POLL_TICK = timedelta(seconds=2)
# How often the outbox is drained when nothing kicks it (a poll that queued alerts kicks it at
# once; this catches retries that fall due and rows left by a crashed replica).
OUTBOX_TICK = timedelta(seconds=5)
# How often index entries older than the dedupe window are dropped: the window is days long,
# so an hour's lag is nothing, and each run is one indexed DELETE.
PRUNE_EVERY = timedelta(hours=1)
# How often feed health (failing, silent) and the outbox depth are looked at: cheap queries,
# and a feed's `expect_update` is days, so half a minute of lag is nothing.
HEALTH_EVERY = timedelta(seconds=30)
# Retention runs daily: items are kept for months, so a day's lag is nothing, and one DELETE
# a day keeps the cascade (matches, alerts, deliveries, band keys) off the busy hours' writes.
RETENTION_EVERY = timedelta(days=1)
# Time given to in-flight polls and deliveries after SIGTERM before they are cancelled. Under
# systemd's default TimeoutStopSec (90 s), with margin.
STOP_GRACE = timedelta(seconds=45)


# Metric labels for the outbox's settled states.
_SETTLED: dict[str, AlertState] = {"sent": "sent", "retried": "retried", "dead": "dead"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The running monitor. Use as `async with Daemon(settings) as daemon:`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        stdout: TextIO | None = None,
        rng: random.Random | None = None,
        store: Store | None = None,
    ) -> None:
        """`store`: one already open on `settings.database` (`startup.open_when_ready`),
        which the daemon then owns and closes; None: opened on entry."""
        self._settings = settings
        self._opened = store
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._stdout = stdout
        self._stack = contextlib.AsyncExitStack()
        self._in_flight: dict[str, asyncio.Task[PollOutcome]] = {}
        self._jobs: set[asyncio.Task[object]] = set()  # scheduler jobs running now (see _tracked)
        self._background: set[asyncio.Task[None]] = set()  # keeps fire-and-forget tasks alive
        self._running = False  # `run` (not `poll --once`) is under way
        self._scheduler: AsyncIOScheduler | None = None
        self._reloading = asyncio.Lock()  # SIGHUP and the file watcher: one reload at a time
        self.metrics = Metrics()
        self._started = clock()
        self._last_cycle: datetime | None = None  # end of the last claim of due feeds
        self._behind = False  # the last claim filled every free slot (due feeds may wait)
        self._claiming = False  # a claim of due feeds is running
        self._health: dict[str, FeedHealth] = {}  # the last look, to announce changes once
        self._configure(settings)

    # --- life cycle -------------------------------------------------------------------------

    def _configure(self, settings: Settings) -> None:
        """Derive everything that depends on the configuration (at start and on reload)."""
        self._settings = settings
        self._feeds: dict[str, Feed] = {f.name: f for f in settings.feed_values()}
        self._rules: RuleSet = compile_rules(settings.rule_values(), settings.aliases)
        self._channels = settings.channel_values()
        self._policy = settings.http_policy()
        self._dedupe = settings.dedupe.value()
        # A poll holds its feed's lease for at most this long: the request deadline, parsing and
        # storing, with margin. A replica that dies mid-poll frees the feed when it expires.
        self._lease = timedelta(seconds=self._policy.timeout * 2) + timedelta(minutes=1)

    def _poll_config(self) -> PollConfig:
        return PollConfig(
            feeds=self._feeds,
            rules=self._rules,
            channels=tuple(self._channels),
            dedupe=self._dedupe,
            backlog_window=self._settings.polling.backlog_window,
        )

    async def __aenter__(self) -> Daemon:
        stack = self._stack
        self.store = self._opened or await Store.open(self._settings.database)
        stack.push_async_callback(self.store.close)
        self._announcer = Announcer(self.store, rng=self._rng)
        fetcher = await stack.enter_async_context(
            Fetcher(self._policy, allow_networks=self._settings.http.allow_networks)
        )
        # feedparser takes tens of milliseconds per feed and holds the GIL: parsing, article
        # extraction and signatures run in worker processes so the loop keeps fetching, each
        # task bounded in time and memory so a hostile document cannot hang or exhaust us.
        limits = self._settings.workers
        workers = await stack.enter_async_context(
            WorkerPool(
                workers=max(1, min(4, os.cpu_count() or 2)),
                timeout=limits.timeout.total_seconds(),
                memory=limits.memory,
            )
        )
        # Started now, beside the first (cheap, 304) polls: the first changed feed then finds
        # a worker ready instead of waiting ~2 s for the forkserver and the imports.
        workers.warm()
        self._poller = Poller(
            self.store,
            fetcher,
            workers,
            self._poll_config(),
            metrics=self.metrics,
            clock=self._clock,
            on_alerts=functools.partial(self._kick, "outbox"),
        )
        self._start_delivery()
        await self.store.sync_feeds(list(self._feeds.values()), self._clock())
        log.info(
            "started feeds=%d rules=%d channels=%d database=%s",
            len(self._feeds),
            len(self._rules.rules),
            len(self._channels),
            self.store.dialect,
        )
        settle_garbage_collector()
        return self

    def _start_delivery(self) -> None:
        """(Re)build the notifier and outbox worker for the current channels."""
        # A send gets the deadline of one HTTP request (`http.timeout`); the outbox lease is
        # four of them (two minutes by default), room for a batch's later sends to start. A
        # replica that dies mid-send frees its rows when the lease runs out.
        timeout = self._policy.timeout
        self._notifier = Notifier(self._channels, stdout=self._stdout, timeout=timeout)
        self._worker = OutboxWorker(
            self.store,
            self._notifier,
            owner=self._owner,
            clock=self._clock,
            channels=self._channels,
            lease=timedelta(seconds=4 * timeout),
            on_outcome=self._delivered,
        )

    def _delivered(self, channel: str, state: str, alerts: int) -> None:
        settled = _SETTLED.get(state)
        if settled is not None:
            self.metrics.alert(channel, settled, alerts)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def reload(self, path: str) -> bool:
        """Load the configuration again; on any error keep the running one. True when applied."""
        async with self._reloading:
            try:
                settings = await asyncio.to_thread(load_config, path)
                if settings.database != self._settings.database:
                    log.warning("reload: a new database takes a restart; keeping the old one")
                    return False
                if settings.workers != self._settings.workers:
                    # Running workers hold their memory limit for life: the pool stays as it
                    # started, and the rest of the file applies.
                    log.warning("reload: new workers: limits take a restart; keeping the old ones")
                http_before = (self._policy, tuple(self._settings.http.allow_networks))
                self._configure(settings)
                self._poller.config = self._poll_config()
                settle_garbage_collector()
                if self._running:
                    self._background_task(self._poller.load_rules(), "load-rules")
            except ConfigError as error:
                for problem in error.problems:
                    log.error("reload refused: %s", problem)
                return False
            except (OSError, UnicodeDecodeError) as error:  # the file is gone or not text
                log.error("reload refused: %s: %s", path, getattr(error, "strerror", None) or error)
                return False
            if http_before != (self._policy, tuple(settings.http.allow_networks)):
                await self._replace_fetcher()
            self._start_delivery()
            self._schedule_digests()
            await self.store.sync_feeds(list(self._feeds.values()), self._clock())
            log.info("reloaded feeds=%d rules=%d", len(self._feeds), len(self._rules.rules))
            return True

    async def _replace_fetcher(self) -> None:
        """New `http:` settings: new polls use a new fetcher; polls in flight finish on the old."""
        old = self._poller.fetcher
        self._poller.fetcher = await self._stack.enter_async_context(
            Fetcher(self._policy, allow_networks=self._settings.http.allow_networks)
        )
        pending = list(self._in_flight.values())

        async def retire() -> None:
            if pending:
                await asyncio.wait(pending)
            await old.close()

        self._background_task(retire(), "retire-fetcher")

    def _background_task(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` beside the daemon, kept alive until it ends."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def watched_files(self, path: str) -> Snapshot:
        """The config file at `path` and the files its running `rule_files` globs match now."""
        return snapshot_files(path, self._settings.rule_files)

    # --- polling ----------------------------------------------------------------------------

    async def poll_once(self) -> list[PollOutcome]:
        """Poll every enabled feed now, whatever its schedule (`newsmon poll --once`)."""
        states = await self.store.claim_due_feeds(
            self._clock(),
            limit=len(self._feeds) or 1,
            lease=self._lease,
            owner=self._owner,
            force=True,
        )
        limit = asyncio.Semaphore(self._policy.concurrency)

        async def bounded(state: FeedState) -> PollOutcome:
            async with limit:
                return await self.poll_feed(state)

        return list(await asyncio.gather(*(bounded(s) for s in states)))

    async def spread_due_feeds(self) -> dict[str, datetime]:
        """Move the next poll of every feed due now (new, or overdue after downtime) to a
        random moment soon (`pipeline.spread_start`), so a start does not poll them all in
        one burst. Returns the planned times; a feed leased or polled meanwhile keeps its own.
        """
        now = self._clock()
        due = [
            (s.name, self._feeds[s.name].interval)
            for s in await self.store.feed_states()
            if s.name in self._feeds
            and s.disabled_reason is None
            and (s.next_poll is None or s.next_poll <= now)
        ]
        plan = spread_start(due, now, rng=self._rng)
        await self.store.reschedule(plan, now)
        if plan:
            last = max(plan.values()) - now
            log.info("spreading due feeds=%d over=%.1fs", len(plan), last.total_seconds())
        return plan

    async def _poll_tick(self) -> None:
        """Claim due feeds up to the free concurrency and start their polls; do not wait."""
        free = self._policy.concurrency - len(self._in_flight)
        if free <= 0:
            self._last_cycle = self._clock()  # busy is alive
            return
        self._claiming = True
        try:
            states = await self.store.claim_due_feeds(
                self._clock(), limit=free, lease=self._lease, owner=self._owner
            )
        finally:
            self._claiming = False
        self._last_cycle = self._clock()
        self._behind = len(states) == free  # every free slot taken: more may be due
        for state in states:
            task = asyncio.create_task(self.poll_feed(state), name=f"poll:{state.name}")
            self._in_flight[state.name] = task
            task.add_done_callback(functools.partial(self._finished, state.name))

    def _finished(self, name: str, _task: asyncio.Task[PollOutcome]) -> None:
        self._in_flight.pop(name, None)
        # A tick that filled every free slot may have left due feeds behind: claim again once
        # half the slots are free rather than at the next tick. Waiting for the tick capped a
        # running daemon at `concurrency` polls per POLL_TICK (3,000 a minute at the defaults,
        # bench/memory_scale.py: 2,900 of 10,000 due feeds polled in 60 s), however fast each
        # poll; half the slots keeps each claim a batch, not one query per finished poll. Not
        # while a claim runs: the job runs once at a time, and that claim sees the free slots.
        if (
            self._behind
            and not self._claiming
            and len(self._in_flight) <= self._policy.concurrency // 2
        ):
            self._behind = False
            self._kick("poll")

    async def poll_feed(self, state: FeedState) -> PollOutcome:
        """Fetch, parse, decide and store one feed (`poller.Poller.poll`). Never raises."""
        return await self._poller.poll(state)

    # --- delivery ---------------------------------------------------------------------------

    async def deliver(self) -> DrainReport:
        """Send every delivery that is due now."""
        report = await self._worker.drain()
        if report.sent or report.retried or report.dead:
            log.info("outbox sent=%d retried=%d dead=%d", report.sent, report.retried, report.dead)
        return report

    async def prune(self) -> None:
        """Drop near-duplicate index entries that left the dedupe window."""
        dropped = await self.store.prune_bands(self._clock() - self._dedupe.window)
        if dropped:
            log.info("pruned dedupe index entries=%d", dropped)

    async def apply_retention(self) -> int:
        """Delete items older than `retention`, with their matches, alerts and deliveries."""
        dropped = await self.store.prune_items(self._clock() - self._settings.retention)
        if dropped:
            log.info("retention pruned items=%d older_than=%s", dropped, self._settings.retention)
        return dropped

    async def send_digest(self, channel: str) -> DrainReport:
        """A channel's digest time: what is held (and pending) for it leaves as one message.

        On many replicas each one's job fires; the held rows are claimed with leases, so
        one replica sends the digest and the others find nothing left to send.
        """
        report = await self._worker.drain(digests=(channel,))
        log.info(
            "digest time channel=%s digests=%d sent=%d retried=%d dead=%d",
            channel,
            report.digests,
            report.sent,
            report.retried,
            report.dead,
        )
        return report

    def _schedule_digests(self) -> None:
        """One cron job per channel with ``digest`` (in its time zone), replacing the jobs
        of the previous configuration. Held rows whose digest time passed while no job ran
        (a restart) are sent by the next outbox tick: these jobs only make them punctual."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        for job in scheduler.get_jobs():
            if job.id.startswith("digest:"):
                job.remove()
        for name, channel in self._channels.items():
            trigger = digest_trigger(channel)
            if trigger is None:
                continue
            scheduler.add_job(
                self._tracked(self.send_digest),
                trigger,
                args=[name],
                id=f"digest:{name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

    # --- health, readiness -------------------------------------------------------------------

    async def database_ok(self) -> bool:
        """The database answered a trivial query (for /readyz and the systemd watchdog)."""
        try:
            await self.store.ping()
        except Exception:
            return False
        return True

    def scheduler_running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def last_cycle(self) -> datetime | None:
        return self._last_cycle

    async def check_health(self) -> list[FeedHealth]:
        """Feed health and outbox depth into the metrics; announce feeds that fell unwell.

        A feed failing or silent for longer than its `expect_update` is logged and, when a
        channel named `admin` exists, announced there once per episode: the store hands the
        episode's key to one replica, once, across restarts.
        """
        now = self._clock()
        report = assess_all(
            self._feeds.values(),
            await self.store.feed_states(),
            now,
            observed_since=self._started,
        )
        self.metrics.feed_states(counts(report))
        self.metrics.outbox_depth(await self.store.outbox_depth())
        for health in newly_unwell(self._health, report):
            log.warning(
                "feed unwell feed=%s state=%s since=%s reason=%s",
                health.feed,
                health.state,
                health.since.isoformat(timespec="minutes") if health.since else "-",
                health.reason,
            )
            if ADMIN in self._channels:
                self._announcer.note(health, now)
        self._health = {h.feed: h for h in report}
        admin = self._notifier if ADMIN in self._channels else None
        await self._announcer.send_due(admin, {h.key for h in report if h.unwell}, now)
        return report

    def _tracked(self, job: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[None]]:
        """`job` as a scheduler job whose runs a graceful stop waits for."""

        @functools.wraps(job)
        async def tracked(*args: object) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._jobs.add(task)
            try:
                await job(*args)
            finally:
                if task is not None:
                    self._jobs.discard(task)

        return tracked

    def _kick(self, job_id: str) -> None:
        """Run the scheduler's job `job_id` now (a no-op before `run` and once it stopped)."""
        if self._scheduler is not None and self._scheduler.running:
            job = self._scheduler.get_job(job_id)
            if job is not None:
                job.modify(next_run_time=utcnow())

    # --- the daemon -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, config_path: str | None = None) -> None:
        """Poll and deliver until `stop` is set, then let in-flight work finish."""
        loop = asyncio.get_running_loop()
        self._running = True
        # The workers compile the rules now, beside the first (304) polls; `poll --once` lets
        # each compile them at its first changed feed instead (an all-304 run needs none).
        self._background_task(self._poller.load_rules(), "load-rules")
        await self.spread_due_feeds()
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self._tracked(self._poll_tick),
            "interval",
            seconds=POLL_TICK.total_seconds(),
            id="poll",
            next_run_time=utcnow(),
            **common,
        )
        scheduler.add_job(
            self._tracked(self.deliver),
            "interval",
            seconds=OUTBOX_TICK.total_seconds(),
            id="outbox",
            next_run_time=utcnow(),
            **common,
        )
        scheduler.add_job(
            self._tracked(self.prune),
            "interval",
            seconds=PRUNE_EVERY.total_seconds(),
            id="prune",
            next_run_time=utcnow(),
            **common,
        )
        scheduler.add_job(
            self._tracked(self.apply_retention),
            "interval",
            seconds=RETENTION_EVERY.total_seconds(),
            id="retention",
            next_run_time=utcnow() + timedelta(minutes=1),  # not in the start-up rush
            **common,
        )
        scheduler.add_job(
            self._tracked(self.check_health),
            "interval",
            seconds=HEALTH_EVERY.total_seconds(),
            id="health",
            next_run_time=utcnow(),
            **common,
        )
        reloads: set[asyncio.Task[bool]] = set()
        watcher: asyncio.Task[None] | None = None
        if config_path is not None:

            def on_hup() -> None:
                task = loop.create_task(self.reload(config_path))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, on_hup)
            watcher = asyncio.create_task(
                watch_files(
                    functools.partial(self.watched_files, config_path),
                    functools.partial(self.reload, config_path),
                ),
                name="watch-config",
            )
        self._scheduler = scheduler
        self._schedule_digests()
        scheduler.start()
        server = await self._start_web()
        systemd = SystemdNotify.from_env()
        systemd.ready(status=f"polling {len(self._feeds)} feeds")
        watchdog: asyncio.Task[None] | None = None
        interval = watchdog_interval()
        if interval is not None:
            # Pinged only while the loop runs (this task) and the database answers.
            watchdog = asyncio.create_task(
                Watchdog(systemd, interval, self.database_ok).run(), name="watchdog"
            )
        log.info("running owner=%s", self._owner)
        try:
            await stop.wait()
        finally:
            systemd.stopping()
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            # No new job starts; the running ones (a drain mid-send, a digest, a health look
            # announcing) and the polls in flight finish within the grace. Shutting the
            # scheduler down first would cancel its running jobs: a send cut off after the
            # channel accepted it stays leased, and goes again after the restart.
            scheduler.pause()
            grace = loop.time() + STOP_GRACE.total_seconds()
            log.info(
                "stopping: waiting for %d polls and %d jobs in flight",
                len(self._in_flight),
                len(self._jobs),
            )
            if config_path is not None:
                loop.remove_signal_handler(signal.SIGHUP)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            # A poll tick still running may start polls: wait for the jobs, then the polls.
            if self._jobs:
                await asyncio.wait(list(self._jobs), timeout=max(0.0, grace - loop.time()))
            pending = list(self._in_flight.values())
            if pending:
                _done, late = await asyncio.wait(pending, timeout=max(0.0, grace - loop.time()))
                for task in late:
                    task.cancel()
            scheduler.shutdown(wait=False)  # cancels a job still running past the grace
            self._scheduler = None
            # Alerts the last polls queued leave now rather than after the restart.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.deliver(), timeout=STOP_GRACE.total_seconds())
            if server is not None:
                await server.stop()
        log.info("stopped")

    async def _start_web(self) -> WebServer | None:
        """/healthz, /readyz and /metrics, unless `web.enabled` is false.

        An address that cannot be bound is logged and the daemon runs on without the endpoint:
        alerts matter more than metrics, and a second `newsmon run` on one machine (a test, a
        manual run beside the service) must not stop the first from alerting.
        """
        web = self._settings.web
        if not web.enabled:
            return None
        try:
            server = await start_web(web, self, self.metrics)
        except (OSError, ValueError) as error:
            log.error("web endpoint not started listen=%s error=%s", web.listen, error)
            return None
        return server  # web.py logs where it listens


# Young objects between collections of the youngest generation (CPython's default: 700). A poll
# allocates tens of thousands (parsed items, rows, matches); with the default, the collector ran
# hundreds of times an ingest and its older generations walked every compiled rule and cached
# word, a third of the ingest's CPU time (bench/decide_bench.py: 615 -> 355 µs an item).
GC_YOUNG_THRESHOLD = 50_000


def settle_garbage_collector() -> None:
    """Move what start-up (or a reload) built, the compiled rules above all, out of the cyclic
    garbage collector's sight, and let the young generation grow larger between collections.

    Objects frozen here are still freed by reference counting when released; only cycles
    among them stay (none in the rules). Call after the configuration is in place.
    """
    gc.freeze()  # without a full collection first: it took 0.17 s of every start
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
