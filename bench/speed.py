"""Speed and scale: `newsmon poll --once` over N local feeds, against `reader` in the same run.

    .venv/bin/python bench/speed.py --feeds 300 --items 50 --rules 1000 --setup-peer

Generates N feeds x M items of news-like text (headlines and summaries from sentence templates
whose slots take places, organisations and people, a few of them the names the rules watch;
about a fifth of the items are syndicated copies of one wire story in several feeds, each with a
new headline and the outlet's boilerplate) and serves them, RSS 2.0 and Atom, gzip, ETag and
Last-Modified with 304s, from a local aiohttp server under several loopback addresses
(127.0.0.2, 127.0.0.3, ...: one "host" each, so the per-host limit works as it does on the
web). Writes a config with 1,000 rules (aliases, phrases, NEAR, field scopes, NOT, feed tags)
and one json:// channel to a local sink, then runs the real `newsmon poll --once` process:

- cold: every item new (the database is migrated beforehand by a zero-feed run, so the
  schema exists for the probe below; the migration's cost is printed apart);
- warm: every feed answers 304;
- changed: 5% of the feeds have new items at the top (a fifth of their items by default).

For each run it prints wall time, feeds/min, new items/s, CPU seconds of the process tree,
the peak memory of the process tree (sampled from /proc: RSS of the largest process and PSS of
all, since parse workers share pages with the parent), and the time from a feed's response to
its alert in the outbox. That last figure: the bench server notes when it finished sending each
feed's response (wall clock), and a trigger the bench adds to the database notes (SQLite's
clock, the same wall clock, millisecond resolution) when each alert row is inserted, inside the
transaction that commits it. `alerts.created` itself is the poll's start, taken before the
request: it precedes the response and cannot give this interval (the output says how often).

The same run times `reader` (a separate virtual environment; bench/peer_reader.py) on the same
feeds, cold, warm and changed, with `update_feeds(workers=16)`, and prints newsmon/reader ratios.
`--profile` adds a cProfile of the cold run (main process) and the in-process cost of each
stage that the parse workers run. Everything stays on 127.0.0.x and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import accumulate
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO / "bench" / "peer_reader.py"

# --- text ------------------------------------------------------------------------------------

FIRST = (
    "Ali Reza Mohammad Hossein Maryam Fatemeh Narges Sara Dmitry Sergei Olga Anna Ivan Elena "
    "Pavel John Sarah David Laura Michael Omar Layla Karim Nadia Yusuf Hamid Leila Arash Nasrin "
    "Viktor Irina Alexei Tatiana Kamal Rania Farid Shirin Babak Mina Hassan"
).split()
SYLLABLES = "ka ri mo za de al ba na sha te ro vi lu ne fa ha gi sa mi to ya ser gol zan".split()
SURNAME_ENDS = ["ov", "i", "zadeh", "ian", "enko", "son", "ani", "ova", "pour", "ski"]
PLACES = (
    "Tehran Moscow Isfahan Tabriz Mashhad Kazan Baku Yerevan Ankara Geneva Vienna Doha Muscat "
    "Kabul Herat Basra Erbil Damascus Beirut Minsk Tbilisi Astana Ashgabat Dushanbe Caspian "
    "Hormuz Bushehr Natanz Karaj Shiraz Samara Rostov Sochi Murmansk Novosibirsk"
).split()
ORG_HEADS = "Caspian Northern Eastern National Federal Joint Central United Gulf Atlas".split()
ORG_TAILS = (
    "Shipping Company|Grain Union|Energy Agency|Rail Corporation|Workers Council|"
    "Bar Association|Press Syndicate|Steel Group|Oil Terminal|Teachers Union"
).split("|")
GENERIC_ORGS = [
    "the foreign ministry", "the central bank", "the judiciary", "parliament", "the UN agency",
    "the interior ministry", "the energy ministry", "state media", "the security council",
    "the electoral commission", "a rights group", "the customs service",
]  # fmt: skip
NOUNS = (
    "treaty agreement sanctions talks verdict trial prison strike protest election budget "
    "pipeline exports tariff inspection ceasefire deal reform inquiry appeal sentence bail "
    "ratification summit currency inflation subsidy blackout drought border visa embargo"
).split()
CONTEXT = (
    "treaty sanctions prison verdict strike protest ratification pipeline ceasefire arrest "
    "execution inspection embargo election"
).split()
VERBS = "approve reject delay review sign suspend expand challenge extend condemn".split()
PAST = "approved rejected delayed reviewed signed suspended expanded challenged extended".split()
STATES = "arrested released detained sentenced injured evacuated questioned freed".split()
GROUPS = "workers students journalists lawyers protesters inspectors officials families".split()
ROLES = "spokesman spokeswoman director deputy minister lawyer analyst official adviser".split()
ADJS = "unacceptable premature historic illegal necessary overdue dangerous encouraging".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
SENTENCES = [
    "{person} said on {day} that {org} would {verb} the {noun} in {place}.",
    "Officials in {place} {past} the {noun} after {num} {group} were {state}.",
    "The {noun} comes as {org} faces pressure over the {noun2}, according to {person}.",
    '{person}, a {role} at {org}, told reporters the {noun} was "{adj}".',
    "In a statement, {org} said {num} {group} had been {state} in {place} since {day}.",
    "Talks between {place} and {place2} on the {noun} are expected to resume next week.",
    "Critics say the {noun} will {verb} the {noun2} and hurt {group} in {place}.",
    "{person} is due to discuss the {noun} with {person2} in {place} on {day}.",
    "The {noun2} was {past} by {org} last month, a move {person} called {adj}.",
    "Prices in {place} rose {num} percent as the {noun} dragged on, {org} said.",
]
HEADLINES = [
    "{place} {past} {noun} as {group} are {state}",
    "{person} says {org} will {verb} {noun}",
    "{num} {group} {state} in {place} after {noun}",
    "{org} to {verb} {noun} with {place2}",
    "Pressure grows on {place} over {noun} and {noun2}",
    "{person} and {person2} meet in {place} on {noun}",
]
BOILERPLATE = [
    "Reporting by {person}; editing by {person2}.",
    "This story was first published by {outlet}.",
    "(c) 2026 {outlet}. All rights reserved.",
    "Read more at {outlet} and follow us for updates.",
]


# Filler after each sentence's clause, drawn from a Zipf law over common words and a long tail of
# synthetic ones, so that two different stories share few 3-word shingles, as real reports do
# (templates alone made unrelated stories near-duplicates and flooded the LSH with candidates).
COMMON = (
    "the of and to in a is that for on was with he it as at by said from his be has have an are "
    "were which this but not had after who they its been will their more one also new would two "
    "first last year years government people country state police security forces week told city "
    "region military court trial law bill economy oil gas prices bank program foreign ministry "
    "official sources international rights activists border trade market energy power water "
    "health school women children union party leader opposition policy plans support against "
    "under between during while since before over about into than other some many most such only"
).split()


def _words(rng: random.Random, n: int, syllables: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(SYLLABLES, k=rng.randint(2, syllables))))
    return sorted(out)


def _surnames(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(
            (
                "".join(rng.choices(SYLLABLES, k=rng.randint(2, 3))) + rng.choice(SURNAME_ENDS)
            ).capitalize()
        )
    return sorted(out)  # fmt: skip


@dataclass
class Story:
    slots: dict[str, str]  # the people, places and nouns every sentence of the story shares
    sentences: list[str]
    headline: str


class Corpus:
    """The text: watched and unwatched names, stories, and the rules that watch them."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        surnames = _surnames(rng, 1500)
        rng.shuffle(surnames)
        # 300 watched people, 100 watched organisations; everyone else is background. A slot
        # names a watched person 1 time in 50 and a watched organisation 1 in 25, which with the
        # context words the rules ask for makes about 3% of items match a rule.
        self.watched = [f"{rng.choice(FIRST)} {s}" for s in surnames[:300]]
        self.others = [f"{rng.choice(FIRST)} {s}" for s in surnames[300:]]
        self.orgs = sorted({f"{h} {t}" for h in ORG_HEADS for t in ORG_TAILS})
        taken = {s.lower() for s in surnames}
        tail = [w for w in _words(rng, 12_000, 4) if w not in taken]
        rng.shuffle(tail)
        self.vocabulary = COMMON + NOUNS + tail
        self.cum_weights = list(
            accumulate(1.0 / (rank + 1) for rank in range(len(self.vocabulary)))
        )

    def _filler(self) -> str:
        rng = self.rng
        return " ".join(
            rng.choices(self.vocabulary, cum_weights=self.cum_weights, k=rng.randint(8, 16))
        )

    def _person(self) -> str:
        rng = self.rng
        return rng.choice(self.watched) if rng.random() < 0.02 else rng.choice(self.others)

    def _org(self) -> str:
        rng = self.rng
        return f"the {rng.choice(self.orgs)}" if rng.random() < 0.04 else rng.choice(GENERIC_ORGS)

    def story(self) -> Story:
        rng = self.rng
        slots = {
            "person": self._person(), "person2": self._person(), "org": self._org(),
            "place": rng.choice(PLACES), "place2": rng.choice(PLACES),
            "noun": rng.choice(NOUNS), "noun2": rng.choice(NOUNS), "verb": rng.choice(VERBS),
            "past": rng.choice(PAST), "state": rng.choice(STATES), "group": rng.choice(GROUPS),
            "role": rng.choice(ROLES), "adj": rng.choice(ADJS), "day": rng.choice(DAYS),
            "num": str(rng.randint(2, 90)),
        }  # fmt: skip
        picked = rng.sample(SENTENCES, rng.randint(4, 6))
        # Some sentences name a further person: background mostly, now and then a watched one.
        sentences = [
            f"{s.format_map({**slots, 'person2': self._person()})[:-1]}, {self._filler()}."
            for s in picked
        ]
        headline = rng.choice(HEADLINES).format_map(slots)
        return Story(slots, sentences, headline[0].upper() + headline[1:])

    def copy(self, story: Story, outlet: str) -> Story:
        """A syndicated copy: a new headline, maybe the last sentence cut, the outlet's lines."""
        rng = self.rng
        headline = rng.choice(HEADLINES).format_map(story.slots)
        body = story.sentences[: len(story.sentences) - rng.randint(0, 1)]
        extra = {"outlet": outlet, "person": self._person(), "person2": self._person()}
        tail = [b.format_map(extra) for b in rng.sample(BOILERPLATE, rng.randint(1, 2))]
        return Story(story.slots, body + tail, headline[0].upper() + headline[1:])

    def aliases(self) -> dict[str, list[str]]:
        rng = random.Random(1)
        out = {}
        for i in range(60):
            first, second, third = rng.sample(self.watched, 3)
            out[f"A{i}"] = [first.split()[1], second.split()[1], third, rng.choice(self.orgs)]
        return out

    def rule(self, i: int, tags: int) -> dict[str, object]:
        rng = random.Random(i)
        person = rng.choice(self.watched)
        last = person.split()[1]
        org = rng.choice(self.orgs)
        ctx, ctx2 = rng.sample(CONTEXT, 2)
        alias = f"@A{rng.randrange(60)}"
        rule: dict[str, object] = {"name": f"watch-{i}"}
        shape = i % 10
        queries = [
            f"{alias} AND ({ctx} OR {ctx2[:5]}*)",
            f'"{person}" AND ({ctx} OR {ctx2})',
            f"{last} NEAR/8 ({ctx} OR {ctx2})",
            f'title:("{person}" OR "{org}")',
            f'"{org}" AND ({rng.choice(PLACES)} OR {ctx})',
            f'("{person}" OR {rng.choice(self.watched).split()[1]}) NOT {ctx}',
            f"{last} AND {ctx[:4]}*",
            f"{alias} NEAR/10 ({ctx} OR {ctx2})",
            f"summary:({last} AND ({ctx} OR {ctx2}))",
            f'"{org}" ONEAR/6 {ctx}',
        ]
        rule["query"] = queries[shape]
        if shape == 6:  # a desk that reads only its region's outlets
            rule["feeds"] = [f"tag:region{rng.randrange(tags)}"]
        if i % 25 == 0:
            rule["priority"] = "high"
        return rule


