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
import re
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
    reason("gone", "feed disabled feed=gone")
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
    server.add("/good", FEED)
    server.slow("/trickle", FEED * 50, bytes_per_second=1)  # one byte a second
    server.hang("/silent")
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        config_text(
            tmp_path / "db.sqlite",
            {n: server.url(f"/{n}") for n in ("good", "trickle", "silent")},
            http="{allow_private_networks: true, timeout: 3s}",
        )
    )
    proc = await start_newsmon(config, "run")
    try:
        # While the two slow feeds hold their requests for 3 s each, the good feed (interval
        # 1 s, polled on each 2 s tick) is polled again and again: three more polls take about
        # 6 s. Were polls waiting for the slow feeds, each cycle would take 3 s more.
        deadline = time.monotonic() + 30
        while server.hits("/good") < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        first = time.monotonic()
        while server.hits("/good") < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.hits("/good") >= 4
        assert time.monotonic() - first < 12
        assert server.hits("/trickle") >= 1 and server.hits("/silent") >= 1
    finally:
        proc.terminate()
        _out, raw = await asyncio.wait_for(proc.communicate(), 60)
    err = raw.decode()
    assert proc.returncode == 0, err
    for feed in ("trickle", "silent"):
        failures = [line for line in lines_for(err, feed) if "poll failed" in line]
        assert failures and all("error=timeout after 3s" in line for line in failures), err
    assert "Traceback" not in err


# --- the address guard, for feeds and for article pages ------------------------------------------


class FrontServer:
    """A tiny server on [::1], the one network the daemon may reach in these tests."""

    def __init__(self) -> None:
        self.routes: dict[str, web.Response] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> FrontServer:
        async def dispatch(request: web.Request) -> web.StreamResponse:
            found = self.routes.get(request.path)
            if found is None:
                return web.Response(status=404)
            return web.Response(status=found.status, body=found.body, headers=dict(found.headers))

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "::1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://[::1]:{self.port}{path}"


async def test_private_addresses_are_refused_for_feeds_and_article_pages(
    server: FeedServer, tmp_path: Path
) -> None:
    victim = server  # on 127.0.0.1: any request arriving here is a guard failure
    victim.add("/secret", FEED)
    port = victim.port
    targets = {
        "v4": f"http://127.0.0.1:{port}/secret",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/secret",
        "name": f"http://localhost:{port}/secret",  # a host name that resolves to 127.0.0.1
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "private": "http://10.0.0.1/feed.xml",
    }
    refusals = {
        "v4": "refused address 127.0.0.1 (loopback)",
        "mapped": "(loopback, as 127.0.0.1)",
        "name": "refused address 127.0.0.1 (loopback) for host localhost",
        "metadata": "refused address 169.254.169.254 (link-local)",
        "private": "refused address 10.0.0.1 (private)",
    }
    now = datetime.now(UTC)
    async with FrontServer() as front:
        for name, target in targets.items():
            front.routes[f"/{name}"] = web.Response(status=302, headers={"Location": target})
        front.routes["/articles"] = web.Response(
            body=rss("".join(item(n, f"Story {n}", link=t) for n, t in targets.items())),
            headers={"Content-Type": "application/rss+xml"},
        )
        feeds = {name: front.url(f"/{name}") for name in targets}
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            config_text(
                tmp_path / "db.sqlite",
                feeds,
                http="{allow_private_networks: false, allow_networks: ['::1/128']}",
            )
            + "\n"
        )
        text = config.read_text().replace(
            "channels:",
            f"  - name: articles\n    url: {front.url('/articles')}\n    full_text: true\n"
            "channels:",
        )
        config.write_text(text)
        code, _out, err = await newsmon(config, "poll", "--once")
    assert code == 0, err
    assert victim.requests == []
    for name, refusal in refusals.items():
        feed_lines = [line for line in lines_for(err, name) if "poll failed" in line]
        assert feed_lines and refusal in feed_lines[0], (name, lines_for(err, name))
    article_lines = [line for line in lines_for(err, "articles") if "article fetch failed" in line]
    for name, refusal in refusals.items():
        host = targets[name].split("/")[2]
        found = [line for line in article_lines if host in line and refusal in line]
        assert found, (name, article_lines)
    assert datetime.now(UTC) - now < timedelta(seconds=60)
