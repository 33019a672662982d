"""The whole path with real parts: the `newsmon` process polls a local HTTP server and sends
alerts to a local webhook (apprise json://) and a local SMTP server (apprise mailto://).

Baseline poll sends nothing; new matching items send one alert each per channel; a re-poll
sends nothing; an unchanged feed is answered 304 and not parsed; the daemon stops on SIGTERM
with exit 0, and a restart sends nothing twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from tests.support.daemon import newsmon, start_newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver, MailReceiver

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Entry:
    guid: str
    title: str
    age: timedelta | None = timedelta(minutes=5)
    summary: str = ""


def rss(entries: list[Entry], now: datetime) -> bytes:
    parts = []
    for e in entries:
        date = f"<pubDate>{format_datetime(now - e.age)}</pubDate>" if e.age is not None else ""
        parts.append(
            f"<item><guid>{e.guid}</guid><title>{escape(e.title)}</title>"
            f"<link>https://news.example/{e.guid}?utm_source=rss</link>"
            f"<description>{escape(e.summary)}</description>{date}</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>Wire</title><link>https://news.example/</link>"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


OLD = [
    Entry("old-1", "Evin prison: families wait for news", age=timedelta(days=3)),
    Entry("old-2", "Undated note on Evin prison", age=None),
    Entry("old-3", "Weather in Tehran", age=timedelta(days=2)),
]
NEW = [
    Entry("new-1", "Fire reported at Evin Prison in Tehran"),
    Entry("new-2", "Iran's parliament ratifies strategic treaty with Russia"),
    Entry("new-3", "Football results"),
]


@dataclass
class World:
    server: FeedServer
    hook: HookReceiver
    mail: MailReceiver
    config: Path
    now: datetime


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    now = datetime.now(UTC)
    async with FeedServer() as server, HookReceiver() as hook:
        with MailReceiver() as mail:
            server.add("/wire.xml", rss(OLD, now))
            config = tmp_path / "newsmon.yaml"
            config.write_text(
                f"""
database: sqlite:///{tmp_path / "newsmon.db"}
http:
  timeout: 10s
  allow_private_networks: true   # the test feeds are on 127.0.0.1
polling:
  interval: 1s
  backlog_window: 24h
aliases:
  IRAN: [Iran, Iranian, Tehran, ایران]
feeds:
  - name: wire
    url: {server.url("/wire.xml")}
channels:
  hook:
    url: {hook.url("/hook")}
  mail:
    url: "mailto://127.0.0.1:{mail.port}?from=newsmon@example.org&to=desk@example.org"
rules:
  - name: evin-prison-news
    query: '"evin prison"'
  - name: iran-russia-treaty
    query: '@IRAN AND Russia AND (treaty OR pact) AND ratif*'
    channels: [hook]
"""
            )
            yield World(server, hook, mail, config, now)


async def test_poll_once_baseline_new_items_repoll_and_304(world: World) -> None:
    code, out, err = await newsmon(world.config, "poll", "--once")
    assert code == 0, err
    assert "polled 1 feeds: 3 new items" in out, out + err
    assert world.hook.posts == [] and world.mail.messages == []

    world.server.add("/wire.xml", rss(OLD + NEW, world.now))
    code, out, err = await newsmon(world.config, "poll", "--once")
    assert code == 0, err
    assert "3 new items" in out and "sent 3" in out, out + err
    posts = await world.hook.wait_for(2, timeout=5)
    mails = await world.mail.wait_for(1, timeout=5)
    assert len(posts) == 2 and len(mails) == 1
    texts = sorted(f"{p.body['title']}\n{p.body['message']}" for p in posts)
    assert "Fire reported at Evin Prison in Tehran" in texts[0]
    assert "https://news.example/new-1?utm_source=rss" in texts[0]
    assert "evin-prison-news" in texts[0] and "wire" in texts[0]
    assert "Iran's parliament ratifies strategic treaty with Russia" in texts[1]
    assert "iran-russia-treaty" in texts[1]
    assert "Evin Prison" in str(mails[0]["Subject"])
    assert "https://news.example/new-1" in mails[0].get_body(("plain", "html")).get_content()

    # The same document again: the server answers 304 to the validators; nothing is sent.
    before = len(world.server.requests)
    code, out, err = await newsmon(world.config, "poll", "--once")
    assert code == 0, err
    assert "0 new items, 1 unchanged" in out, out + err
    conditional = world.server.requests[before:]
    assert len(conditional) == 1 and conditional[0].headers.get("If-None-Match")
    assert "status=304" in err

    # The same items with a new ETag (a re-render): parsed again, still nothing new to send.
    world.server.add("/wire.xml", rss(OLD + NEW, world.now), etag='"re-rendered"')
    code, out, err = await newsmon(world.config, "poll", "--once")
    assert code == 0, err
    assert "0 new items" in out, out + err
    await asyncio.sleep(0.3)
    assert len(world.hook.posts) == 2 and len(world.mail.messages) == 1


async def test_daemon_polls_alerts_and_stops_gracefully_on_sigterm(world: World) -> None:
    async def start() -> asyncio.subprocess.Process:
        return await start_newsmon(world.config, "run")

    async def stop(proc: asyncio.subprocess.Process) -> str:
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return err.decode()

    proc = await start()
    try:
        deadline = time.monotonic() + 30
        while world.server.hits("/wire.xml") < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert world.server.hits("/wire.xml") >= 1
        world.server.add("/wire.xml", rss(OLD + NEW[:1], world.now))
        posts = await world.hook.wait_for(1, timeout=30)
        assert len(posts) == 1 and "Evin Prison" in posts[0].body["title"]
        await world.mail.wait_for(1, timeout=10)
    finally:
        if proc.returncode is None:
            err = await stop(proc)
    assert "stopped" in err

    # A restart with more news: only the new story is sent, nothing twice.
    world.server.add("/wire.xml", rss(OLD + NEW, world.now))
    proc = await start()
    try:
        await world.hook.wait_for(2, timeout=30)
        await asyncio.sleep(2.5)  # more poll cycles: nothing else may arrive
    finally:
        await stop(proc)
    titles = [p.body["title"] for p in world.hook.accepted]
    assert len(titles) == 2, titles
    assert any("ratifies" in t for t in titles)
    assert len(world.mail.messages) == 1


async def test_sigint_stops_the_daemon_with_exit_0(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
        "feeds:\n  - name: nowhere\n    url: http://127.0.0.1:9/feed\n"
        "channels:\n  console:\n    url: console://\n"
    )
    proc = await start_newsmon(config, "run")
    deadline = time.monotonic() + 30
    seen = b""
    assert proc.stderr is not None
    while b"poll failed feed=nowhere" not in seen and time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        if not line:
            break
        seen += line
    assert b"poll failed feed=nowhere" in seen, seen.decode()
    # Offline or refused, the feed's failure is logged with its reason and the daemon goes on.
    assert b"refused" in seen or b"private" in seen or b"loopback" in seen, seen.decode()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
