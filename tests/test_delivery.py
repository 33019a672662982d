"""Delivery a desk can rely on, with real parts: a real SMTP server and webhook receivers on
127.0.0.1, the real store, and real `newsmon run` processes killed with SIGKILL.

- SMTP down for a while: every alert arrives once it is back, each once.
- A webhook answering 500 then 200: one delivery. 401: dead after one attempt; then
  `newsmon alerts retry --dead` delivers it once.
- The daemon SIGKILLed before the channel accepted anything: after a restart every alert is
  delivered, none twice. SIGKILLed between the channel's acceptance and the commit: every
  alert delivered, and again each one whose send was in flight at the kill. Sends are not
  serialized (the outbox runs up to SEND_CONCURRENCY at once), so that is the one that
  killed it and those sent beside it: at most SEND_CONCURRENCY duplicates, each alert at
  most twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from monitor import model
from monitor.model import Channel
from monitor.notify import DrainReport, Notifier, OutboxWorker
from monitor.notify.outbox import SEND_CONCURRENCY
from monitor.store import Store
from tests.support.daemon import start_newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver, MailReceiver
from tests.test_e2e import Entry, newsmon, rss
from tests.test_store import feed, matched, ok, record

T0 = datetime(2026, 11, 23, 7, 15, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def queue(store: Store, count: int, channel: str) -> None:
    """`count` stored items, each with one pending alert for `channel`, due at T0."""
    await store.sync_feeds([feed("wire")], T0)
    recs = [record("wire", f"{n}", title=f"Evin prison report {n}") for n in range(count)]
    await store.apply(
        model.Decision(
            feed="wire",
            items=tuple(recs),
            matches=tuple(matched(r) for r in recs),
            alerts=tuple(
                model.Alert("treaty", channel, r.story, "wire", r.item.guid) for r in recs
            ),
        ),
        ok("wire", T0),
    )


def make_worker(store: Store, channel: Channel, clock: Clock) -> OutboxWorker:
    return OutboxWorker(
        store,
        Notifier({channel.name: channel}, timeout=5),
        owner="test",
        clock=clock,
        channels={channel.name: channel},
        rng=random.Random(11),
    )


# --- in one process, real servers ------------------------------------------------------------


async def test_smtp_down_for_a_while_then_every_alert_arrives_once(store: Store) -> None:
    mail = MailReceiver()  # its port reserved, nothing listening yet: connections refused
    url = f"mailto://127.0.0.1:{mail.port}?from=newsmon@example.org&to=desk@example.org"
    clock = Clock()
    worker = make_worker(store, Channel("mail", (url,)), clock)
    await queue(store, 4, "mail")

    assert await worker.drain() == DrainReport(sent=0, retried=4, dead=0)
    clock.now += timedelta(seconds=30)  # the first retry is due after exactly the floor
    assert await worker.drain() == DrainReport(sent=0, retried=4, dead=0)
    assert await store.outbox_depth() == 4

    with mail:
        clock.now += timedelta(seconds=60)  # the second retry: within [30, 60] s
        assert await worker.drain() == DrainReport(sent=4, retried=0, dead=0)
        clock.now += timedelta(hours=2)
        assert await worker.drain() == DrainReport(0, 0, 0)
        messages = await mail.wait_for(4, timeout=5)
    subjects = sorted(str(m["Subject"]) for m in messages)
    assert subjects == [f"Evin prison report {n}" for n in range(4)]
    assert {a.status for a in await store.alerts()} == {"sent"}


async def test_webhook_500_then_200_is_one_delivery(store: Store) -> None:
    async with HookReceiver(answers=[500]) as hook:
        clock = Clock()
        worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
        await queue(store, 1, "hook")
        assert await worker.drain() == DrainReport(sent=0, retried=1, dead=0)
        clock.now += timedelta(seconds=30)
        assert await worker.drain() == DrainReport(sent=1, retried=0, dead=0)
        clock.now += timedelta(hours=2)
        assert await worker.drain() == DrainReport(0, 0, 0)
    assert [p.status for p in hook.posts] == [500, 200]
    (row,) = await store.alerts()
    assert (row.status, row.attempts) == ("sent", 2)


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (429, "120"),
        # An HTTP date counts from the receiver's own Date (its clock, not ours): 2 minutes.
        (503, "Mon, 23 Nov 2026 07:17:00 GMT"),
    ],
)
async def test_webhook_retry_after_delays_the_next_attempt_then_one_delivery(
    store: Store, status: int, retry_after: str
) -> None:
    answer = (status, {"Retry-After": retry_after, "Date": "Mon, 23 Nov 2026 07:15:00 GMT"})
    async with HookReceiver(answers=[answer]) as hook:
        clock = Clock()
        worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
        await queue(store, 1, "hook")
        assert await worker.drain() == DrainReport(sent=0, retried=1, dead=0)
        # The backoff alone would retry after 30 s (this rng's first draw is the floor).
        clock.now = T0 + timedelta(seconds=119)
        assert await worker.drain() == DrainReport(0, 0, 0)
        assert len(hook.posts) == 1
        clock.now = T0 + timedelta(seconds=120)
        assert await worker.drain() == DrainReport(sent=1, retried=0, dead=0)
        clock.now += timedelta(hours=2)
        assert await worker.drain() == DrainReport(0, 0, 0)
    assert [p.status for p in hook.posts] == [status, 200]
    assert len(hook.accepted) == 1


async def test_401_is_a_dead_letter_then_retry_dead_delivers_once(tmp_path: Path) -> None:
    database = tmp_path / "newsmon.db"
    async with HookReceiver(answers=[401]) as hook:
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: sqlite:///{database}\n"
            "feeds:\n  - name: wire\n    url: https://wire.example/feed\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: treaty\n    query: treaty\n"
        )
        clock = Clock()
        async with await Store.open(f"sqlite:///{database}") as store:
            worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
            await queue(store, 1, "hook")
            # One attempt, then dead: retrying cannot fix refused credentials.
            assert await worker.drain() == DrainReport(sent=0, retried=0, dead=1)
            clock.now += timedelta(days=1)
            assert await worker.drain() == DrainReport(0, 0, 0)

        code, out, err = await newsmon(config, "alerts")
        assert code == 0, err
        assert " dead " in out and "401" in out and "alerts retry --dead" in out, out
        code, out, err = await newsmon(config, "alerts", "retry", "--dead")
        assert code == 0 and "1 alert(s) queued again" in out, out + err

        # The CLI queued it again at the wall clock's now; the worker's clock catches up.
        clock.now = datetime.now(UTC)
        async with await Store.open(f"sqlite:///{database}") as store:
            assert await store.retry_dead(None, clock.now) == 0  # nothing dead is left
            worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
            assert await worker.drain() == DrainReport(sent=1, retried=0, dead=0)
            clock.now += timedelta(days=1)
            assert await worker.drain() == DrainReport(0, 0, 0)
            (row,) = await store.alerts()
            assert (row.status, row.attempts) == ("sent", 1)  # the retry budget starts afresh
    assert [p.status for p in hook.posts] == [401, 200]


@pytest.mark.postgres
async def test_retry_id_is_the_alert_id_that_alerts_shows(tmp_path: Path, pg_url: str) -> None:
    # On PostgreSQL an insert that hits an alert's key still takes a number from the alerts'
    # sequence, so alert ids run ahead of delivery ids: here alerts 1, 3, 5 have deliveries
    # 1, 2, 3, and `retry 3` read as a delivery id would revive the wrong alert.
    async with HookReceiver(answers=[401, 401, 401]) as hook:
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: {pg_url}\n"
            "feeds:\n  - name: wire\n    url: https://wire.example/feed\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: treaty\n    query: treaty\n"
        )
        clock = Clock()
        async with await Store.open(pg_url) as store:
            await store.sync_feeds([feed("wire")], T0)
            for n in range(3):
                rec = record("wire", f"{n}", title=f"Evin prison report {n}")
                decision = model.Decision(
                    feed="wire",
                    items=(rec,),
                    matches=(matched(rec),),
                    alerts=(model.Alert("treaty", "hook", rec.story, "wire", rec.item.guid),),
                )
                await store.apply(decision, ok("wire", T0))
                await store.apply(decision, ok("wire", T0))  # a re-poll: the same alert key
            worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
            assert await worker.drain() == DrainReport(sent=0, retried=0, dead=3)

        code, out, err = await newsmon(config, "alerts")
        assert code == 0, err
        shown = {
            line.split()[-1]: int(line.split()[0])
            for line in out.splitlines()
            if line[:1].isdigit() and " dead " in line
        }
        assert sorted(shown.values()) == [1, 3, 5], out  # the precondition: ids drifted
        code, out, err = await newsmon(config, "alerts", "retry", str(shown["1"]))
        assert code == 0 and "1 alert(s) queued again" in out, out + err

        clock.now = datetime.now(UTC)
        async with await Store.open(pg_url) as store:
            status = {a.title: a.status for a in await store.alerts()}
            assert status == {
                "Evin prison report 0": "dead",
                "Evin prison report 1": "pending",
                "Evin prison report 2": "dead",
            }
            worker = make_worker(store, Channel("hook", (hook.url(),)), clock)
            assert await worker.drain() == DrainReport(sent=1, retried=0, dead=0)
        code, out, err = await newsmon(config, "alerts", "retry", "2")  # a delivery id only
        assert code == 1 and "no dead alert with id 2" in err, out + err
    assert [p.body["title"] for p in hook.accepted] == ["Evin prison report 1"]


# --- newsmon send-test -----------------------------------------------------------------------

SAMPLE_TITLE = "newsmon test alert: parliament ratifies the sample treaty"


async def test_send_test_sends_a_sample_alert_through_the_channels_templates(
    tmp_path: Path,
) -> None:
    mail = MailReceiver()
    async with HookReceiver(answers=[200, 401]) as hook:
        hook_url = f"json://user:hunter2@127.0.0.1:{hook.port}/hook"
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            "feeds: []\nchannels:\n"
            f"  hook:\n    url: '{hook_url}'\n"
            f"  mail:\n    url: 'mailto://127.0.0.1:{mail.port}"
            "?from=newsmon@example.org&to=desk@example.org'\n"
            "    timezone: Asia/Tehran\n"
        )
        code, out, err = await newsmon(config, "send-test", "hook")
        assert code == 0, err
        assert "hook: delivered the sample alert (json://user:****@127.0.0.1:" in out, out
        [post] = hook.posts
        assert post.body["title"] == SAMPLE_TITLE
        message = post.body["message"]
        for part in (
            "https://example.org/newsmon/send-test",
            "Source: newsmon-send-test",
            "Rule: send-test",
            "Passage: Lawmakers voted on Tuesday to «ratify the treaty», the speaker's office",
            "Also reported by: another-outlet",
        ):
            assert part in message, message

        code, out, err = await newsmon(config, "send-test", "hook")  # answered 401
        assert code == 1 and "hook: failed, permanent (json://user:****@" in err, err
        assert "401" in err and "hunter2" not in out + err

        code, out, err = await newsmon(config, "send-test", "mail")  # SMTP refused: down
        assert code == 1 and "mail: failed, temporary (mailto://" in err, err
        with mail:
            for _ in range(2):
                code, out, err = await newsmon(config, "send-test", "mail")
                assert code == 0 and "mail: delivered the sample alert" in out, out + err
            first, second = await mail.wait_for(2, timeout=5)
    assert first["Subject"] == second["Subject"] == SAMPLE_TITLE
    # The channel's HTML template, in its time zone, with the passage highlighted.
    html_part = first.get_body(preferencelist=("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert "<b>ratify the treaty</b>" in html and "+0330" in html, html
    # Our Message-ID, new on every test: a mail client must not fold the second into the first.
    [one], [two] = first.get_all("Message-ID") or [], second.get_all("Message-ID") or []
    assert one.startswith("<alert-0.") and two.startswith("<alert-0.") and one != two


# --- a real daemon, killed -------------------------------------------------------------------

# More alerts than the outbox sends at once: the duplicates a crash makes are bounded by the
# sends in flight, not by the alerts waiting.
ITEMS = [Entry(f"evin-{n}", f"Evin prison report {n}") for n in range(2 * SEND_CONCURRENCY)]
TITLES = {e.title for e in ITEMS}


class Desk:
    """A webhook endpoint that SIGKILLs the daemon posting to it on its first post.

    ``accepts_first``: the first post is recorded as accepted (the channel took it; the
    daemon dies before it can commit that), else it and every post until ``reopen()``
    are refused unrecorded (the daemon dies before the channel accepted anything). Its
    answer to the killing post comes only after the daemon is dead.
    """

    def __init__(self, *, accepts_first: bool) -> None:
        self.accepts_first = accepts_first
        self.accepted: list[str] = []
        self.before_restart: list[str] = []  # what it accepted from the daemon it killed
        self.victim: int | None = None
        self.killed: str | None = None  # the title of the post that killed the daemon
        self.down = not accepts_first
        self._runner: web.AppRunner | None = None
        self.port = 0

    def reopen(self) -> None:
        self.before_restart = list(self.accepted)
        self.down = False

    async def _handle(self, request: web.Request) -> web.Response:
        title = (await request.json())["title"]
        if self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
            self.victim = None
            self.killed = title
            if self.accepts_first:
                self.accepted.append(title)
            await asyncio.sleep(0.5)  # answer late: the daemon is gone by then
            return web.json_response({"ok": self.accepts_first})
        if self.down:
            return web.json_response({"ok": False}, status=503)
        self.accepted.append(title)
        return web.json_response({"ok": True})

    async def __aenter__(self) -> Desk:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def feeds() -> AsyncIterator[FeedServer]:
    async with FeedServer() as server:
        server.add("/wire.xml", rss(ITEMS, datetime.now(UTC)))
        yield server


def daemon_config(tmp_path: Path, server: FeedServer, desk: Desk) -> Path:
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        f"""
database: sqlite:///{tmp_path / "newsmon.db"}
http:
  timeout: 1s          # also a send's deadline: the outbox lease is 4 s, so a restart is quick
  allow_private_networks: true
