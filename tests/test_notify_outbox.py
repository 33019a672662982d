"""The outbox worker with an in-memory OutboxStore and real channels; next_attempt's bounds."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from aiohttp import web

from monitor.model import Channel, Delivery
from monitor.notify import DrainReport, Notifier, OutboxWorker, next_attempt
from monitor.notify.digest import FEW, Gate
from tests.support.receivers import HookReceiver
from tests.test_notify import delivery

T0 = datetime(2026, 11, 23, 7, 15, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Row:
    delivery: Delivery
    due: datetime
    state: str = "pending"  # pending | held | sent | dead
    attempts: int = 0
    leased_until: datetime | None = None
    errors: list[str] = field(default_factory=list)
    retry_ats: list[datetime | None] = field(default_factory=list)
    digest: int | None = None


class MemoryOutbox:
    """An OutboxStore in memory, keeping the contract: due rows, leases, counted attempts.

    Gates are recorded, not applied (the real store's gating is tested in test_digest.py);
    rows start held when built with ``held=True``.
    """

    def __init__(
        self, deliveries: list[Delivery], *, keeps_leases: bool = True, held: bool = False
    ) -> None:
        state = "held" if held else "pending"
        self.rows = {d.id: Row(d, due=d.created, state=state) for d in deliveries}
        self.claims: list[list[int]] = []  # of pending rows
        self.held_claims: list[list[int]] = []
        self.keeps_leases = keeps_leases
        self.gates: list[Mapping[str, Gate]] = []

    def _claim(
        self, state: str, now: datetime, limit: int, lease: timedelta, log: list[list[int]]
    ) -> list[Delivery]:
        due = [
            row
            for row in sorted(self.rows.values(), key=lambda r: (r.delivery.channel, r.delivery.id))
            if row.state == state
            and (not self.keeps_leases or row.due <= now)
            and (not self.keeps_leases or row.leased_until is None or row.leased_until <= now)
        ][:limit]
        for row in due:
            row.leased_until = now + lease
        log.append([row.delivery.id for row in due])
        return [replace(row.delivery, attempts=row.attempts) for row in due]

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, Gate] | None = None,
    ) -> list[Delivery]:
        self.gates.append(gates or {})
        return self._claim("pending", now, limit, lease, self.claims)

    async def claim_held(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        owner: str,
        gates: Mapping[str, Gate] | None = None,
    ) -> list[Delivery]:
        return self._claim("held", now, limit, lease, self.held_claims)

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        row = self.rows[delivery_id]
        row.state, row.leased_until = "sent", None
        row.attempts += 1

    async def mark_digest_sent(self, delivery_ids: Sequence[int], now: datetime) -> None:
        for delivery_id in delivery_ids:
            await self.mark_sent(delivery_id, now)
            self.rows[delivery_id].digest = min(delivery_ids)

    async def mark_failed(
        self, delivery_id: int, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        row = self.rows[delivery_id]
        row.attempts += 1
        row.errors.append(error)
        row.retry_ats.append(retry_at)
        row.leased_until = None
        if retry_at is None:
            row.state = "dead"
        else:
            row.due = retry_at

    async def mark_digest_failed(
        self, delivery_ids: Sequence[int], now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        for delivery_id in delivery_ids:
            await self.mark_failed(delivery_id, now, error, retry_at)


def worker(store: MemoryOutbox, notifier: Notifier, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(
        store,
        notifier,
        owner="test",
        clock=clock,
        rng=random.Random(7),
        **kw,
    )


def alert(id: int, channel: str) -> Delivery:
    return replace(delivery(channel=channel, id=id), created=T0 - timedelta(minutes=1))


async def test_retries_until_accepted_then_exactly_one_post() -> None:
    async with HookReceiver(answers=[500, 500]) as hook:
        store = MemoryOutbox([alert(1, "desk")])
        clock = Clock()
        w = worker(store, Notifier({"desk": Channel("desk", (hook.url(),))}), clock)

        assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
        assert await w.drain() == DrainReport(0, 0, 0)  # not due yet: nothing claimed
        row = store.rows[1]
        first_retry = row.due
        assert first_retry > T0

        clock.now = first_retry
        assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
        second_retry = row.due
        assert second_retry - first_retry >= timedelta(seconds=30)

        clock.now = second_retry
        assert await w.drain() == DrainReport(sent=1, retried=0, dead=0)
        assert await w.drain() == DrainReport(0, 0, 0)

        assert [p.status for p in hook.posts] == [500, 500, 200]
        assert len(hook.accepted) == 1
        assert row.state == "sent" and row.attempts == 3
        assert row.retry_ats == [first_retry, second_retry]
        assert all("500" in e for e in row.errors)


async def test_unknown_channel_is_retried_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryOutbox([alert(1, "removed")])
    w = worker(store, Notifier({}), Clock())
    assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
    row = store.rows[1]
    assert row.state == "pending" and row.attempts == 1 and row.due > T0
    assert "'removed'" in row.errors[0]
    [line] = [r for r in caplog.records if r.name == "monitor.notify.outbox"]
    assert "'removed'" in line.getMessage()


async def test_bad_url_is_dead_after_one_attempt() -> None:
    store = MemoryOutbox([alert(1, "desk")])
    notifier = Notifier({"desk": Channel("desk", ("nosuch://user:hunter2pw@host/x",))})
    w = worker(store, notifier, Clock())
    assert await w.drain() == DrainReport(sent=0, retried=0, dead=1)
    row = store.rows[1]
    assert row.state == "dead" and row.attempts == 1 and row.retry_ats == [None]
    assert "hunter2pw" not in row.errors[0]


async def test_dead_after_max_attempts() -> None:
    async with HookReceiver(answers=[502] * 5) as hook:
        store = MemoryOutbox([alert(1, "desk")])
        clock = Clock()
        w = worker(store, Notifier({"desk": Channel("desk", (hook.url(),))}), clock, max_attempts=3)
        reports = []
        for _ in range(3):
            reports.append(await w.drain())
            clock.now = store.rows[1].due
        assert [r.dead for r in reports] == [0, 0, 1]
        assert store.rows[1].state == "dead" and store.rows[1].attempts == 3
        assert len(hook.posts) == 3


async def test_batches_until_short_and_bounded_concurrency() -> None:
    in_flight = peak = 0
    got: list[str] = []

    async def slow_hook(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        got.append((await request.json())["title"])
        in_flight -= 1
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", slow_hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        store = MemoryOutbox([alert(i, "desk") for i in range(1, 8)])
        notifier = Notifier({"desk": Channel("desk", (f"json://127.0.0.1:{port}/hook",))})
        w = worker(store, notifier, Clock(), batch=3, concurrency=2)
        assert await w.drain() == DrainReport(sent=7, retried=0, dead=0)
    finally:
        await runner.cleanup()
    assert store.claims == [[1, 2, 3], [4, 5, 6], [7]]
    assert len(got) == 7 and peak == 2


async def test_a_store_that_hands_rows_back_does_not_loop() -> None:
    store = MemoryOutbox([alert(1, "gone")], keeps_leases=False)
    w = worker(store, Notifier({}), Clock(), batch=1)
    assert await w.drain() == DrainReport(sent=0, retried=1, dead=0)
    assert store.claims == [[1], [1]]


async def test_a_send_that_would_outlive_the_lease_is_not_started() -> None:
    class Jumping(Clock):
        """Jumps past the lease after the claim, as if the previous send took that long."""

        calls = 0

        def __call__(self) -> datetime:
            self.calls += 1
            return self.now if self.calls == 1 else self.now + timedelta(minutes=5)

    stream = io.StringIO()
    store = MemoryOutbox([alert(1, "c")])
    notifier = Notifier({"c": Channel("c", ("console://",))}, stdout=stream)
    assert await worker(store, notifier, Jumping()).drain() == DrainReport(0, 0, 0)
    assert stream.getvalue() == "" and store.rows[1].state == "pending"


def test_lease_must_outlast_a_send() -> None:
    with pytest.raises(ValueError, match="lease"):
        worker(MemoryOutbox([]), Notifier({}, timeout=30), Clock(), lease=timedelta(seconds=30))


# --- next_attempt ----------------------------------------------------------------------------


def delay(attempts: int, rng: random.Random, **kw: float) -> float:
    return (next_attempt(attempts, T0, rng=rng, **kw) - T0).total_seconds()


def test_next_attempt_bounds_growth_and_cap() -> None:
    rng = random.Random(1)
    for attempts in range(1, 40):
        ceiling = min(3600.0, 30.0 * 2 ** (attempts - 1))
        for _ in range(50):
            assert 30.0 <= delay(attempts, rng) <= ceiling
    assert delay(1, rng) == 30.0
    assert delay(10_000, rng) <= 3600.0  # no overflow on absurd counts
    # The typical delay grows with each failure until the cap.
    means = [sum(delay(n, rng) for _ in range(400)) / 400 for n in range(1, 9)]
    assert means == sorted(means)


def test_next_attempt_jitter_spreads_within_the_range() -> None:
    rng = random.Random(2)
    draws = [delay(5, rng) for _ in range(500)]  # range [30, 480]
    assert min(draws) < 60 and max(draws) > 450
    assert len(set(draws)) > 450


def test_next_attempt_honours_retry_after_as_a_floor() -> None:
    rng = random.Random(3)
    assert delay(1, rng, retry_after=120) == 120
    assert delay(20, rng, retry_after=7200) == 7200  # above the cap: the service said so
    assert delay(1, rng, retry_after=5) == 30.0


def test_next_attempt_is_pure() -> None:
    first = [next_attempt(n, T0, rng=random.Random(9)) for n in range(1, 10)]
    again = [next_attempt(n, T0, rng=random.Random(9)) for n in range(1, 10)]
    assert first == again


# --- held deliveries: digests ------------------------------------------------------------------


def story_alert(id: int, channel: str, rule: str = "iran-russia-treaty") -> Delivery:
    base = alert(id, channel)
    item = replace(base.item, guid=f"g-{id}", title=f"Story number {id}")
    return replace(base, item=item, story=f"s-{id}", rule=rule)


async def test_a_failed_digest_is_retried_then_all_marked_sent_together() -> None:
    async with HookReceiver(answers=[500]) as hook:
        store = MemoryOutbox([story_alert(i, "desk") for i in range(1, 6)], held=True)
        clock = Clock()
        channel = Channel("desk", (hook.url(),), digest="0 8 * * *")
        w = worker(store, Notifier({"desk": channel}), clock, channels={"desk": channel})

        assert await w.drain() == DrainReport(sent=0, retried=5, dead=0)
        retry_at = {row.due for row in store.rows.values()}
        assert len(retry_at) == 1 and retry_at.pop() > T0  # one backoff for the whole digest
        assert all(row.state == "held" and row.attempts == 1 for row in store.rows.values())

        clock.now = store.rows[1].due
        assert await w.drain() == DrainReport(sent=5, retried=0, dead=0, digests=1)
        assert await w.drain() == DrainReport(0, 0, 0)
    assert [p.status for p in hook.posts] == [500, 200]
    body = hook.accepted[0].body
    assert "5 alerts" in body["title"]
    for i in range(1, 6):
        assert f"Story number {i}" in body["message"]
    assert {(row.state, row.digest) for row in store.rows.values()} == {("sent", 1)}


async def test_a_permanently_failing_digest_is_dead_after_one_attempt() -> None:
    store = MemoryOutbox([story_alert(i, "desk") for i in range(1, 5)], held=True)
    channel = Channel("desk", ("nosuch://user:hunter2pw@host/x",), digest="0 8 * * *")
    w = worker(store, Notifier({"desk": channel}), Clock(), channels={"desk": channel})
    assert await w.drain() == DrainReport(sent=0, retried=0, dead=4)
    assert all(r.state == "dead" and r.retry_ats == [None] for r in store.rows.values())
    assert all("hunter2pw" not in r.errors[0] for r in store.rows.values())


@pytest.mark.parametrize(("count", "posts"), [(FEW, FEW), (FEW + 1, 1)])
async def test_a_few_released_alerts_leave_one_by_one_more_as_one_digest(
    count: int, posts: int
) -> None:
    async with HookReceiver() as hook:
        store = MemoryOutbox([story_alert(i, "desk") for i in range(1, count + 1)], held=True)
        channel = Channel("desk", (hook.url(),), quiet_hours=(time(22), time(7)))
        w = worker(store, Notifier({"desk": channel}), Clock(), channels={"desk": channel})
        report = await w.drain()
    assert report.sent == count and report.digests == (1 if posts == 1 else 0)
    assert len(hook.accepted) == posts
    assert all(row.state == "sent" for row in store.rows.values())


async def test_held_alerts_of_several_channels_make_one_digest_each() -> None:
    async with HookReceiver() as hook:
        rows = [story_alert(i, "a") for i in range(1, 5)] + [
            story_alert(i, "b") for i in range(5, 10)
        ]
        store = MemoryOutbox(rows, held=True)
        channels = {
            name: Channel(name, (hook.url(f"/{name}"),), digest="0 8 * * *") for name in "ab"
        }
        w = worker(store, Notifier(channels), Clock(), channels=channels)
        assert await w.drain() == DrainReport(sent=9, retried=0, dead=0, digests=2)
    assert sorted((p.path, p.body["title"]) for p in hook.accepted) == [
        ("/a", "newsmon digest: 4 alerts"),
        ("/b", "newsmon digest: 5 alerts"),
    ]


async def test_the_worker_hands_the_store_each_channels_gate() -> None:
    store = MemoryOutbox([])
    quiet = Channel("quiet", ("console://",), quiet_hours=(time(7), time(8)), max_per_hour=3)
    daily = Channel("daily", ("console://",), digest="0 8 * * *", timezone="Asia/Tehran")
    plain = Channel("plain", ("console://",))
    channels = {c.name: c for c in (quiet, daily, plain)}
    w = worker(store, Notifier(channels), Clock(), channels=channels)  # T0 is 07:15 UTC
    await w.drain()
    await w.drain(digests=["daily"])
    scheduled, due_now = store.gates
    assert scheduled["quiet"] == Gate(quiet_until=T0.replace(hour=8, minute=0), max_per_hour=3)
    # 08:00 in Tehran (UTC+3:30) is 04:30 UTC: the next one is tomorrow's.
    assert scheduled["daily"] == Gate(hold_until=datetime(2026, 11, 24, 4, 30, tzinfo=UTC))
    assert scheduled["plain"] == Gate()
    assert due_now["daily"].hold_until == T0  # its digest time: what is pending joins it
    assert due_now["quiet"] == scheduled["quiet"]
