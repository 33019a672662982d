"""Digests, quiet hours and max_per_hour: the pure rules (gates, the digest's text), then the
whole path over a real store (SQLite and PostgreSQL), real channels (a webhook receiver on
127.0.0.1) and an injected clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor import commands, model
from monitor.config import load_config
from monitor.model import Channel, Copy, Delivery
from monitor.notify import DrainReport, Notifier, OutboxWorker
from monitor.notify.digest import Gate, gate, next_digest, quiet_until, render_digest
from monitor.scheduler import Daemon
from monitor.store import Store
from tests.support.receivers import HookReceiver, MailReceiver
from tests.test_notify import delivery
from tests.test_store import feed, matched, ok, record

T0 = datetime(2026, 11, 23, 7, 15, tzinfo=UTC)  # a Monday; 10:45 in Tehran, 08:15 in Berlin
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- quiet hours and digest times (pure) ------------------------------------------------------


def berlin(quiet: tuple[time, time]) -> Channel:
    return Channel("c", ("console://",), timezone="Europe/Berlin", quiet_hours=quiet)


@pytest.mark.parametrize(
    ("utc", "until"),
    [
        # 22:00-07:00 Berlin (UTC+1 in November): quiet from 21:00 to 06:00 UTC.
        (datetime(2026, 11, 23, 20, 59, tzinfo=UTC), None),
        (datetime(2026, 11, 23, 21, 0, tzinfo=UTC), datetime(2026, 11, 24, 6, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 23, 30, tzinfo=UTC), datetime(2026, 11, 24, 6, 0, tzinfo=UTC)),
        (datetime(2026, 11, 24, 5, 59, tzinfo=UTC), datetime(2026, 11, 24, 6, 0, tzinfo=UTC)),
        (datetime(2026, 11, 24, 6, 0, tzinfo=UTC), None),  # [start, end): the end is not quiet
        (datetime(2026, 11, 24, 12, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_across_midnight_in_local_time(utc: datetime, until: datetime | None) -> None:
    assert quiet_until(berlin((time(22), time(7))), utc) == until


def test_quiet_hours_within_one_day_and_across_a_dst_change() -> None:
    lunch = berlin((time(12), time(13, 30)))
    assert quiet_until(lunch, datetime(2026, 11, 23, 10, 59, tzinfo=UTC)) is None
    assert quiet_until(lunch, datetime(2026, 11, 23, 11, 0, tzinfo=UTC)) == datetime(
        2026, 11, 23, 12, 30, tzinfo=UTC
    )
    # Night of 28-29 March 2026: Berlin goes from UTC+1 to UTC+2; 07:00 is then 05:00 UTC.
    night = berlin((time(22), time(7)))
    assert quiet_until(night, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 5, 0, tzinfo=UTC
    )


def test_next_digest_in_the_channel_time_zone() -> None:
    daily = Channel("d", ("console://",), digest="0 8 * * *", timezone="Asia/Tehran")
    assert next_digest(daily, T0) == datetime(2026, 11, 24, 4, 30, tzinfo=UTC)
    assert next_digest(daily, datetime(2026, 11, 24, 4, 29, tzinfo=UTC)) == datetime(
        2026, 11, 24, 4, 30, tzinfo=UTC
    )
    weekdays = Channel("w", ("console://",), digest="30 9,17 * * 1-5")  # UTC
    assert next_digest(weekdays, T0) == T0.replace(hour=9, minute=30)
    assert next_digest(weekdays, T0.replace(hour=18)) == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert next_digest(Channel("p", ("console://",)), T0) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # cron's day of week: 0 and 7 are Sunday (APScheduler's own 0 is Monday).
        ("0 8 * * 1-5", [23, 24, 25, 26, 27, 30]),
        ("0 8 * * 0", [29]),
        ("0 8 * * 7", [29]),
        ("0 8 * * sat,sun", [28, 29]),
        ("0 8 * * */2", [24, 26, 28, 29]),  # Sunday, Tuesday, Thursday, Saturday
        ("0 8 * * 5-7", [27, 28, 29]),
        # Day of month and day of week both set: either one, as cron does.
        ("0 8 25 * mon", [23, 25, 30]),
    ],
)
def test_digest_cron_lines_mean_what_cron_means(line: str, expected: list[int]) -> None:
    channel = Channel("c", ("console://",), digest=line)
    days, moment = [], datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    while (
        (fire := next_digest(channel, moment)) is not None and fire.day <= 30 and fire.month == 11
    ):
        assert (fire.hour, fire.minute) == (8, 0)
        days.append(fire.day)
        moment = fire + timedelta(minutes=1)
    assert days == expected


def test_gate_combines_digest_quiet_hours_and_the_limit() -> None:
    channel = Channel(
        "c",
        ("console://",),
        timezone="Europe/Berlin",
        digest="0 18 * * *",
        quiet_hours=(time(8), time(9)),
        max_per_hour=5,
    )
    assert gate(channel, T0) == Gate(
        hold_until=T0.replace(hour=17, minute=0),
        quiet_until=T0.replace(hour=8, minute=0),
        max_per_hour=5,
    )
    assert gate(channel, T0, digest_due=True).hold_until == T0
    assert gate(Channel("p", ("console://",)), T0, digest_due=True) == Gate()


# --- the digest's text (pure) -----------------------------------------------------------------


def item_delivery(
    id: int, rule: str, story: str, title: str, *, minutes: int = 0, also: tuple[Copy, ...] = ()
) -> Delivery:
    base = delivery(id=id)
    item = replace(base.item, guid=f"g{id}", title=title, url=f"https://news.example/{id}")
    return replace(
        base,
        rule=rule,
        story=story,
        item=item,
        created=T0 + timedelta(minutes=minutes),
        also=also,
    )


def test_digest_groups_by_rule_then_story_in_arrival_order() -> None:
    channel = Channel("d", ("console://",), timezone="Asia/Tehran")
    copies = (Copy("tass", None, None), Copy("irna", None, None))
    title, body = render_digest(
        channel,
        [
            item_delivery(3, "evin", "s-evin", "Fire at Evin prison", minutes=2),
            item_delivery(1, "treaty", "s-treaty", "Treaty ratified", also=copies),
            item_delivery(4, "treaty", "s-treaty", "Treaty ratified: full text", minutes=3),
            item_delivery(2, "treaty", "s-oil", "Oil deal signed", minutes=1),
        ],
        T0,
    )
    assert title == "newsmon digest: 4 alerts"
    lines = body.splitlines()
    assert lines[0] == "4 alerts in 3 stories, 2026-11-23 10:45 (Asia/Tehran)"
    headings = [line for line in lines if line.startswith(("==", "*", "  updated"))]
    assert headings == [
        "== treaty (2 stories)",
        "* Treaty ratified",
        "  updated: Treaty ratified: full text",
        "* Oil deal signed",
        "== evin (1 story)",
        "* Fire at Evin prison",
    ]
    assert "  also reported by: tass, irna" in lines
    assert "  https://news.example/4" in body.replace("    https", "  https")


def test_digest_keeps_feed_text_on_one_line() -> None:
    hostile = item_delivery(1, "r", "s", "Line one\r\nBcc: victim@example.org\x1b[31m")
    _title, body = render_digest(Channel("d", ("console://",)), [hostile], T0)
    assert "* Line one Bcc: victim@example.org [31m" in body.splitlines()
    assert "\r" not in body and "\x1b" not in body


# --- the whole path over a real store ---------------------------------------------------------


async def queue(
    store: Store,
    count: int,
    *,
    channel: str = "desk",
    rule: str = "treaty",
    priority: str = "normal",
    at: datetime = T0,
    start: int = 0,
    feed_name: str = "wire",
) -> None:
    """Store `count` new matching items, each with one alert (one pending delivery) due at `at`."""
    await store.sync_feeds([feed(feed_name)], at)
    recs = [record(feed_name, f"{rule}-{start + n}") for n in range(count)]
    await store.apply(
        model.Decision(
            feed=feed_name,
            items=tuple(recs),
            matches=tuple(matched(r, rule) for r in recs),
            alerts=tuple(
                model.Alert(rule, channel, r.story, feed_name, r.item.guid, priority=priority)
                for r in recs
            ),
        ),
        ok(feed_name, at),
    )


def make_worker(
    store: Store, channels: list[Channel], clock: Clock, owner: str = "test"
) -> OutboxWorker:
    by_name = {c.name: c for c in channels}
    return OutboxWorker(
        store, Notifier(by_name), owner=owner, clock=clock, channels=by_name, rng=random.Random(5)
    )


def titles_in(text: str) -> set[str]:
    return {line[2:] for line in text.splitlines() if line.startswith("* ")}


async def test_a_burst_of_500_with_max_per_hour_30_is_30_messages_and_one_digest(
    store: Store,
) -> None:
    async with HookReceiver() as hook:
        desk = Channel("desk", (hook.url(),), max_per_hour=30)
        clock = Clock()
        worker = make_worker(store, [desk], clock)
        await queue(store, 500)

        report = await worker.drain()
        assert (report.sent, report.digests) == (30, 0)
        assert len(hook.posts) == 30
        assert await store.outbox_depth() == 470
        log = await store.alerts(limit=600)
        holds = await store.holds([a.id for a in log if a.status == "held"])
        assert len(holds) == 470 and set(holds.values()) == {("rate", T0 + HOUR)}

        clock.now = T0 + HOUR - timedelta(seconds=1)
        assert await worker.drain() == DrainReport(0, 0, 0)  # the hour is not over

        clock.now = T0 + HOUR
        assert await worker.drain() == DrainReport(sent=470, retried=0, dead=0, digests=1)
        assert len(hook.posts) == 31 and len(hook.accepted) == 31
        digest = hook.posts[-1].body
        assert digest["title"] == "newsmon digest: 470 alerts"
        singles = {p.body["title"] for p in hook.posts[:30]}
        # Nothing lost, nothing twice: every alert is in exactly one message.
        assert len(singles) == 30 and not singles & titles_in(digest["message"])
        assert singles | titles_in(digest["message"]) == {f"title treaty-{n}" for n in range(500)}
        assert await store.outbox_depth() == 0

        # The digest counts as one message of the next rolling hour: 29 more may go alone.
        await queue(store, 40, at=clock.now, start=500)
        clock.now += timedelta(minutes=1)
        report = await worker.drain()
        assert (report.sent, report.digests) == (29, 0)
        holds = await store.holds([a.id for a in await store.alerts() if a.status == "held"])
        # One digest an hour at most: the next one an hour after the last.
        assert set(holds.values()) == {("rate", T0 + 2 * HOUR)}


async def test_a_digest_channel_sends_one_message_grouped_by_rule_and_story(
    store: Store,
) -> None:
    async with HookReceiver(answers=[503]) as hook:
        daily = Channel("daily", (hook.url(),), digest="0 8 * * *", timezone="Asia/Tehran")
        clock = Clock()
        worker = make_worker(store, [daily], clock)
        await queue(store, 3, channel="daily", rule="treaty")
        await queue(store, 2, channel="daily", rule="evin", priority="high")

        assert await worker.drain() == DrainReport(0, 0, 0)  # all held: never one by one
        due = datetime(2026, 11, 24, 4, 30, tzinfo=UTC)  # 08:00 in Tehran
        clock.now = due - timedelta(seconds=1)
        await queue(store, 1, channel="daily", rule="evin", at=clock.now, start=2)
        assert await worker.drain() == DrainReport(0, 0, 0)
        assert hook.posts == []

        # The digest job at 08:00: the first send fails (503), nothing is marked sent.
        clock.now = due
        assert await worker.drain(digests=["daily"]) == DrainReport(sent=0, retried=6, dead=0)
        assert await store.outbox_depth() == 6
        log = await store.alerts()
        retry = await store.holds([a.id for a in log])
        assert len(retry) == 6 and len(set(retry.values())) == 1
        clock.now = next(iter(retry.values()))[1]
        assert await worker.drain() == DrainReport(sent=6, retried=0, dead=0, digests=1)
        assert await worker.drain() == DrainReport(0, 0, 0)

    assert [p.status for p in hook.posts] == [503, 200]
    body = hook.posts[1].body["message"]
    assert hook.posts[1].body["title"] == "newsmon digest: 6 alerts"
    sections = [line for line in body.splitlines() if line.startswith("== ")]
    assert sections == ["== treaty (3 stories)", "== evin (3 stories)"]
    assert titles_in(body) == {f"title treaty-{n}" for n in range(3)} | {
        f"title evin-{n}" for n in range(3)
    }
    assert {a.status for a in await store.alerts()} == {"sent"}


class Killed(Exception):
    """The worker's process dying, as far as the worker can tell."""