# --- feeds -----------------------------------------------------------------------------------


def _item_xml(atom: bool, outlet: int, guid: str, story: Story, when: datetime) -> str:
    title, summary = escape(story.headline), escape(" ".join(story.sentences))
    link = f"https://outlet{outlet}.example/news/{guid}"
    if atom:
        stamp = when.isoformat(timespec="seconds")
        return (
            f"<entry><id>tag:outlet{outlet}.example,2026:{guid}</id><title>{title}</title>"
            f'<link rel="alternate" href="{link}"/><summary>{summary}</summary>'
            f"<published>{stamp}</published><updated>{stamp}</updated>"
            f"<author><name>Outlet {outlet} staff</name></author></entry>"
        )
    return (
        f'<item><guid isPermaLink="false">{guid}</guid><title>{title}</title><link>{link}</link>'
        f"<description>{summary}</description><pubDate>{format_datetime(when)}</pubDate>"
        f"<category>{story.slots['noun']}</category></item>"
    )


@dataclass
class Feed:
    index: int
    atom: bool
    items: list[str]  # rendered entries, newest first
    body: bytes = b""
    gzipped: bytes = b""
    etag: str = ""
    modified: str = ""

    def render(self, now: datetime) -> None:
        n = self.index
        if self.atom:
            doc = (
                '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
                f"<title>Outlet {n}</title><id>https://outlet{n}.example/</id>"
                f'<link href="https://outlet{n}.example/"/><updated>{now.isoformat()}</updated>'
                f"{''.join(self.items)}</feed>"
            )
        else:
            doc = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Outlet {n}</title><link>https://outlet{n}.example/</link>"
                f"<description>News from outlet {n}</description>{''.join(self.items)}"
                "</channel></rss>"
            )
        self.body = doc.encode()
        self.gzipped = gzip.compress(self.body, 6)  # once per version, never per request
        self.etag = '"' + hashlib.sha1(self.body).hexdigest()[:20] + '"'
        self.modified = format_datetime(now, usegmt=True)


