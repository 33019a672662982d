"""Hostile servers, through real `newsmon` processes: each fault is one logged reason on its feed.

tests/test_fetch.py proves each limit on the fetcher alone; here the same faults meet the whole
daemon: a bomb, an endless body, a trickle and a silent server next to a good feed (which must
keep its schedule), every error status, Retry-After in both forms, moves (301/308: the new URL is
used and logged) and 410 (the feed is disabled, and says so once), redirect loops and chains,
and redirects into private address space, for feeds and for article pages.

Every server is on 127.0.0.1 or ::1. The address-guard tests allow only ::1 (where a front server
stands) and prove that nothing reaches the "victim" server on 127.0.0.1, whichever way a
redirect or an article link spells its address.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from monitor.store import Store
from tests.support.daemon import start_newsmon
from tests.support.feedserver import FeedServer
from tests.test_hostile_feeds import FEED, item, newsmon, rss

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def lines_for(err: str, feed: str) -> list[str]:
    """The log lines about `feed`, values unquoted (the log quotes values holding spaces)."""
    return [line.replace('"', "") for line in err.splitlines() if f"feed={feed} " in line]


def next_poll(line: str) -> datetime:
    found = re.search(r"next=(\S+)", line)
    assert found, line
    return datetime.fromisoformat(found.group(1))


def config_text(db: Path, feeds: dict[str, str], *, http: str, extra: str = "") -> str:
    listed = "".join(f"  - name: {name}\n    url: {url}\n{extra}" for name, url in feeds.items())
    return (
        f"database: sqlite:///{db}\nhttp: {http}\npolling: {{interval: 1s}}\n"
        f"feeds:\n{listed}channels:\n  console: {{url: 'console://'}}\n"
    )


# --- bodies, statuses, moves: one `poll --once` process over many feeds ------------------------


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with FeedServer() as running:
        yield running


async def test_faults_and_statuses_through_poll_once(server: FeedServer, tmp_path: Path) -> None:
    cap = 1_000_000
    server.add("/good", FEED)
    server.add("/bomb", gzip.compress(bytes(50_000_000)), headers={"Content-Encoding": "gzip"})
    server.endless("/endless")
    server.add("/missing", b"<html>not found</html>", status=404, content_type="text/html")
    server.add("/gone", b"", status=410)
    server.add("/limited", b"", status=429, headers={"Retry-After": "120"})
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server.add("/busy", b"", status=503, headers={"Retry-After": later})
    server.add("/broken", b"", status=500)
    server.redirect("/moved", "/moved-here", 301)
    server.add("/moved-here", FEED)
    server.redirect("/moved-308", "/moved-308-here", 308)
    server.add("/moved-308-here", FEED)
    server.redirect("/loop-a", "/loop-b", 302)
    server.redirect("/loop-b", "/loop-a", 302)
    for hop in range(6):
        server.redirect(f"/chain{hop}", f"/chain{hop + 1}", 302)
    server.add("/chain6", FEED)
    server.redirect("/to-ftp", "ftp://127.0.0.1/feed.xml")
    names = [
        "good", "bomb", "endless", "missing", "gone", "limited", "busy", "broken", "moved",
        "moved-308", "loop-a", "chain0", "to-ftp",
    ]  # fmt: skip
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        config_text(
            tmp_path / "db.sqlite",
            {name: server.url(f"/{name}") for name in names},
            http=f"{{allow_private_networks: true, max_body: {cap}, timeout: 10s}}",
        )
    )
    started = time.monotonic()
    code, _out, err = await newsmon(config, "poll", "--once")
    assert code == 0, err
    assert time.monotonic() - started < 30
    assert "Traceback" not in err and "internal error" not in err, err

    def reason(feed: str, text: str) -> str:
        found = [line for line in lines_for(err, feed) if text in line]
        assert found, (feed, lines_for(err, feed))
        return found[0]

    assert "polled feed=good status=200 new=2" in "\n".join(lines_for(err, "good"))
    reason("bomb", f"error=body larger than {cap} bytes")
    reason("endless", f"error=body larger than {cap} bytes")
    reason("missing", "status=404 error=HTTP 404 Not Found")
    reason("broken", "status=500 error=HTTP 500 Internal Server Error")
    disabled = [line for line in lines_for(err, "gone") if "feed disabled feed=gone " in line]
    assert len(disabled) == 1 and "410" in disabled[0], lines_for(err, "gone")
    now = datetime.now(UTC)
    limited = next_poll(reason("limited", "status=429"))
    assert timedelta(seconds=100) < limited - now < timedelta(minutes=10)
    busy = next_poll(reason("busy", "status=503"))
    assert timedelta(minutes=55) < busy - now < timedelta(hours=2)
    reason("loop-a", f"error=redirect loop at {server.url('/loop-a')}")
    reason("chain0", "error=too many redirects (more than 5)")
    assert server.hits("/chain6") == 0
    reason("to-ftp", "error=redirect to unsupported scheme 'ftp'")
    reason("moved", f"feed moved permanently feed=moved url={server.url('/moved-here')}")
    reason("moved-308", f"url={server.url('/moved-308-here')}")

    # A second run: the moved feeds go straight to their new URLs; the gone feed is not asked
    # again and its disabling is not logged again.
    server.reset()
    code, _out, err = await newsmon(config, "poll", "--once")
    assert code == 0, err
    assert server.hits("/moved") == server.hits("/moved-308") == 0
    assert server.hits("/moved-here") == server.hits("/moved-308-here") == 1
    assert server.hits("/gone") == 0
    assert not lines_for(err, "gone"), err
    store = await Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        states = {s.name: s for s in await store.feed_states()}
    finally:
        await store.close()
    assert states["gone"].disabled_reason is not None
    assert "410" in states["gone"].disabled_reason
    assert states["moved"].url == server.url("/moved-here")


# --- slow servers next to a good feed: a real `newsmon run` -------------------------------------


async def test_slow_servers_are_cut_at_the_deadline_and_others_keep_their_schedule(
    server: FeedServer, tmp_path: Path
) -> None:
    timeout = 10
    polls: list[tuple[float, int]] = []  # each poll of the good feed: when, requests in flight

    async def good(request: web.Request) -> web.StreamResponse:
        polls.append((time.monotonic(), server.in_flight))  # in_flight counts this one too
        return web.Response(body=FEED, headers={"Content-Type": "application/rss+xml"})

    server.route("/good", good)
    server.slow("/trickle", FEED * 50, bytes_per_second=1)  # one byte a second
    server.hang("/silent")
    feeds = {
        # The same server under another host name: the slow feeds hold both of 127.0.0.1's
        # per-host slots (per_host 2) for the whole deadline, which the good feed must not
        # need. What this test proves is that the scheduler never waits for slow polls.
        "good": server.url("/good", host="localhost"),
        "trickle": server.url("/trickle"),
        "silent": server.url("/silent"),
    }
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        config_text(
            tmp_path / "db.sqlite",
            feeds,
            http=f"{{allow_private_networks: true, timeout: {timeout}s, per_host: 2}}",
        )
    )
    proc = await start_newsmon(config, "run")
    try:
        deadline = time.monotonic() + 30
        while not (server.hits("/trickle") and server.hits("/silent")):
            assert time.monotonic() < deadline, "the slow feeds were never polled"
            await asyncio.sleep(0.05)
        slow_since = time.monotonic()  # both slow requests are held from here to the deadline
        await asyncio.sleep(timeout + 0.5)
    finally:
        proc.terminate()
        _out, raw = await asyncio.wait_for(proc.communicate(), 60)
    err = raw.decode()
    assert proc.returncode == 0, err
    # While both slow requests were held, the good feed (interval 1 s, polled on each 2 s tick)
    # was polled about five times. A scheduler that waited for the slow polls would poll it at
    # most once in that window, and leave a gap as long as the deadline.
    window = [(when, busy) for when, busy in polls if slow_since <= when <= slow_since + timeout]
    assert len(window) >= 3, (polls, slow_since)
    assert sum(1 for _when, busy in window if busy >= 3) >= 3, window  # both slow ones in flight
    times = [slow_since, *(when for when, _busy in window), slow_since + timeout]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < timeout * 0.6, gaps
    for feed in ("trickle", "silent"):
        failures = [line for line in lines_for(err, feed) if "poll failed" in line]
        assert failures and all(f"error=timeout after {timeout}s" in line for line in failures), err
    assert "Traceback" not in err


# --- the address guard, for feeds and for article pages ------------------------------------------


def _addresses_of(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    except OSError:
        return set()


# The daemon resolves with the system's resolver, which no test can replace in another process.
# Where `localhost` also answers ::1, the network these tests allow, the daemon would rightly
# connect there instead of refusing; tests/test_fetch.py proves names with a test resolver.
LOCALHOST_ONLY_V4 = _addresses_of("localhost") == {"127.0.0.1"}


async def poll_behind_front(
    victim: FeedServer, tmp_path: Path, targets: dict[str, str]
) -> tuple[str, dict[str, str], FeedServer]:
    """`newsmon poll --once` with ::1 the only network allowed, where a front server stands.

    Each target gets a feed whose URL 302s there, and two items of a `full_text` feed: one
    linking to it, one linking to the same redirector. Returns the log, each target's
    redirector URL and the (closed) front server, whose record of requests stays readable.
    """
    async with FeedServer(host="::1") as front:
        via = {}
        for name, target in targets.items():
            front.redirect(f"/{name}", target, 302)
            via[name] = front.url(f"/{name}")
        links = "".join(
            item(name, f"Story {name}", link=target)
            + item(f"{name}-via", f"Story {name}, redirected", link=via[name])
            for name, target in targets.items()
        )
        front.add("/articles", rss(links))
        listed = "".join(f"  - {{name: {name}, url: '{url}'}}\n" for name, url in via.items())
        articles = f"  - {{name: articles, url: '{front.url('/articles')}', full_text: true}}\n"
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: false, allow_networks: ['::1/128']}\n"
            f"feeds:\n{listed}{articles}channels:\n  console: {{url: 'console://'}}\n"
        )
        code, _out, err = await newsmon(config, "poll", "--once")
    assert code == 0, err
    assert "Traceback" not in err, err
    return err, via, front


def assert_refused(
    err: str, targets: dict[str, str], via: dict[str, str], refusals: dict[str, str]
) -> None:
    """Each feed failed with its refusal, and so did both article pages leading to its target."""
    pages = [line for line in lines_for(err, "articles") if "article fetch failed" in line]
    for name, refusal in refusals.items():
        polls = [line for line in lines_for(err, name) if "poll failed" in line]
        assert len(polls) == 1 and refusal in polls[0], (name, lines_for(err, name))
        for link in (targets[name], via[name]):
            found = [line for line in pages if f"url={link} " in line]
            assert len(found) == 1 and refusal in found[0], (name, link, pages)


async def test_private_addresses_are_refused_for_feeds_and_article_pages(
    server: FeedServer, tmp_path: Path
) -> None:
    victim = server  # on 127.0.0.1: any request arriving here is a guard failure
    victim.add("/secret", FEED)
    port = victim.port
    targets = {
        "v4": f"http://127.0.0.1:{port}/secret",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/secret",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "private": "http://10.0.0.1/feed.xml",
    }
    refusals = {
        "v4": "refused address 127.0.0.1 (loopback)",
        "mapped": "(loopback, as 127.0.0.1)",
        "metadata": "refused address 169.254.169.254 (link-local)",
        "private": "refused address 10.0.0.1 (private)",
    }
    err, via, front = await poll_behind_front(victim, tmp_path, targets)
    assert victim.requests == []
    # Every redirector was asked twice, as a feed and as an article page, and refused the hop.
    assert all(front.hits(f"/{name}") == 2 for name in targets), front.requests
    assert_refused(err, targets, via, refusals)


@pytest.mark.skipif(
    not LOCALHOST_ONLY_V4,
    reason=f"localhost resolves to {sorted(_addresses_of('localhost'))}, not only 127.0.0.1",
)
async def test_a_name_resolving_to_loopback_is_refused_for_feeds_and_article_pages(
    server: FeedServer, tmp_path: Path
) -> None:
    victim = server
    victim.add("/secret", FEED)
    targets = {"name": victim.url("/secret", host="localhost")}
    refusals = {"name": "refused address 127.0.0.1 (loopback) for host localhost"}
    err, via, front = await poll_behind_front(victim, tmp_path, targets)
    assert victim.requests == []
    assert front.hits("/name") == 2, front.requests
    assert_refused(err, targets, via, refusals)
