"""Stories with the real `newsmon` program: copies of one story, from hostile and racing feeds.

- Two replicas on one PostgreSQL poll two feeds that carry reworded copies of one story (other
  URL, other headline, most of the body shared) at the same moment: one alert, and `newsmon
  stories` names both outlets. The feed server holds both answers until both requests are in
  flight, and each replica polls one feed at a time (`http.concurrency: 1`), so the two polls
  are provably concurrent and made by the two processes.
- A feed that rotates every GUID on every poll (and repeats one within a document), polled five
  times by `newsmon poll --once`: one alert per matching story, whatever the number of polls.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import asyncpg
import pytest
from aiohttp import web

from monitor.store import Store
from tests.support.daemon import newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver
from tests.test_replicas import daemons, eventually, plain_dsn

pytestmark = pytest.mark.slow

RULE = "evin-prison-news"

# 88 words; the copies below share well over 40 of them in order (the near-duplicate minimum).
ARTICLE = (
    "Firefighters were called to Evin prison in northern Tehran late on Saturday after smoke "
    "was seen rising from the political wing, according to witnesses and a statement from the "
    "judiciary. The judiciary said the fire had been brought under control within two hours "
    "and that no inmates had escaped. Families of detainees gathered outside the main gate "
    "through the night asking for news of relatives held there. Rights groups called for an "
    "independent inquiry into the cause of the blaze and into reports of gunfire heard inside "
    "the compound."
)


def rss(entries: list[tuple[str, str, str | None, str]], published: datetime) -> bytes:
    """An RSS document of (guid, title, link, description) entries, all `published`."""
    parts = []
    for guid, title, link, text in entries:
        href = f"<link>{escape(link)}</link>" if link else ""
        parts.append(
            f"<item><guid isPermaLink='false'>{escape(guid)}</guid><title>{escape(title)}</title>"
            f"{href}<description>{escape(text)}</description>"
            f"<pubDate>{format_datetime(published)}</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>Feed</title><link>https://feed.example/</link>"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


def config_text(database: str, feeds: dict[str, str], hook: str, extra: str = "") -> str:
    lines = "".join(f"  - name: {name}\n    url: {url}\n" for name, url in feeds.items())
    return (
        f"database: {database}\n"
        "http:\n  timeout: 30s\n  allow_private_networks: true\n" + extra + "polling:\n"
        "  interval: 2s\n  backlog_window: 24h\n"
        f"feeds:\n{lines}"
        f"channels:\n  hook:\n    url: {hook}\n"
        f"rules:\n  - name: {RULE}\n    query: '\"evin prison\"'\n"
    )


# --- two replicas, two copies, one moment ------------------------------------------------------

WIRE = ("wire-evin-1", "Fire breaks out at Tehran's Evin prison", "https://wire.example/evin-fire")
PAPER = (
    "paper-0192",
    "Blaze at notorious Iranian jail as families wait outside",
    "https://www.paper.example/world/2026/iran-jail-blaze?utm_source=rss&utm_medium=feed",
)
PAPER_TEXT = (
    "By our correspondent\n"
    + ARTICLE.replace("late on Saturday", "on Saturday night").replace("two hours", "hours")
    + "\nSign up for our newsletter to get the top stories in your inbox."
)


class Together:
    """Two feeds whose new documents are answered only once both were asked for.

    Before `arm()` each path serves its old document at once. After it, a request waits until
    the other path was requested too (at most `wait` seconds), then both get the new
    documents: the two polls are in flight together and their bodies arrive together.
    """

    def __init__(self, server: FeedServer, old: dict[str, bytes], wait: float = 20.0) -> None:
        self.bodies = dict(old)
        self.asked: set[str] = set()
        self.met = asyncio.Event()  # both were in flight at once
        self._armed = False
        self._wait = wait
        for path in old:
            server.route(path, self._serve)

    def arm(self, new: dict[str, bytes]) -> None:
        self._new = new
        self._armed = True

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self._armed:
            self.asked.add(path)
            if self.asked >= self.bodies.keys():
                self.met.set()
            try:
                await asyncio.wait_for(self.met.wait(), self._wait)
            except TimeoutError:
                pass
            body = self._new[path]
        else:
            body = self.bodies[path]
        return web.Response(body=body, content_type="application/rss+xml")


@pytest.mark.postgres
async def test_two_replicas_polling_two_copies_at_once_send_one_alert(
    pg_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    old = [("old-1", "Weather in Tehran", None, "Sunny, 31 degrees.")]
    async with FeedServer() as server, HookReceiver() as hook:
        feeds = Together(
            server,
            {
                "/wire.xml": rss(old, now - timedelta(days=3)),
                "/paper.xml": rss(old, now - timedelta(days=3)),
            },
        )
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            config_text(
                pg_url,
                {"wire": server.url("/wire.xml"), "paper": server.url("/paper.xml")},
                hook.url(),
                # One poll in flight per replica: two polls in flight at once are two replicas.
                "  concurrency: 1\nweb:\n  enabled: false\n",
            )
        )
        async with daemons(config, tmp_path, 2) as replicas:
            # Both feeds polled (the baseline: nothing alerted), by whichever replica.
            log = replicas[0].text
            assert await eventually(lambda: server.hits("/wire.xml") >= 2, 40), log()[-3000:]
            assert await eventually(lambda: server.hits("/paper.xml") >= 2, 20)
            published = datetime.now(UTC) - timedelta(minutes=2)
            feeds.arm(
                {
                    "/wire.xml": rss([*old, (*WIRE, ARTICLE)], published),
                    "/paper.xml": rss([*old, (*PAPER, PAPER_TEXT)], published),
                }
            )
            await asyncio.wait_for(feeds.met.wait(), 30)
            posts = await hook.wait_for(1, timeout=30)
            assert len(posts) == 1, [r.text()[-2000:] for r in replicas]
            # More polls and outbox ticks on both replicas: still one.
            await asyncio.sleep(6)
            assert len(hook.posts) == 1, [p.body["title"] for p in hook.posts]
            assert posts[0].body["title"] in (WIRE[1], PAPER[1])
            for replica in replicas:
                assert await replica.stop(signal.SIGTERM) == 0, replica.text()[-3000:]

    conn = await asyncpg.connect(plain_dsn(pg_url), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT feed, story FROM items WHERE guid = ANY($1::text[])", [WIRE[0], PAPER[0]]
        )
        assert {r["feed"] for r in rows} == {"wire", "paper"}
        assert len({r["story"] for r in rows}) == 1  # the second copy joined the first's story
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1
    finally:
        await conn.close()

    code, out, err = await newsmon(config, "stories")
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if WIRE[1] in line or PAPER[1] in line]
    # "first seen | items | reported by | title": the first outlet, then the other.
    cells = [cell.strip() for cell in line.split("  ") if cell.strip()]
    assert "2" in cells, line
    reported = next(cell for cell in cells if "wire" in cell)
    assert "paper" in reported, line


# --- a feed that rotates every GUID ------------------------------------------------------------

LONG = ("Fire at Evin prison brought under control", "https://rot.example/evin-fire", ARTICLE)
# Short, title-only items: below the near-duplicate minimum, they join by exact keys only.
TRACKED = ("Evin prison visits suspended for a week", "https://rot.example/evin-visits")
LINKLESS = "Evin prison: lawyers denied access to detainees"
OTHER = ("Football results from the Tehran derby", "https://rot.example/derby")


def rotated(poll: int, published: datetime) -> bytes:
    """The same four stories under new GUIDs on every poll; the long one twice (one GUID)."""
    tracked = f"{TRACKED[1]}?utm_source=rss&utm_campaign=poll-{poll}&fbclid=IwAR{poll}x"
    long_item = (f"{poll}-a", LONG[0], LONG[1], LONG[2])
    return rss(
        [
            long_item,
            (f"{poll}-b", TRACKED[0], tracked, ""),
            (f"{poll}-c", LINKLESS, None, ""),
            (f"{poll}-d", OTHER[0], OTHER[1], "Esteghlal and Persepolis drew 1-1."),
            long_item,  # a GUID repeated within the document
        ],
        published,
    )


async def test_a_feed_rotating_every_guid_alerts_once_per_story(
    store_url: str, tmp_path: Path
) -> None:
    published = datetime.now(UTC) - timedelta(minutes=5)
    polls = 0

    async with FeedServer() as server, HookReceiver() as hook:

        async def serve(request: web.Request) -> web.StreamResponse:
            nonlocal polls
            polls += 1
            return web.Response(body=rotated(polls, published), content_type="application/rss+xml")

        server.route("/rotating.xml", serve)
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            config_text(store_url, {"rotating": server.url("/rotating.xml")}, hook.url())
        )
        for _ in range(5):
            code, out, err = await newsmon(config, "poll", "--once")
            assert code == 0, err
            assert "4 new items" in out, out + err  # stored under their new GUIDs ...
        assert polls == 5
        await asyncio.sleep(0.3)
        titles = sorted(p.body["title"] for p in hook.posts)
    # ... and recognised: by URL (tracking parameters dropped), by text (no link, short),
    # by text and near-duplicate (the long one).
    assert titles == sorted([LONG[0], TRACKED[0], LINKLESS]), titles

    async with await Store.open(store_url) as store:
        counts = await store.counts()
        stories = await store.stories()
    assert counts["items"] == 4 * 5 and counts["alerts"] == 3
    assert sorted(s.items for s in stories) == [5, 5, 5, 5]