class FeedSet:
    """N feeds of M items; a share of items are copies of wire stories carried by several."""

    def __init__(self, corpus: Corpus, count: int, items: int, syndicated: float) -> None:
        self.corpus, self.per_feed, self.syndicated = corpus, items, syndicated
        # Each wire story is carried by about four outlets on average.
        self.wire = [corpus.story() for _ in range(max(1, int(count * items * syndicated / 4)))]
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.generation = 0
        self.feeds = []
        for n in range(count):
            feed = Feed(n, atom=n % 5 == 4, items=self._new_items(n, items))
            feed.render(self.now)
            self.feeds.append(feed)

    def _new_items(self, n: int, k: int) -> list[str]:
        corpus, rng = self.corpus, self.corpus.rng
        out = []
        for i in range(k):
            if rng.random() < self.syndicated:
                story = corpus.copy(rng.choice(self.wire), f"Outlet {n}")
            else:
                story = corpus.story()
            when = self.now - timedelta(minutes=7 * i + rng.randint(0, 6))
            guid = f"o{n}-g{self.generation}-{i}"
            out.append(_item_xml(n % 5 == 4, n, guid, story, when))
        return out

    def change(self, share: float, new_items: int) -> list[int]:
        """New items at the top of `share` of the feeds, as many old ones off the bottom."""
        self.generation += 1
        self.now += timedelta(minutes=10)
        # Fresh wire stories too: the changed feeds carry copies of each other's new stories.
        self.wire = [self.corpus.story() for _ in range(max(1, len(self.wire) // 10))]
        picked = sorted(
            self.corpus.rng.sample(range(len(self.feeds)), int(len(self.feeds) * share))
        )
        for n in picked:
            feed = self.feeds[n]
            feed.items = (self._new_items(n, new_items) + feed.items)[: self.per_feed]
            feed.render(self.now)
        return picked


@dataclass
class ServerLog:
    """What the server saw during one run (wall-clock seconds, time.time())."""

    first_request: float | None = None
    last_response: float | None = None
    sent: dict[int, float] = field(default_factory=dict)  # feed -> its last response sent
    statuses: dict[int, int] = field(default_factory=dict)
    bytes_sent: int = 0


class FeedServer:
    def __init__(self, feeds: FeedSet) -> None:
        self.feeds = feeds
        self.log = ServerLog()
        self.sink: list[float] = []
        self.max_age: int | None = 300  # Cache-Control max-age; None: no Cache-Control

    async def handle(self, request: web.Request) -> web.StreamResponse:
        log = self.log
        if log.first_request is None:
            log.first_request = time.time()
        feed = self.feeds.feeds[int(request.match_info["n"])]
        headers = {"ETag": feed.etag, "Last-Modified": feed.modified}
        if self.max_age is not None:  # newsmon stretches a feed's interval up to max-age
            headers["Cache-Control"] = f"max-age={self.max_age}"
        tag = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        fresh = tag == feed.etag if tag is not None else since == feed.modified
        if fresh:
            response = web.Response(status=304, headers=headers)
        elif "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
            response = web.Response(body=feed.gzipped, headers=headers)
        else:
            response = web.Response(body=feed.body, headers=headers)
        if not fresh:
            response.content_type = "application/atom+xml" if feed.atom else "application/rss+xml"
            response.charset = "utf-8"
        await response.prepare(request)
        await response.write_eof()  # the whole response is handed to the kernel
        log.last_response = log.sent[feed.index] = time.time()
        log.statuses[response.status] = log.statuses.get(response.status, 0) + 1
        log.bytes_sent += response.body_length
        return response

    async def receive(self, request: web.Request) -> web.Response:
        await request.read()
        self.sink.append(time.time())
        return web.json_response({})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(feeds: Handler, sink: Handler, hosts: int) -> tuple[web.AppRunner, list[str], str]:
    """Serve `feeds` (GET /feed/N.xml) on `hosts` loopback addresses and `sink` (POST /sink)
    on 127.0.0.1 too; returns the runner, the feed base URLs and the sink's host:port."""
    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feeds)
    app.router.add_post("/sink", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bases = []
    for h in range(hosts):
        site = web.TCPSite(runner, f"127.0.0.{2 + h}", 0, backlog=1024)
        await site.start()
        bases.append(f"http://127.0.0.{2 + h}:{runner.addresses[-1][1]}")
    sink = web.TCPSite(runner, "127.0.0.1", 0)
    await sink.start()
    return runner, bases, f"127.0.0.1:{runner.addresses[-1][1]}"


def feed_url(bases: list[str], n: int) -> str:
    return f"{bases[n % len(bases)]}/feed/{n}.xml"


# --- config ----------------------------------------------------------------------------------


def write_config(
    path: Path, db: Path, urls: list[str], rules: list[dict[str, object]],
    aliases: dict[str, list[str]], sink: str, per_host: int, tags: int,
) -> None:  # fmt: skip
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    lines = [
        f"database: {q(f'sqlite:///{db}')}",
        "http:",
        "  allow_private_networks: true   # the bench server is on 127.0.0.x",
        "  concurrency: 100",
        f"  per_host: {per_host}",
        "polling:",
        "  interval: 10m",
        "  backlog_window: 7d   # items are hours old: the cold run alerts, as a new install would",
        "aliases:",
        *(f"  {name}: [{', '.join(q(t) for t in terms)}]" for name, terms in aliases.items()),
        "feeds:" if urls else "feeds: []",
        *(
            f"  - {{name: f{n}, url: {q(url)}, tags: [region{n % tags}]}}"
            for n, url in enumerate(urls)
        ),
        "channels:",
        f"  sink: {{url: {q(f'json://{sink}/sink')}}}",
        "rules:" if rules else "rules: []",
        *(f"  - {q(rule)}" for rule in rules),  # JSON objects are YAML flow mappings
    ]
    path.write_text("\n".join(lines) + "\n")


# --- running a process -----------------------------------------------------------------------


@dataclass
class Proc:
    wall: float
    out: str
    cpu: float  # user + system seconds of the process and its waited-for children
    peak_rss_mb: float  # the largest single process
    peak_pss_mb: float  # the whole tree, shared pages counted once
    started: float  # time.time() at spawn
    err: str = ""  # standard error (the log)


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                text = Path(f"/proc/{pids[i]}/task/{task}/children").read_text()
                pids.extend(int(p) for p in text.split())
        i += 1
    return pids


def _memory(pids: list[int]) -> tuple[float, float]:
    rss, pss = 0.0, 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss = max(rss, int(line.split()[1]) / 1024)
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
    return rss, pss


async def run_process(argv: list[str], limit_s: float, env: dict[str, str] | None = None) -> Proc:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, clock = time.time(), time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO, env=env
    )
    peak_rss = peak_pss = 0.0

    async def sample() -> None:
        nonlocal peak_rss, peak_pss
        while True:
            rss, pss = await asyncio.to_thread(_memory, _tree(proc.pid))
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SystemExit(f"{argv[:4]}... ran past {limit_s:.0f} s and was stopped") from None
    finally:
        sampler.cancel()
    wall = time.perf_counter() - clock
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:6])}... failed ({proc.returncode}):\n{err.decode()[-3000:]}"
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Proc(wall, out.decode().strip(), cpu, peak_rss, peak_pss, started, err.decode())


