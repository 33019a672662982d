"""The daemon's start and stop with real `newsmon run` processes.

- SIGTERM while an alert's send is in flight (a webhook that takes 3 s to answer): the send
  completes and its row is marked sent before the exit (0); a restart, even once the row's
  lease would have run out, sends nothing again.
- Started while PostgreSQL is unreachable (a proxy not listening yet): no crash, one log line
  per failed attempt without the password, systemd told why and given more time, no
  READY=1; once the proxy listens, READY=1, /readyz 200 and the feed is polled. SIGTERM while
  still waiting exits 0 at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from monitor.store import Store
from tests.support.daemon import start_newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver, free_port
from tests.test_e2e import Entry, rss
from tests.test_replicas import Proxy, readyz
from tests.test_systemd import Manager

pytestmark = pytest.mark.slow


class SlowHook(HookReceiver):
    """A webhook that answers each post `delay` seconds after it arrived."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.arrived = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        await asyncio.sleep(self.delay)
        return await super()._handle(request)


async def eventually(check: object, timeout: float) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_sigterm_mid_send_lets_the_send_finish_and_mark_it_sent(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'newsmon.db'}"
    now = datetime.now(UTC)
    async with FeedServer() as server, SlowHook(delay=3) as hook:
        server.add("/wire.xml", rss([Entry("evin-1", "Fire at Evin prison")], now))
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: {database}\n"
            "http: {allow_private_networks: true, timeout: 10s}\n"
            "polling: {interval: 1h}\nweb: {enabled: false}\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: evin\n    query: '\"evin prison\"'\n"
        )
        log = tmp_path / "daemon.log"
        with log.open("wb") as sink:
            proc = await start_newsmon(
                config, "run", stdout=asyncio.subprocess.DEVNULL, stderr=sink
            )
        try:
            assert await eventually(lambda: hook.arrived == 1, 30), log.read_text()
            assert hook.posts == []  # the channel has not answered yet
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert [p.status for p in hook.posts] == [200], text[-3000:]
        async with await Store.open(database) as store:
            counts = await store.counts()
            # Left pending (leased by the stopped process), it would go again after a restart
            # once its lease ran out.
            assert (counts["sent"], counts["pending"]) == (1, 0), text[-3000:]

        # A restart sends nothing again.
        with log.open("ab") as sink:
            proc = await start_newsmon(
                config, "run", stdout=asyncio.subprocess.DEVNULL, stderr=sink
            )
        try:
            assert await eventually(lambda: "running owner=" in log.read_text()[len(text) :], 30)
            await asyncio.sleep(2)  # the outbox's first drains
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert hook.arrived == 1 and len(hook.posts) == 1


# --- the database not there at start ----------------------------------------------------------

PASSWORD = "s3cret-pw"  # PostgreSQL trusts the test user: any password is accepted


async def start_logged(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        return await start_newsmon(config, "run", stdout=asyncio.subprocess.DEVNULL, stderr=sink)


async def stopped(proc: asyncio.subprocess.Process, timeout: float) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), timeout)


@pytest.mark.postgres
async def test_run_waits_for_a_database_that_comes_up_late(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(pg_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)  # not listening yet: refused
    via_proxy = url.set(host="127.0.0.1", port=proxy.port, password=PASSWORD)
    web_port = free_port()
    manager = Manager(f"@newsmon-lifecycle-{time.monotonic_ns()}")
    monkeypatch.setenv("NOTIFY_SOCKET", manager.address)  # the daemon inherits it
    now = datetime.now(UTC)
    async with FeedServer() as server:
        server.add("/wire.xml", rss([Entry("a", "Weather in Tehran")], now))
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: {via_proxy.render_as_string(hide_password=False)}\n"
            "http: {allow_private_networks: true}\npolling: {interval: 1h}\n"
            f"web: {{listen: '127.0.0.1:{web_port}'}}\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
        )
        log = tmp_path / "daemon.log"
        proc = await start_logged(config, log)
        sent: list[str] = []
        try:
            # Attempts at 0 s, 1 s, 3 s: the process waits, it does not exit.
            assert await eventually(lambda: log.read_text().count("database unreachable") >= 3, 30)
            assert proc.returncode is None, log.read_text()
            sent += manager.received()
            assert not any("READY=1" in m for m in sent), sent
            assert any("STATUS=waiting for the database" in m for m in sent), sent
            assert any("EXTEND_TIMEOUT_USEC=" in m for m in sent), sent
            assert server.hits("/wire.xml") == 0
            assert await readyz(web_port) == -1  # nothing serves yet: not ready

            await proxy.open()
            assert await eventually(lambda: server.hits("/wire.xml") >= 1, 40), log.read_text()
            ready = 0
            deadline = time.monotonic() + 15
            while ready != 200 and time.monotonic() < deadline:
                ready = await readyz(web_port)
                await asyncio.sleep(0.2)
            assert ready == 200, log.read_text()[-3000:]
            sent += manager.received()
            assert any(m.startswith("READY=1") for m in sent), sent
            assert await stopped(proc, 30) == 0, log.read_text()[-3000:]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proxy.close()
            manager.close()
    text = log.read_text()
    failures = [line for line in text.splitlines() if "database unreachable" in line]
    assert all("attempt=" in line and "error=" in line for line in failures), failures
    assert "Connect call failed" in failures[0] or "refused" in failures[0].lower(), failures
    assert PASSWORD not in text and PASSWORD not in "\n".join(sent)
    assert "Traceback" not in text, text[-3000:]
    assert text.count("running owner=") == 1


async def test_sigterm_while_waiting_for_the_database_exits_0_at_once(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        f"database: postgresql://newsmon:{PASSWORD}@127.0.0.1:{closed}/newsmon\n"
        "web: {enabled: false}\n"
        "feeds:\n  - name: wire\n    url: http://127.0.0.1:9/feed\n"
    )
    log = tmp_path / "daemon.log"
    proc = await start_logged(config, log)
    try:
        assert await eventually(lambda: "database unreachable" in log.read_text(), 30)
        begun = time.monotonic()
        assert await stopped(proc, 10) == 0, log.read_text()
        assert time.monotonic() - begun < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert "stopped before the database answered" in text and PASSWORD not in text
