"""monitor.web: real HTTP requests to the endpoints, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import Metrics
from monitor.web import WebServer, parse_listen, start_web

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


class FakeDaemon:
    """The daemon's side of `Readiness`, with knobs: a database that is up, down or hung."""

    def __init__(self) -> None:
        self.database = "up"  # "up" | "down" | "hang" | "raise"
        self.running = True
        self.cycle: datetime | None = NOW - timedelta(seconds=3)
        self.db_checks = 0

    async def database_ok(self) -> bool:
        self.db_checks += 1
        if self.database == "hang":
            await asyncio.sleep(3600)
        if self.database == "raise":
            raise ConnectionRefusedError("connection refused")
        return self.database == "up"

    def scheduler_running(self) -> bool:
        return self.running

    def last_cycle(self) -> datetime | None:
        return self.cycle


@dataclass
class Listen:
    listen: str


@dataclass
class Served:
    server: WebServer
    daemon: FakeDaemon
    metrics: Metrics
    session: aiohttp.ClientSession
    clock: list[datetime]

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.server.url + path) as response:
            return response.status, response.headers["Content-Type"], await response.text()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    daemon, metrics = FakeDaemon(), Metrics()
    clock = [NOW]
    server = await start_web(
        Listen("127.0.0.1:0"),
        daemon,
        metrics,
        clock=lambda: clock[0],
        database_timeout=timedelta(seconds=0.3),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Served(server, daemon, metrics, session, clock)
    await server.stop()


async def test_healthz_answers_while_the_process_lives(served: Served) -> None:
    served.daemon.database = "down"  # liveness does not care
    served.daemon.running = False
    status, _, body = await served.get("/healthz")
    assert (status, body) == (200, "ok\n")
    assert served.daemon.db_checks == 0


async def test_readyz_follows_the_database_down_and_back(served: Served) -> None:
    status, _, body = await served.get("/readyz")
    assert status == 200
    assert body == "ready\ndatabase: ok\nscheduler: running\nlast cycle: 3s ago\n"

    served.daemon.database = "down"
    status, _, body = await served.get("/readyz")
    assert status == 503
    assert body.startswith("not ready\ndatabase: unreachable\n")

    served.daemon.database = "raise"
    assert (await served.get("/readyz"))[0] == 503

    served.daemon.database = "up"  # recovered
    assert (await served.get("/readyz"))[0] == 200


async def test_readyz_gives_up_on_a_database_that_hangs(served: Served) -> None:
    served.daemon.database = "hang"
    started = asyncio.get_running_loop().time()
    status, _, body = await served.get("/readyz")
    assert status == 503 and "database: unreachable" in body
    assert asyncio.get_running_loop().time() - started < 5


async def test_readyz_wants_a_running_scheduler_and_a_recent_cycle(served: Served) -> None:
    served.daemon.running = False
    status, _, body = await served.get("/readyz")
    assert status == 503 and "scheduler: stopped" in body

    served.daemon.running = True
    served.daemon.cycle = None  # started, no cycle yet
    status, _, body = await served.get("/readyz")
    assert status == 503 and "last cycle: none yet" in body

    served.daemon.cycle = NOW
    served.clock[0] = NOW + timedelta(minutes=5)  # the scheduler stalled
    status, _, body = await served.get("/readyz")
    assert status == 503 and "last cycle: stale (300s ago)" in body

    served.clock[0] = NOW + timedelta(seconds=90)
    assert (await served.get("/readyz"))[0] == 200


async def test_metrics_parse_with_the_prometheus_parser(served: Served) -> None:
    served.metrics.poll("ok", 200, 0.2)
    served.metrics.feed_states({"ok": 4, "failing": 1})
    served.metrics.match("evin-prison")
    status, content_type, body = await served.get("/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body)}
    feeds = {s.labels["state"]: s.value for s in families["newsmon_feeds"].samples}
    assert feeds == {"ok": 4, "failing": 1, "silent": 0, "disabled": 0}
    polls = {
        s.labels["outcome"]: s.value
        for s in families["newsmon_polls"].samples
        if s.name.endswith("_total")
    }
    assert polls["ok"] == 1
    (match,) = [s for s in families["newsmon_matches"].samples if s.name.endswith("_total")]
    assert (match.labels, match.value) == ({"rule": "evin-prison"}, 1)


async def test_other_paths_and_methods_are_refused(served: Served) -> None:
    assert (await served.get("/"))[0] == 404
    async with served.session.post(served.server.url + "/readyz") as response:
        assert response.status == 405
    async with served.session.head(served.server.url + "/healthz") as response:
        assert response.status == 200


async def test_stop_closes_the_port() -> None:
    server = await start_web(Listen("127.0.0.1:0"), FakeDaemon(), Metrics())
    port = server.port
    assert port > 0
    await server.stop()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


async def test_a_port_in_use_fails_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await start_web(Listen(f"127.0.0.1:{port}"), FakeDaemon(), Metrics())


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = await start_web(Listen("[::1]:0"), FakeDaemon(), Metrics())
    except OSError as error:
        pytest.skip(f"::1 cannot be bound here: {error}")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as r:
            assert r.status == 200
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:9464", ("localhost", 9464)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", ":9464", "127.0.0.1:", "::1:9464", "h:99999", "h:x"])
def test_parse_listen_refuses(listen: str) -> None:
    with pytest.raises(ValueError, match=r"web\.listen"):
        parse_listen(listen)
