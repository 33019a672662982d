"""monitor.startup: waiting for the database at start, with systemd kept informed.

The whole process against a PostgreSQL that comes up late is in tests/test_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.startup import masked_url, open_when_ready, reason, retry_delay
from monitor.store import Store
from monitor.systemd import SystemdNotify
from tests.test_systemd import Manager


@pytest.fixture
def manager() -> Iterator[Manager]:
    # Not tmp_path: unix socket paths are limited to 107 bytes.
    manager = Manager(f"@newsmon-startup-{time.monotonic_ns()}")
    yield manager
    manager.close()


def test_retry_delays_double_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert retry_delay(10_000) == 30


def test_urls_are_logged_without_their_password() -> None:
    url = "postgresql+asyncpg://newsmon:s3cr%40t@db.internal:5432/newsmon"
    shown = masked_url(url)
    assert "s3cr" not in shown and "***" in shown and "db.internal:5432/newsmon" in shown
    assert masked_url("sqlite:///var/newsmon.db") == "sqlite:///var/newsmon.db"


def test_the_reason_is_the_drivers_message_on_one_line() -> None:
    assert reason(ConnectionRefusedError(111, "Connect call failed")) == (
        "ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    wrapped = sa.exc.DBAPIError("SELECT 1", {}, RuntimeError("database is starting up\nmore"))
    assert reason(wrapped) == "RuntimeError: database is starting up"


async def test_it_retries_until_the_database_answers_and_keeps_systemd_waiting(
    manager: Manager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[float] = []
    url = f"sqlite:///{tmp_path / 'newsmon.db'}"

    async def flaky(target: str) -> Store:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)")
        return await Store.open(target)

    store = await open_when_ready(
        url, asyncio.Event(), notify=SystemdNotify(manager.address), open_store=flaky
    )
    assert store is not None
    await store.close()
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # 1 s, then 2 s
    failures = [r.getMessage() for r in caplog.records if "database unreachable" in r.msg]
    assert len(failures) == 2  # one line per failed attempt
    assert "attempt=1" in failures[0] and "Connect call failed" in failures[0]
    sent = "\n".join(manager.received())
    assert "STATUS=waiting for the database (attempt 2, next in 2s)" in sent
    assert "EXTEND_TIMEOUT_USEC=" in sent and "WATCHDOG=1" in sent
    assert "READY=1" not in sent  # readiness is the daemon's, once it runs


async def test_a_stop_while_waiting_returns_at_once(manager: Manager) -> None:
    stop = asyncio.Event()
    started = asyncio.Event()

    async def hangs(target: str) -> Store:
        started.set()
        await asyncio.sleep(3600)  # a host that drops packets
        raise AssertionError("unreachable")

    waiting = asyncio.create_task(
        open_when_ready("sqlite://", stop, notify=SystemdNotify(manager.address), open_store=hangs)
    )
    await started.wait()
    begun = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is None
    assert time.monotonic() - begun < 1