class KilledAfterTheSend:
    """The real store, except that marking a digest sent dies as a SIGKILL between the
    channel's acceptance and the commit would: the mail went, its rows stay held and leased."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def mark_digest_sent(self, delivery_ids: Sequence[int], now: datetime) -> None:
        raise Killed


async def test_a_digest_email_resent_after_a_crash_has_the_same_message_id(
    store: Store,
) -> None:
    with MailReceiver() as mail:
        url = f"mailto://127.0.0.1:{mail.port}?from=newsmon@example.org&to=desk@example.org"
        daily = Channel("daily", (url,), digest="0 8 * * *", timezone="Asia/Tehran")
        clock = Clock()
        await queue(store, 3, channel="daily")
        doomed = OutboxWorker(
            KilledAfterTheSend(store),  # type: ignore[arg-type]
            Notifier({"daily": daily}),
            owner="doomed",
            clock=clock,
            channels={"daily": daily},
        )
        assert await doomed.drain() == DrainReport(0, 0, 0)  # held for 08:00 in Tehran
        clock.now = datetime(2026, 11, 24, 4, 30, tzinfo=UTC)
        with pytest.raises(Killed):
            await doomed.drain(digests=["daily"])
        assert len(await mail.wait_for(1, timeout=5)) == 1

        # Its lease (2 minutes) runs out; a restarted worker claims the same rows and resends.
        clock.now += timedelta(minutes=2)
        worker = make_worker(store, [daily], clock, owner="restarted")
        assert await worker.drain() == DrainReport(sent=3, retried=0, dead=0, digests=1)
        # The next day's digest carries other alerts: another message.
        await queue(store, 2, channel="daily", at=clock.now, start=3)
        assert await worker.drain() == DrainReport(0, 0, 0)  # held for tomorrow's digest
        clock.now = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)
        assert await worker.drain() == DrainReport(sent=2, retried=0, dead=0, digests=1)
        first, resent, later = await mail.wait_for(3, timeout=5)

    assert first["Subject"] == resent["Subject"] == "newsmon digest: 3 alerts"
    assert later["Subject"] == "newsmon digest: 2 alerts"
    [stable] = first.get_all("Message-ID") or []
    assert resent.get_all("Message-ID") == [stable]  # one header, the same: one message
    assert stable.startswith("<digest-3.") and stable.endswith("@newsmon.invalid>")
    [other] = later.get_all("Message-ID") or []
    assert other != stable


async def test_quiet_hours_hold_a_normal_alert_and_pass_a_high_priority_one(
    store: Store,
) -> None:
    async with HookReceiver() as hook:
        # 22:00-07:00 in Berlin; T0 + 15h is 23:15 there.
        night = Channel(
            "night", (hook.url(),), timezone="Europe/Berlin", quiet_hours=(time(22), time(7))
        )
        clock = Clock(T0 + 15 * HOUR)
        worker = make_worker(store, [night], clock)
        await queue(store, 1, channel="night", rule="routine", at=clock.now)
        await queue(store, 1, channel="night", rule="urgent", priority="high", at=clock.now)

        assert (await worker.drain()).sent == 1
        assert [p.body["title"] for p in hook.posts] == ["title urgent-0"]
        morning = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
        log = await store.alerts()
        assert set((await store.holds([a.id for a in log])).values()) == {("quiet", morning)}

        clock.now = morning - timedelta(minutes=1)
        assert await worker.drain() == DrainReport(0, 0, 0)
        clock.now = morning
        assert await worker.drain() == DrainReport(sent=1, retried=0, dead=0)  # one: alone
    assert [p.body["title"] for p in hook.posts] == ["title urgent-0", "title routine-0"]


async def test_many_alerts_held_by_quiet_hours_leave_as_one_digest(store: Store) -> None:
    async with HookReceiver() as hook:
        night = Channel("night", (hook.url(),), quiet_hours=(time(7), time(8)))  # UTC
        clock = Clock()
        worker = make_worker(store, [night], clock)
        await queue(store, 12, channel="night")
        assert await worker.drain() == DrainReport(0, 0, 0)
        clock.now = T0.replace(hour=8, minute=0)
        assert await worker.drain() == DrainReport(sent=12, retried=0, dead=0, digests=1)
    assert len(hook.posts) == 1 and len(titles_in(hook.posts[0].body["message"])) == 12


async def test_a_digest_due_in_quiet_hours_waits_for_their_end_but_high_passes(
    store: Store,
) -> None:
    async with HookReceiver() as hook:
        channel = Channel(
            "c", (hook.url(),), digest="0 9 * * *", quiet_hours=(time(8, 30), time(10))
        )
        clock = Clock()
        worker = make_worker(store, [channel], clock)
        await queue(store, 4, channel="c", rule="routine")
        await queue(store, 1, channel="c", rule="urgent", priority="high")
        assert await worker.drain() == DrainReport(0, 0, 0)
        clock.now = T0.replace(hour=9, minute=0)
        report = await worker.drain(digests=["c"])
        assert (report.sent, report.digests) == (1, 1)  # the urgent one, as a digest of one
        clock.now = T0.replace(hour=10, minute=0)
        assert (await worker.drain()).sent == 4
    assert [len(titles_in(p.body["message"])) for p in hook.posts] == [1, 4]


@pytest.mark.postgres
async def test_replicas_send_one_digest_and_share_one_hourly_limit(pg_url: str) -> None:
    async with (
        HookReceiver() as hook,
        await Store.open(pg_url) as one,
        await Store.open(pg_url) as two,
    ):
        limited = Channel("limited", (hook.url("/limited"),), max_per_hour=10)
        daily = Channel("daily", (hook.url("/daily"),), digest="0 8 * * *")
        clock = Clock()
        workers = [
            make_worker(s, [limited, daily], clock, owner=f"replica-{n}")
            for n, s in enumerate([one, two, one, two])
        ]
        await queue(one, 60, channel="limited", rule="a")
        await queue(one, 20, channel="daily", rule="b")
        await asyncio.gather(*(w.drain() for w in workers))
        assert len(hook.posts) == 10 and {p.path for p in hook.posts} == {"/limited"}

        clock.now = T0.replace(hour=8, minute=0) + timedelta(days=1)
        reports = await asyncio.gather(*(w.drain(digests=["daily"]) for w in workers))
        assert sum(r.digests for r in reports) == 2  # one per channel, whoever sent it
    daily_posts = [p for p in hook.posts if p.path == "/daily"]
    limited_posts = [p for p in hook.posts if p.path == "/limited"]
    assert len(daily_posts) == 1 and len(titles_in(daily_posts[0].body["message"])) == 20
    assert len(limited_posts) == 11 and len(titles_in(limited_posts[-1].body["message"])) == 50


# --- the daemon's digest jobs -----------------------------------------------------------------


async def test_the_daemon_runs_a_cron_job_per_digest_channel_and_follows_reloads(
    tmp_path: Path,
) -> None:
    config = tmp_path / "newsmon.yaml"

    def write(digest: str) -> None:
        config.write_text(
            f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
            "feeds:\n  - name: nowhere\n    url: http://127.0.0.1:9/feed\n"
            "channels:\n"
            f"  daily:\n    url: console://\n    digest: '{digest}'\n    timezone: Asia/Tehran\n"
            "  plain:\n    url: console://\n"
        )

    write("0 8 * * 1-5")
    async with Daemon(load_config(str(config))) as daemon:
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        try:
            await asyncio.sleep(0.2)
            scheduler = daemon._scheduler
            assert scheduler is not None
            digests = [job for job in scheduler.get_jobs() if job.id.startswith("digest:")]
            assert [job.id for job in digests] == ["digest:daily"]
            channel = Channel("daily", (), digest="0 8 * * 1-5", timezone="Asia/Tehran")
            assert digests[0].next_run_time == next_digest(channel, datetime.now(UTC))
            assert digests[0].args == ("daily",)

            write("30 17 * * *")
            assert await daemon.reload(str(config))
            (job,) = [job for job in scheduler.get_jobs() if job.id.startswith("digest:")]
            later = replace(channel, digest="30 17 * * *")
            assert job.next_run_time == next_digest(later, datetime.now(UTC))

            # The job's work: what is held for the channel leaves now (nothing here).
            assert await daemon.send_digest("daily") == DrainReport(0, 0, 0)
        finally:
            stop.set()
            await running


async def test_newsmon_alerts_says_why_and_until_when_an_alert_is_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
        "feeds:\n  - name: wire\n    url: https://wire.example/feed\n"
        "channels:\n  night:\n    url: console://\n    quiet_hours: '07:00-08:00'\n"
    )
    settings = load_config(str(config))
    async with await Store.open(settings.database) as store:
        night = settings.channel_values()["night"]
        await queue(store, 1, channel="night")
        assert await make_worker(store, [night], Clock()).drain() == DrainReport(0, 0, 0)
    assert await commands.alerts(settings, 10) == 0
    out = capsys.readouterr().out
    assert " held " in out and "held (quiet hours) until 2026-11-23 08:00 UTC" in out, out
