"""Memory at scale: the real daemon over 10,000 feeds and 1,000,000 stored items (issue 9).

    .venv/bin/python bench/memory_scale.py --feeds 10000 --items 1000000 --runs 2

Builds the database in /tmp: migrated by a zero-feed `newsmon poll --once`, then filled with
plain SQL matching monitor/store/tables.py (bulk `executemany`, one transaction per table):

- `feeds`: every feed polled before (polls 1, an ETag stored), due now;
- `items`: `--items` rows spread evenly over the feeds and over the last 30 days (within the
  180-day retention), each with a headline and a 4-6 sentence summary from bench/speed.py's
  corpus (1,000 stories reused with a per-item number), a canonical URL, a content hash, a
  story key (a fifth of the items join an earlier item's story), a 128-byte signature;
- `item_bands`: 16 band rows an item for the items of the last 7 days (the dedupe window);
- `matches`, `alerts` and `deliveries` (sent) for 3% of the items.

Then serves the 10,000 feeds from 8 loopback hosts, answering 304 to every request that brings
the stored ETag, and runs, `--runs` times each:

1. `newsmon run` with `polling.interval: 1m` and 1,000 rules (bench/speed.py's): the start
   spreads the due feeds over 30 s, so every feed is polled once; stopped with SIGTERM after
   `--run-seconds`;
2. `newsmon poll --once` (every feed, forced), all 304.

For each: peak RSS of the largest process and peak PSS of the process tree (the daemon and its
parse workers), sampled from /proc every 50 ms, and the responses the server saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import (
    REPO,
    Corpus,
    _memory,
    _tree,
    newsmon_argv,
    run_process,
    serve,
    write_config,
)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # tables.UTCDateTime


def build(db: Path, urls: list[str], items: int, seed: int) -> None:
    rng = random.Random(seed)
    corpus = Corpus(seed)
    stories = []
    for _ in range(1000):
        s = corpus.story()
        stories.append((s.headline, " ".join(s.sentences)))
    now = datetime.now(UTC)
    feeds = len(urls)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.executemany(
            "INSERT INTO feeds (name, config_url, url, configured, etag, last_modified, "
            "next_poll, last_polled, last_success, error_count, polls, created, last_new_item) "
            "VALUES (?, ?, ?, 1, ?, NULL, ?, ?, ?, 0, 1, ?, ?)",
            (
                (
                    f"f{n}",
                    url,
                    url,
                    f'"e{n}"',
                    stamp(now),
                    stamp(now - timedelta(minutes=10)),
                    stamp(now - timedelta(minutes=10)),
                    stamp(now - timedelta(days=30)),
                    stamp(now - timedelta(hours=1)),
                )
                for n, url in enumerate(urls)
            ),
        )
    span = timedelta(days=30).total_seconds()
    window = now - timedelta(days=7)

    def rows():  # type: ignore[no-untyped-def]
        for i in range(items):
            n = i % feeds
            title, summary = stories[i % len(stories)]
            fetched = now - timedelta(seconds=span * (1 - i / items))
            guid = f"o{n}-{i}"
            url = f"https://outlet{n}.example/news/{guid}"
            story_of = i - rng.randint(1, 500) if i > 500 and rng.random() < 0.2 else i
            yield (
                f"f{n}", guid, url, url, f"{title} ({i})", f"{summary} [{i}]", "", "",
                stamp(fetched), None, "", None, "", "", None, rng.randbytes(128),
                hashlib.sha256(str(i).encode()).hexdigest(),
                "s:" + hashlib.sha256(str(story_of).encode()).hexdigest()[:24],
                0, stamp(fetched), None, stamp(fetched),
            )  # fmt: skip

    with conn:
        conn.executemany(
            "INSERT INTO items (feed, guid, url, canonical_url, title, summary, content, author, "
            "published, updated, text, text_problem, page_title, page_author, page_published, "
            "signature, content_hash, story, baseline, fetched_at, updated_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
    with conn:
        recent = conn.execute(
            "SELECT id, fetched_at FROM items WHERE fetched_at >= ?", (stamp(window),)
        ).fetchall()
        conn.executemany(
            "INSERT INTO item_bands (item_id, band, fetched_at) VALUES (?, ?, ?)",
            ((item_id, rng.getrandbits(62), at) for item_id, at in recent for _ in range(16)),
        )
        alerted = conn.execute(
            "SELECT id, story, fetched_at FROM items WHERE id % 33 = 0"
        ).fetchall()
        conn.executemany(
            "INSERT INTO matches (item_id, rule, snippet, highlights, fields, created) "
            "VALUES (?, ?, ?, '[[0, 5]]', '[\"title\"]', ?)",
            (
                (i, f"watch-{i % 1000}", "a snippet of the matched text", at)
                for i, _s, at in alerted
            ),
        )
        conn.executemany(
            "INSERT INTO alerts (key, rule, channel, story, item_id, priority, revision, "
            "created) VALUES (?, ?, 'sink', ?, ?, 'normal', '', ?)",
            (
                (f"watch-{i % 1000}\x1f{s}\x1fsink\x1f{i}", f"watch-{i % 1000}", s, i, at)
                for i, s, at in alerted
            ),
        )
        conn.execute(
            "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, "
            "sent_at, created) SELECT id, 'sink', 'sent', 1, created, created, created "
            "FROM alerts"
        )
    conn.execute("ANALYZE")
    conn.close()


class NotModified:
    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}

    async def handle(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if request.headers.get("If-None-Match") == f'"e{n}"':
            response = web.Response(status=304, headers={"ETag": f'"e{n}"'})
        else:  # never expected: every feed has its ETag stored
            body = (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
                "<link>https://x.example/</link><description>x</description></channel></rss>"
            )
            response = web.Response(
                text=body, content_type="application/rss+xml", headers={"ETag": f'"e{n}"'}
            )
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        return response

    async def sink(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})


async def run_daemon(config: Path, seconds: float) -> tuple[float, float, int | None]:
    argv = [*newsmon_argv(config, "WARNING")[:-2], "run"]
    log = config.parent / "newsmon-run.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out, cwd=REPO)
        peak_rss = peak_pss = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline and proc.returncode is None:
            rss, pss = await asyncio.to_thread(_memory, _tree(proc.pid))
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            await asyncio.sleep(0.05)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return peak_rss, peak_pss, proc.returncode


async def bench(args: argparse.Namespace, work: Path) -> None:
    handler = NotModified()
    runner, bases, sink = await serve(handler.handle, handler.sink, 8)
    try:
        db = work / "newsmon.db"
        urls = [f"{bases[n % len(bases)]}/feed/{n}.xml" for n in range(args.feeds)]
        corpus = Corpus(args.seed)
        rules = [corpus.rule(i, 10) for i in range(1000)]
        prime, config, once = work / "prime.yaml", work / "run.yaml", work / "once.yaml"
        write_config(prime, db, [], [], {}, sink, 13, 10)
        write_config(once, db, urls, rules, corpus.aliases(), sink, 13, 10)
        text = once.read_text().replace("  interval: 10m", "  interval: 1m")
        config.write_text(text + "web:\n  enabled: false\n")
        once.write_text(once.read_text() + "web:\n  enabled: false\n")
        if not db.exists():
            await run_process(newsmon_argv(prime), 120)
            t = time.perf_counter()
            await asyncio.to_thread(build, db, urls, args.items, args.seed)
            print(f"database built in {time.perf_counter() - t:.0f} s")
        with contextlib.closing(sqlite3.connect(db)) as conn:
            counts = {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("feeds", "items", "item_bands", "alerts")
            }
        print(f"{db}: {db.stat().st_size / 1e9:.2f} GB, {counts}")
        for run in range(args.runs):
            handler.statuses = {}
            load = os.getloadavg()[0]
            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                # This server's ports, the ETag it knows, due now (a reused database too).
                due = stamp(datetime.now(UTC))
                conn.executemany(
                    "UPDATE feeds SET url = ?, config_url = ?, etag = ?, next_poll = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE name = ?",
                    ((u, u, f'"e{n}"', due, f"f{n}") for n, u in enumerate(urls)),
                )
            rss, pss, rc = await run_daemon(config, args.run_seconds)
            print(f"run {run + 1}: newsmon run, {args.run_seconds:.0f} s (load {load:.2f}): "
                  f"peak RSS {rss:.0f} MB, tree PSS {pss:.0f} MB; responses "
                  f"{handler.statuses}; exit status after SIGTERM {rc}")  # fmt: skip
            handler.statuses = {}
            load = os.getloadavg()[0]
            proc = await run_process(newsmon_argv(once), 600)
            print(f"run {run + 1}: poll --once (load {load:.2f}): {proc.wall:.1f} s, peak RSS "
                  f"{proc.peak_rss_mb:.0f} MB, tree PSS {proc.peak_pss_mb:.0f} MB; responses "
                  f"{handler.statuses}; {proc.out.splitlines()[-1:]}")  # fmt: skip
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--run-seconds", type=float, default=60)
    parser.add_argument("--work", default="/tmp/newsmon-memory", help="kept: the db is reused")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(args, work))


if __name__ == "__main__":
    main()