def newsmon_argv(config: Path, level: str = "ERROR", profile: Path | None = None) -> list[str]:
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return [sys.executable, *prof, "-m", "monitor", "--config", str(config),
            "--log-level", level, "poll", "--once"]  # fmt: skip


# --- reading the outcome ---------------------------------------------------------------------

PROBE = """
CREATE TABLE IF NOT EXISTS bench_alert_inserted (alert_id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS bench_alert_inserted AFTER INSERT ON alerts BEGIN
    INSERT INTO bench_alert_inserted VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0);
END;
"""


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Latency:
    alerts: int
    to_outbox: list[float]  # seconds, response sent -> alert row inserted
    created_before_response: int  # alerts whose `created` precedes their feed's response


def alert_latency(db: Path, after_id: int, log: ServerLog) -> tuple[Latency, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT a.id, i.feed, a.created, b.at FROM alerts a JOIN items i ON i.id = a.item_id "
            "JOIN bench_alert_inserted b ON b.alert_id = a.id WHERE a.id > ?",
            (after_id,),
        ).fetchall()
    lat, early, last = [], 0, after_id
    for alert_id, feed, created, inserted in rows:
        last = max(last, alert_id)
        sent = log.sent.get(int(feed[1:]))
        if sent is None:
            continue
        lat.append(inserted - sent)
        early += _utc(created) < sent
    return Latency(len(rows), lat, early), last


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- the runs --------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    wall: float
    span: float  # first request -> process exit: the poll without start-up
    new_items: int
    proc: Proc | None = None
    latency: Latency | None = None
    summary: str = ""
    statuses: dict[int, int] = field(default_factory=dict)


