"""The daemon's operations surface, wired: metrics and readiness from a real running daemon,
and a feed falling unwell announced once on the `admin` channel, across restarts."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import Settings, load_config_text
from monitor.scheduler import Daemon
from tests.support.daemon import start_newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver
from tests.test_e2e import Entry, rss

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_running_daemon_serves_metrics_and_readiness(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    port = free_port()
    async with FeedServer() as server, HookReceiver() as hook:
        server.add("/wire.xml", rss([Entry("a", "Fire at Evin prison")], now))
        config = tmp_path / "c.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: true}\npolling: {interval: 1s}\n"
            f"web: {{listen: '127.0.0.1:{port}'}}\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
            f"  - name: gone\n    url: {server.url('/missing.xml')}\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: evin\n    query: '\"evin prison\"'\n"
        )
        proc = await start_newsmon(config, "run", stdout=asyncio.subprocess.DEVNULL)
        try:
            await hook.wait_for(1, timeout=30)
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 20
                while True:
                    async with http.get(f"{base}/metrics") as r:
                        metrics = samples(await r.text())
                    if metrics.get(
                        ("newsmon_alerts_total", (("channel", "hook"), ("state", "sent")))
                    ):
                        break
                    assert time.monotonic() < deadline, metrics
                    await asyncio.sleep(0.2)
                async with http.get(f"{base}/readyz") as r:
                    assert r.status == 200, await r.text()
                async with http.get(f"{base}/healthz") as r:
                    assert r.status == 200
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
    assert metrics[("newsmon_polls_total", (("outcome", "ok"),))] >= 1
    assert metrics[("newsmon_polls_total", (("outcome", "error"),))] >= 1  # the 404 feed
    assert metrics[("newsmon_http_responses_total", (("class", "4xx"), ("code", "404")))] >= 1
    assert metrics[("newsmon_items_stored_total", ())] == 1
    assert metrics[("newsmon_matches_total", (("rule", "evin"),))] == 1
    assert metrics[("newsmon_dedupe_decisions_total", (("decision", "new_story"),))] == 1
    assert metrics[("newsmon_alerts_total", (("channel", "hook"), ("state", "queued")))] == 1


def broken_feed_with_admin(tmp_path: Path, server: FeedServer, admin: HookReceiver) -> Settings:
    """One feed that always fails (404), expected to update hourly, and an `admin` channel."""
    return load_config_text(
        f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
        "http: {allow_private_networks: true}\nweb: {enabled: false}\n"
        f"feeds:\n  - name: broken\n    url: {server.url('/missing.xml')}\n"
        "    expect_update: 1h\n"
        f"channels:\n  admin:\n    url: {admin.url()}\n"
    )


async def test_an_unwell_feed_is_announced_once_on_admin(tmp_path: Path) -> None:
    clock = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]
    async with FeedServer() as server, HookReceiver() as admin:
        settings = broken_feed_with_admin(tmp_path, server, admin)

        async def look() -> list[str]:
            async with Daemon(settings, clock=lambda: clock[0]) as daemon:
                await daemon.poll_once()
                return [h.state for h in await daemon.check_health()]

        assert await look() == ["ok"]  # failing, but not yet for longer than expect_update
        clock[0] += timedelta(hours=2)
        assert await look() == ["failing"]  # announced
        clock[0] += timedelta(hours=1)
        assert await look() == ["failing"]  # the same episode after a restart: not again
    titles = [p.body["title"] for p in admin.accepted]
    assert titles == ["newsmon: feed broken is failing"], titles


async def test_an_admin_announcement_that_failed_is_sent_later_once(tmp_path: Path) -> None:
    clock = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]
    async with FeedServer() as server, HookReceiver(answers=[500, 500]) as admin:
        settings = broken_feed_with_admin(tmp_path, server, admin)

        def daemon() -> Daemon:
            return Daemon(settings, clock=lambda: clock[0])

        async with daemon() as first:
            await first.poll_once()
            clock[0] += timedelta(hours=2)
            await first.check_health()  # failing now: announced, answered 500
            assert [p.status for p in admin.posts] == [500]
            await first.check_health()  # its retry is not due yet
            assert len(admin.posts) == 1
        # A restart before the retry: the failed announcement was given back, so it goes again.
        async with daemon() as second:
            await second.check_health()  # 500 again
            assert [p.status for p in admin.posts] == [500, 500]
            clock[0] += timedelta(hours=1)
            await second.check_health()  # the retry, due: 200
            await second.check_health()
        async with daemon() as third:
            await third.check_health()  # the same episode: not again
    titles = [p.body["title"] for p in admin.posts]
    assert titles == ["newsmon: feed broken is failing"] * 3, titles
    assert [p.status for p in admin.posts] == [500, 500, 200]


async def test_retention_keeps_what_a_feed_still_lists_and_prunes_what_it_dropped(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    clock = [now]
    async with FeedServer() as server, HookReceiver() as hook:
        # No ETag: every poll is a full parse (a 304 keeps the listing just the same).
        server.add("/wire.xml", rss([Entry("a", "Fire at Evin prison")], now), etag=None)
        settings = load_config_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: true}\nweb: {enabled: false}\nretention: 30d\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: evin\n    query: '\"evin prison\"'\n"
        )
        async with Daemon(settings, clock=lambda: clock[0]) as daemon:

            async def poll() -> int:
                (outcome,) = await daemon.poll_once()
                await daemon.deliver()
                return outcome.new_items

            assert await poll() == 1
            assert await daemon.apply_retention() == 0
            # Past the retention, the feed still lists the item: kept, and not news again.
            clock[0] += timedelta(days=31)
            assert await poll() == 0
            assert await daemon.apply_retention() == 0
            clock[0] += timedelta(days=31)
            assert await daemon.apply_retention() == 0  # polled or not, it is what `wire` lists
            assert await poll() == 0
            # Gone from the feed: pruned once the retention has passed since it was last listed.
            server.add("/wire.xml", rss([Entry("b", "Weather in Tehran")], now), etag=None)
            clock[0] += timedelta(days=1)
            assert await poll() == 1
            clock[0] += timedelta(days=31)
            assert await daemon.apply_retention() == 1
            assert (await daemon.store.counts())["items"] == 1
    assert [p.body["title"] for p in hook.accepted] == ["Fire at Evin prison"]


async def test_a_start_spreads_due_feeds_and_poll_once_still_polls_every_feed(
    store_url: str,
) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    async with FeedServer() as server:
        names = [f"f{n:02d}" for n in range(30)]
        feeds = "".join(f"  - name: {n}\n    url: {server.url(f'/{n}.xml')}\n" for n in names)
        settings = load_config_text(
            f"database: {store_url}\n"
            "http: {allow_private_networks: true}\nweb: {enabled: false}\n"
            f"polling: {{interval: 10m}}\nfeeds:\n{feeds}"
        )
        async with Daemon(settings, clock=lambda: now, rng=random.Random(3)) as daemon:
            store = daemon.store
            # One feed is being polled (by another replica): it keeps what it has.
            (busy,) = await store.claim_due_feeds(
                now, limit=1, lease=timedelta(minutes=1), owner="other"
            )
            plan = await daemon.spread_due_feeds()
            assert set(plan) == set(names)  # all new: all due
            assert all(now <= t <= now + timedelta(seconds=3) for t in plan.values())  # 30 x 0.1 s
            assert max(plan.values()) - min(plan.values()) >= timedelta(seconds=2)
            stored = {s.name: s.next_poll for s in await store.feed_states()}
            assert stored[busy.name] is None
            assert all(stored[n] == plan[n] for n in names if n != busy.name)
            # Due one by one, not in the first tick.
            due_now = await store.claim_due_feeds(
                now, limit=100, lease=timedelta(minutes=1), owner="me"
            )
            assert due_now == []
            # `poll --once` polls every feed at once whatever the schedule (404s here).
            outcomes = await daemon.poll_once()
            assert {o.feed for o in outcomes} == set(names) - {busy.name}
            assert all(o.status == 404 for o in outcomes)


async def test_a_running_daemon_claims_again_as_polls_finish_not_only_at_its_tick(
    tmp_path: Path,
) -> None:
    # 16 due feeds, 2 polls at a time: waiting for the 2 s tick to claim the next two would
    # take about 16 s; claiming as the slots free up takes about as long as the polls.
    now = datetime.now(UTC)
    names = [f"f{n}" for n in range(16)]
    async with FeedServer() as server:
        for name in names:
            server.add(f"/{name}.xml", rss([Entry(name, f"Weather report {name}")], now))
        feeds = "".join(f"  - {{name: {n}, url: '{server.url(f'/{n}.xml')}'}}\n" for n in names)
        settings = load_config_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: true, concurrency: 2}\n"
            f"feeds:\n{feeds}"
            "channels:\n  console: {url: 'console://'}\n"
        )
        async with Daemon(settings) as daemon:
            stop = asyncio.Event()
            started = time.monotonic()
            running = asyncio.create_task(daemon.run(stop))
            try:
                while any(server.hits(f"/{n}.xml") == 0 for n in names):
                    assert time.monotonic() - started < 9, "polls wait for the tick"
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await running
    assert all(server.hits(f"/{n}.xml") == 1 for n in names)
