"""Response -> alert in outbox for a long-running `newsmon run` with warm workers (issue 9).

    .venv/bin/python bench/run_latency.py --feeds 200 --items 50 --rules 1000 --changes 50

bench/speed.py measures this interval under `poll --once`, where it includes the process's
start-up and the queue of every feed polled at the same moment. Here the daemon runs as it does
in production: bench/speed.py's feeds, server (8 loopback hosts, ETag/304) and 1,000 rules; a
short `polling.interval` (`--interval`, 10 s: 200 feeds make ~20 polls a second, the rate of
12,000 feeds at 10 minutes) and no Cache-Control from the server (its max-age would stretch the
interval). The bench

1. migrates the database with a zero-feed `poll --once` and adds speed.py's probe: an
   `AFTER INSERT ON alerts` trigger noting SQLite's wall clock (ms) inside the ingest's
   transaction;
2. starts `newsmon run` and lets it settle: every feed polled cold (all items new), then each
   answered with a 304 at least once, so the parse workers are started and warm;
3. changes one feed at a time (`--changes`): the feed whose last response is the oldest (so the
   wait for its next poll is short; the wait is not measured), given `--new-items` new items at
   the top, one of them a fresh story that a rule (without a feed filter) matches, checked
   beforehand with the compiled rules; then waits for that feed's 200 and its alert row, and
   pauses `--gap` seconds before the next change;
4. prints the interval from the moment the server finished writing that 200 (its `write_eof`
   returned) to the trigger time of the feed's first alert row: p50 / p99 / max; network time
   and the wait for the next poll tick (scheduler.POLL_TICK) are outside it;
5. stops the daemon with SIGTERM and prints its exit status and its log's warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import (
    PROBE,
    REPO,
    Corpus,
    Feed,
    FeedServer,
    FeedSet,
    Story,
    _item_xml,
    feed_url,
    newsmon_argv,
    pct,
    run_process,
    serve,
    write_config,
)

from monitor.model import Rule
from monitor.parse import parse_feed
from monitor.rules import compile_rules


class LiveServer(FeedServer):
    """speed.py's server, noting when each feed's last 200 was sent."""

    def __init__(self, feeds: FeedSet) -> None:
        super().__init__(feeds)
        self.max_age = None
        self.ok_sent: dict[int, float] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await super().handle(request)
        if response.status == 200:
            n = int(request.match_info["n"])
            self.ok_sent[n] = self.log.sent[n]
        return response


def matching_stories(corpus: Corpus, rules: list[dict[str, object]], count: int) -> list[Story]:
    """`count` fresh stories, each matched by a rule that applies to every feed."""
    plain = [Rule(str(r["name"]), str(r["query"])) for r in rules if "feeds" not in r]
    ruleset = compile_rules(plain, corpus.aliases())
    found: list[Story] = []
    now = datetime.now(UTC)
    while len(found) < count:
        story = corpus.story()
        probe = Feed(0, atom=False, items=[_item_xml(False, 0, "probe", story, now)])
        probe.render(now)
        items = parse_feed(probe.body, feed="f0", url="http://127.0.0.2/").items
        if items and ruleset.match(items[0]):
            found.append(story)
    return found


def change_one(feeds: FeedSet, n: int, story: Story, new_items: int, j: int) -> None:
    """New items at the top of feed `n`: the matching story first, as many old ones dropped."""
    feeds.generation += 1
    feeds.now = datetime.now(UTC).replace(microsecond=0)
    feed = feeds.feeds[n]
    first = _item_xml(feed.atom, n, f"o{n}-live{j}", story, feeds.now)
    fresh = [first, *feeds._new_items(n, new_items - 1)]
    feed.items = (fresh + feed.items)[: feeds.per_feed]
    feed.render(feeds.now)


def first_alert(db: Path, feed: str, after_id: int) -> tuple[int, float] | None:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        row = conn.execute(
            "SELECT a.id, b.at FROM alerts a JOIN items i ON i.id = a.item_id "
            "JOIN bench_alert_inserted b ON b.alert_id = a.id WHERE a.id > ? AND i.feed = ? "
            "ORDER BY b.at LIMIT 1",
            (after_id, feed),
        ).fetchone()
    return (row[0], row[1]) if row else None


def max_alert(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--interval", default="10s", help="polling.interval")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--new-items", type=int, default=5, help="new items per change")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between changes")
    parser.add_argument("--settle-timeout", type=float, default=240)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="newsmon-latency-", dir="/tmp"))
    try:
        asyncio.run(bench(args, work))
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            for p in sorted(work.iterdir()):
                p.unlink()
            work.rmdir()


async def bench(args: argparse.Namespace, work: Path) -> None:
    t = time.perf_counter()
    corpus = Corpus(args.seed)
    feeds = FeedSet(corpus, args.feeds, args.items, 0.2)
    rules = [corpus.rule(i, 10) for i in range(args.rules)]
    stories = matching_stories(corpus, rules, args.changes)
    print(f"{args.feeds} feeds x {args.items} items, {len(rules)} rules, interval "
          f"{args.interval}, {args.hosts} hosts; generated in {time.perf_counter() - t:.1f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip

    server = LiveServer(feeds)
    runner, bases, sink = await serve(server.handle, server.receive, args.hosts)
    try:
        await _run(args, work, server, feeds, corpus, rules, stories, bases, sink)
    finally:
        await runner.cleanup()


async def _run(
    args: argparse.Namespace, work: Path, server: LiveServer, feeds: FeedSet, corpus: Corpus,
    rules: list[dict[str, object]], stories: list[Story], bases: list[str], sink: str,
) -> None:  # fmt: skip
    db, config, prime = work / "newsmon.db", work / "run.yaml", work / "prime.yaml"
    urls = [feed_url(bases, n) for n in range(args.feeds)]
    per_host = -(-100 // args.hosts)
    write_config(prime, db, [], [], {}, sink, per_host, 10)
    write_config(config, db, urls, rules, corpus.aliases(), sink, per_host, 10)
    text = config.read_text().replace("  interval: 10m", f"  interval: {args.interval}")
    config.write_text(text + "web:\n  enabled: false\n")
    await run_process(newsmon_argv(prime), 120)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(PROBE)

    argv = [*newsmon_argv(config, args.log_level)[:-2], "run"]
    log_path = work / "newsmon-run.log"
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=log_file, stderr=log_file, cwd=REPO
        )
        try:
            await _measure(args, db, server, feeds, stories, proc, started)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                stop = time.perf_counter()
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                print(f"SIGTERM: exit status {proc.returncode} after "
                      f"{time.perf_counter() - stop:.2f} s")  # fmt: skip
    lines = log_path.read_text().splitlines()
    # apscheduler's "skipped: maximum number of running instances" for the delivery job is the
    # outbox kick meeting a delivery already running: counted, not listed.
    skipped = sum("maximum number of running instances" in line for line in lines)
    problems = [
        line
        for line in lines
        if ("WARNING" in line or "ERROR" in line) and "maximum number of running" not in line
    ]
    print(f"daemon log: {skipped} apscheduler 'skipped: maximum number of running instances'")
    print(f"daemon log: {len(problems)} warning/error lines" + "".join(
        f"\n    {line[:200]}" for line in problems[:10]))  # fmt: skip
    print(f"sink received {len(server.sink)} deliveries; load average {os.getloadavg()[0]:.2f}")


async def _measure(
    args: argparse.Namespace, db: Path, server: LiveServer, feeds: FeedSet,
    stories: list[Story], proc: asyncio.subprocess.Process, started: float,
) -> None:  # fmt: skip
    log = server.log
    # Settle: every feed answered 200 (cold) and then at least one 304.
    counts: dict[int, int] = {}
    seen_sent: dict[int, float] = {}
    deadline = time.perf_counter() + args.settle_timeout
    while len([n for n, c in counts.items() if c >= 2]) < args.feeds:
        if proc.returncode is not None or time.perf_counter() > deadline:
            raise SystemExit(f"did not settle: {len(counts)} feeds polled, rc {proc.returncode}")
        await asyncio.sleep(0.2)
        for n, at in log.sent.items():
            if seen_sent.get(n) != at:
                seen_sent[n] = at
                counts[n] = counts.get(n, 0) + 1
    await asyncio.sleep(2)
    responses = sum(log.statuses.values())
    print(f"settled {time.perf_counter() - started:.1f} s after start: {log.statuses} "
          f"responses; {len(server.sink)} deliveries to the sink so far")  # fmt: skip
    last = await asyncio.to_thread(max_alert, db)
    rate_from, rate_n = time.perf_counter(), responses

    latencies: list[float] = []
    waits: list[float] = []
    missing = 0
    changed: set[int] = set()
    for j, story in enumerate(stories):
        candidates = [n for n in range(args.feeds) if n not in changed and n in log.sent]
        n = min(candidates, key=lambda k: log.sent[k])  # the longest since its last poll
        changed.add(n)
        before = server.ok_sent.get(n)
        change_one(feeds, n, story, args.new_items, j)
        changed_at = time.time()
        deadline = time.perf_counter() + 30
        found = None
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
            if server.ok_sent.get(n) == before:
                continue
            found = await asyncio.to_thread(first_alert, db, f"f{n}", last)
            if found:
                break
        sent = server.ok_sent.get(n)
        if found is None or sent is None or sent == before:
            missing += 1
            print(f"  change {j}: feed f{n}: no alert within 30 s (200 sent: {sent != before})")
        else:
            last = max(last, found[0])
            latencies.append(found[1] - sent)
            waits.append(sent - changed_at)
        await asyncio.sleep(args.gap)
    spent = time.perf_counter() - rate_from
    polls = sum(log.statuses.values()) - rate_n
    ms = [v * 1000 for v in latencies]
    print(f"{len(ms)} changes measured ({missing} without an alert); background: "
          f"{polls / spent:.1f} polls/s over {spent:.0f} s; change -> 200 sent (the wait for "
          f"the poll, not counted) median {pct(waits, 50):.2f} s")  # fmt: skip
    if ms:
        print(f"response -> alert in outbox: p50 {pct(ms, 50):.1f} ms  "
              f"p90 {pct(ms, 90):.1f} ms  p99 {pct(ms, 99):.1f} ms  max {max(ms):.1f} ms  "
              f"min {min(ms):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