def _new_items(summary: str) -> int:
    found = re.search(r"(\d+) new items", summary)
    return int(found.group(1)) if found else 0


async def run_newsmon(
    label: str, server: FeedServer, config: Path, last_alert: int, args: argparse.Namespace
) -> tuple[Result, int]:
    """One `newsmon poll --once`; its log goes to newsmon-<label>.log beside the config."""
    server.log = log = ServerLog()
    proc = await run_process(newsmon_argv(config, args.log_level), args.timeout)
    slug = re.sub(r"\W+", "-", label).strip("-")
    await asyncio.to_thread((config.parent / f"newsmon-{slug}.log").write_text, proc.err)
    db = config.parent / "newsmon.db"
    latency, last_alert = await asyncio.to_thread(alert_latency, db, last_alert, log)
    span = proc.started + proc.wall - (log.first_request or proc.started)
    result = Result(label, proc.wall, span, _new_items(proc.out), proc, latency, proc.out,
                    dict(log.statuses))  # fmt: skip
    return result, last_alert


async def run_peer(
    label: str, server: FeedServer, python: str, db: Path, urls: Path, add: bool, limit_s: float
) -> Result:
    server.log = log = ServerLog()
    argv = [python, str(PEER_SCRIPT), "--db", str(db), "--urls", str(urls), *(["--add"] * add)]
    # reader's environment only: nothing of newsmon's venv leaks into the peer.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp"}
    proc = await run_process(argv, limit_s, env=env)
    d = json.loads(proc.out.splitlines()[-1])
    summary = (
        f"reader {d['reader']}: import {d['import_s']:.2f} s, setup {d['setup_s']:.2f} s, "
        f"update_feeds {d['update_s']:.2f} s, {d['new_entries']} new entries, "
        f"{d['broken_feeds']} broken feeds"
    )
    statuses = dict(log.statuses)
    return Result(label, proc.wall, d["update_s"], d["new_entries"], proc, None, summary, statuses)