polling:
  interval: 1s
feeds:
  - name: wire
    url: {server.url("/wire.xml")}
channels:
  desk:
    url: json://127.0.0.1:{desk.port}/hook
rules:
  - name: evin
    query: '"evin prison"'
"""
    )
    return config


async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
    # The log goes to a file, not a pipe: the daemon's worker processes inherit the pipe,
    # and asyncio waits for every pipe to close before it reports a SIGKILLed parent gone.
    with log.open("ab") as sink:
        return await start_newsmon(config, "run", stdout=asyncio.subprocess.DEVNULL, stderr=sink)


async def crash_and_restart(tmp_path: Path, server: FeedServer, desk: Desk) -> Counter[str]:
    """Run the daemon until the desk kills it, restart it, wait for every alert; return how
    many times the desk accepted each title."""
    config = daemon_config(tmp_path, server, desk)
    log = tmp_path / "daemon.log"
    first = await start(config, log)
    desk.victim = first.pid
    try:
        await asyncio.wait_for(first.wait(), 30)
    finally:
        if first.returncode is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL, log.read_text()
    assert desk.killed in TITLES
    desk.reopen()

    async with await Store.open(f"sqlite:///{tmp_path / 'newsmon.db'}") as store:
        assert len(await store.alerts()) == len(TITLES)  # queued before the crash
        second = await start(config, log)
        try:
            # The killed daemon's leases (4 s) run out, then an outbox tick (5 s) sends.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                running = log.read_text().count("INFO newsmon running") == 2
                if running and {a.status for a in await store.alerts()} == {"sent"}:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # more ticks and polls: nothing else may arrive
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
        assert second.returncode == 0, log.read_text()
        assert [a.status for a in await store.alerts()] == ["sent"] * len(TITLES)
    return Counter(desk.accepted)


@pytest.mark.slow
async def test_killed_before_the_channel_accepted_every_alert_arrives_once(
    tmp_path: Path, feeds: FeedServer
) -> None:
    async with Desk(accepts_first=False) as desk:
        counts = await crash_and_restart(tmp_path, feeds, desk)
    assert counts == Counter(TITLES)  # every alert, none twice


@pytest.mark.slow
async def test_killed_between_acceptance_and_commit_duplicates_only_the_sends_in_flight(
    tmp_path: Path, feeds: FeedServer
) -> None:
    async with Desk(accepts_first=True) as desk:
        counts = await crash_and_restart(tmp_path, feeds, desk)
    # The killed daemon recorded no acceptance: what it got through (the post that killed
    # it and any sent beside it) goes again after the restart, exactly once more.
    in_flight = Counter(desk.before_restart)
    assert desk.killed in in_flight and max(in_flight.values()) == 1
    assert counts == Counter(TITLES) + in_flight
    duplicates = sum(counts.values()) - len(TITLES)
    assert 1 <= duplicates <= SEND_CONCURRENCY, desk.before_restart
