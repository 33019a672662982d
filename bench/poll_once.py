"""Time `newsmon poll --once` over N local feeds: cold (all new), warm (all 304), 5% changed.

About 1% of items name one of 50 watched names; each rule asks for one such name with context
words, so matches and alerts are as rare as in real monitoring and delivery (to a local sink)
does not dominate the figures.

    .venv/bin/python bench/poll_once.py --feeds 300 --items 50 --rules 20

Serves N generated RSS feeds (M items each, realistic headline-and-summary text, ETag support)
from a real HTTP server on 127.0.0.1, runs the real `newsmon` process against a fresh SQLite
database, and prints wall time, feeds/min, items/s and the child's peak RSS for each run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "iran russia treaty parliament ratifies sanctions tehran moscow minister talks prison evin "
    "families protest court verdict nuclear agency inspectors oil exports deal envoy summit "
    "security council vote election reform economy inflation currency rial strike workers"
).split()


WATCHED = [f"name{i}" for i in range(50)]


def feed_body(feed: int, items: int, generation: int, rng: random.Random) -> bytes:
    now = datetime.now(UTC)
    parts = []
    for i in range(items):
        title = " ".join(rng.choice(WORDS) for _ in range(9)).capitalize()
        # Watched names are rare, as in real news: about 1 item in 100 names one of them.
        if rng.random() < 0.01:
            title += f" {rng.choice(WATCHED)}"
        summary = " ".join(rng.choice(WORDS) for _ in range(40))
        date = format_datetime(now - timedelta(minutes=i))
        guid = f"f{feed}-g{generation}-i{i}"
        parts.append(
            f"<item><guid>{guid}</guid><title>{escape(title)}</title>"
            f"<link>https://outlet{feed}.example/{guid}</link>"
            f"<description>{escape(summary)}</description><pubDate>{date}</pubDate></item>"
        )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Outlet {feed}</title>'
        f"<link>https://outlet{feed}.example/</link>{''.join(parts)}</channel></rss>"
    ).encode()


class Feeds:
    def __init__(self, count: int, items: int) -> None:
        self.rng = random.Random(7)
        self.items = items
        self.bodies = [feed_body(i, items, 0, self.rng) for i in range(count)]

    def change(self, share: float) -> int:
        changed = self.rng.sample(range(len(self.bodies)), int(len(self.bodies) * share))
        for i in changed:
            self.bodies[i] = feed_body(i, self.items, 1, self.rng)
        return len(changed)

    async def handle(self, request: web.Request) -> web.Response:
        body = self.bodies[int(request.match_info["n"])]
        tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": tag})


async def run_poll(config: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "--config",
        str(config),
        "--log-level",
        "ERROR",
        "poll",
        "--once",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"newsmon failed: {err.decode()[-2000:]}")
    return elapsed, out.decode().strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rules", type=int, default=20)
    args = parser.parse_args()

    feeds = Feeds(args.feeds, args.items)
    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feeds.handle)
    sent: list[int] = []

    async def sink(request: web.Request) -> web.Response:
        await request.read()
        sent.append(1)
        return web.json_response({})

    app.router.add_post("/sink", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        # Each rule: a watched name with context words, like "@EVIN AND prison*".
        rules = "".join(
            f"  - name: r{i}\n    query: '{WATCHED[i % len(WATCHED)]} AND "
            f"({WORDS[i % len(WORDS)]} OR {WORDS[(i * 7 + 3) % len(WORDS)]}*)'\n"
            for i in range(args.rules)
        )
        feed_lines = "".join(
            f"  - name: f{i}\n    url: http://127.0.0.1:{port}/feed/{i}.xml\n"
            for i in range(args.feeds)
        )
        config.write_text(
            f"database: sqlite:///{tmp}/bench.db\n"
            "http:\n  allow_private_networks: true\n  per_host: 100\n  concurrency: 100\n"
            "polling:\n  backlog_window: 7d\n"
            f"feeds:\n{feed_lines}channels:\n  sink:\n    url: 'json://127.0.0.1:{port}/sink'\n"
            f"rules:\n{rules}"
        )
        print(f"{args.feeds} feeds x {args.items} items, {args.rules} rules, SQLite")
        for label, share in (("cold", None), ("warm (all 304)", 0.0), ("5% changed", 0.05)):
            if share:
                feeds.change(share)
            elapsed, summary = await run_poll(config)
            items = (
                args.feeds * args.items
                if share is None
                else int(args.feeds * (share or 0)) * args.items
            )
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"{label:15} {elapsed:6.2f} s  {args.feeds / elapsed * 60:8.0f} feeds/min  "
                f"{items / elapsed:7.0f} items/s  peak RSS so far {rss:.0f} MB\n    {summary}"
            )
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