def report(result: Result, feeds: int) -> None:
    p = result.proc
    assert p is not None
    rate = f"{result.new_items / result.wall:7.0f}" if result.new_items else "      -"
    print(f"  {result.label:18} {result.wall:6.2f} s  {feeds / result.wall * 60:7.0f} feeds/min  "
          f"{rate} items/s  poll span {result.span:6.2f} s  CPU {p.cpu:6.2f} s  "
          f"peak RSS {p.peak_rss_mb:4.0f} MB (tree PSS {p.peak_pss_mb:4.0f} MB)")  # fmt: skip
    print(f"      responses {dict(sorted(result.statuses.items()))}; {result.summary}")
    lat = result.latency
    if lat is not None and lat.to_outbox:
        ms = [v * 1000 for v in lat.to_outbox]
        early = f"{lat.created_before_response}/{lat.alerts}"
        print(
            f"      response -> alert in outbox ({len(ms)} alerts): p50 {pct(ms, 50):.0f} ms  "
            f"p99 {pct(ms, 99):.0f} ms  max {max(ms):.0f} ms; alerts.created precedes the "
            f"response in {early} (it is the poll's start)"
        )


def setup_peer(python: str) -> None:
    venv = Path(python).parents[1]
    print(f"creating {venv} with reader and sgmllib3k (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "reader", "sgmllib3k"], check=True)


def stage_costs(
    feeds: FeedSet, corpus: Corpus, rules: list[dict[str, object]], sample: int
) -> None:
    """In-process cost of what the parse workers and the matcher do, on this corpus."""
    from monitor.model import DedupePolicy, Rule
    from monitor.parse import parse_feed
    from monitor.pipeline import fingerprints
    from monitor.rules import compile_rules

    chosen = feeds.feeds[:sample]
    t = time.process_time()
    parsed = [parse_feed(f.body, feed=f"f{f.index}", url=f"http://x/{f.index}") for f in chosen]
    parse_s = time.process_time() - t
    items = [i for p in parsed for i in p.items]
    policy = DedupePolicy(timedelta(days=7), 0.3, 40)
    t = time.process_time()
    for p in parsed:
        fingerprints(p.items, policy)
    print_s = time.process_time() - t
    ruleset = compile_rules(
        [Rule(str(r["name"]), str(r["query"])) for r in rules], corpus.aliases()
    )
    t = time.process_time()
    hits = sum(len(ruleset.match(i)) for i in items)
    match_s = time.process_time() - t
    n, f = len(items), len(chosen)
    print(
        f"  stage costs, in process, CPU, {f} feeds / {n} items: parse_feed "
        f"{parse_s / f * 1000:.1f} ms/feed ({parse_s / n * 1e6:.0f} µs/item), fingerprints "
        f"{print_s / n * 1e6:.0f} µs/item, RuleSet.match {match_s / n * 1e6:.0f} µs/item "
        f"({hits} matches; rules' feed filters ignored)"
    )


def show_profile(path: Path, top: int) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    for key in ("tottime", "cumulative"):
        print(f"  cProfile of the cold run, main process, top {top} by {key} ({path}):")
        stats.sort_stats(key).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=8, help="loopback addresses serving feeds")
    parser.add_argument("--per-host", type=int, default=0, help="http.per_host (0: 100/hosts)")
    parser.add_argument("--changed", type=float, default=0.05, help="share of feeds changed")
    parser.add_argument("--new-per-change", type=int, default=0, help="0: a fifth of --items")
    parser.add_argument("--syndicated", type=float, default=0.2, help="share of wire copies")
    parser.add_argument("--peer-python", default="/tmp/reader-venv/bin/python")
    parser.add_argument("--setup-peer", action="store_true", help="create --peer-python's venv")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile a second cold run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per process")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--log-level", default="ERROR", help="newsmon's; INFO logs every poll (kept with --keep)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not 1 <= args.hosts <= 200:
        parser.error("--hosts: 1 to 200 loopback addresses")
    if args.setup_peer and not Path(args.peer_python).exists():
        setup_peer(args.peer_python)
    if not args.skip_peer and not Path(args.peer_python).exists():
        parser.error(f"{args.peer_python} missing: pass --setup-peer, or --skip-peer")
    work = Path(tempfile.mkdtemp(prefix="newsmon-speed-"))
    try:
        asyncio.run(bench(args, work))
    finally:
        if args.keep or args.profile:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work)


async def bench(args: argparse.Namespace, work: Path) -> None:
    peer = not args.skip_peer
    per_host = args.per_host or -(-100 // args.hosts)
    tags = 10

    t = time.perf_counter()
    corpus = Corpus(args.seed)
    feeds = FeedSet(corpus, args.feeds, args.items, args.syndicated)
    rules = [corpus.rule(i, tags) for i in range(args.rules)]
    size = sum(len(f.body) for f in feeds.feeds) / len(feeds.feeds)
    zipped = sum(len(f.gzipped) for f in feeds.feeds) / len(feeds.feeds)
    print(
        f"{args.feeds} feeds x {args.items} items ({size / 1024:.0f} KB a feed, "
        f"{zipped / 1024:.0f} KB gzipped; {args.syndicated:.0%} wire copies), "
        f"{len(rules)} rules, {args.hosts} hosts, per_host {per_host}; generated in "
        f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.1f} (other work on the machine inflates wall times)"
    )

    server = FeedServer(feeds)
    runner, bases, sink = await serve(server.handle, server.receive, args.hosts)
    urls = [feed_url(bases, n) for n in range(args.feeds)]
    try:
        await _runs(args, work, server, feeds, corpus, rules, urls, sink, per_host, tags, peer)
    finally:
        await runner.cleanup()


async def _runs(
    args: argparse.Namespace, work: Path, server: FeedServer, feeds: FeedSet, corpus: Corpus,
    rules: list[dict[str, object]], urls: list[str], sink: str, per_host: int, tags: int,
    peer: bool,
) -> None:  # fmt: skip
    limit_s = args.timeout
    db, config, prime = work / "newsmon.db", work / "bench.yaml", work / "prime.yaml"
    reader_db, url_file = work / "reader.db", work / "urls.txt"
    write_config(prime, db, [], [], {}, sink, per_host, tags)
    write_config(config, db, urls, rules, corpus.aliases(), sink, per_host, tags)
    url_file.write_text("\n".join(urls) + "\n")

    migrated = await run_process(newsmon_argv(prime), limit_s)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(PROBE)
    print(f"  zero-feed run (start-up + migrations, not counted below): {migrated.wall:.2f} s")

    ours: dict[str, Result] = {}
    theirs: dict[str, Result] = {}
    last = 0
    print("newsmon poll --once (a fresh process each run):")
    for label in ("cold", "warm (all 304)"):
        ours[label], last = await run_newsmon(label, server, config, last, args)
        report(ours[label], args.feeds)
    if peer:
        print(f"reader ({args.peer_python}, update_feeds(workers=16), a fresh process each):")
        for label, add in (("cold", True), ("warm (all 304)", False)):
            theirs[label] = await run_peer(
                label, server, args.peer_python, reader_db, url_file, add, limit_s
            )
            report(theirs[label], args.feeds)

    changed = f"{args.changed:.0%} changed"
    fresh = args.new_per_change or max(1, args.items // 5)
    picked = feeds.change(args.changed, fresh)
    print(f"{changed}: {len(picked)} feeds with {fresh} new items each")
    ours[changed], last = await run_newsmon(changed, server, config, last, args)
    report(ours[changed], args.feeds)
    if peer:
        theirs[changed] = await run_peer(
            changed, server, args.peer_python, reader_db, url_file, False, limit_s
        )
        report(theirs[changed], args.feeds)

    if peer:
        print(
            "newsmon / reader (below 1: newsmon faster; wall = whole process, span = "
            "newsmon's first request to exit vs reader's update_feeds call):"
        )
        for label, mine in ours.items():
            o = theirs[label]
            print(
                f"  {label:18} wall {mine.wall / o.wall:5.2f}  span {mine.span / o.span:5.2f}"
                f"  ({mine.wall:.2f} s / {o.wall:.2f} s; {mine.span:.2f} s / {o.span:.2f} s)"
            )
    print(f"sink received {len(server.sink)} deliveries; load average {os.getloadavg()[0]:.1f}")

    if args.profile:
        stage_costs(feeds, corpus, rules, min(100, args.feeds))
        db2, config2 = work / "profiled.db", work / "profiled.yaml"
        write_config(config2, db2, urls, rules, corpus.aliases(), sink, per_host, tags)
        await run_process(newsmon_argv(config2, args.log_level, work / "cold.prof"), limit_s)
        show_profile(work / "cold.prof", 25)


if __name__ == "__main__":
    main()
