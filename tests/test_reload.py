"""Hot reload of a running `newsmon run` process: real process, real feed server, real webhook.

A change to a rule file (or a new one under `rule_files`) is picked up without a restart and the
next matching item alerts; a broken rule file is reported problem by problem, file:line:column,
and the running rules go on alerting; SIGHUP reloads what the watcher cannot see.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config
from tests.support.daemon import start_newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver
from tests.test_e2e import Entry, rss

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

OLD = [Entry("old-1", "Weather in Tehran", age=timedelta(days=2))]
EVIN_1 = Entry("evin-1", "Fire reported at Evin Prison in Tehran")
EVIN_2 = Entry("evin-2", "Lawyers barred from visiting inmates of Evin prison")
TREATY = Entry("treaty-1", "Parliament ratifies the new transit treaty")


def rule_file(name: str, query: str) -> str:
    return f"rules:\n  - name: {name}\n    query: '{query}'\n"


@dataclass
class Daemon:
    """A `newsmon run` subprocess; its stderr is collected line by line as it comes."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode())

    def mark(self) -> int:
        """A position in the log; `wait_for_log(after=mark)` looks only at what came later."""
        return len(self.lines)

    async def wait_for_log(self, text: str, *, after: int = 0, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            await asyncio.sleep(0.05)
        raise AssertionError(f"no log line with {text!r}; log:\n{''.join(self.lines)}")

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 30)
        if self.reader is not None:
            await self.reader
        assert self.proc.returncode == 0, "".join(self.lines)


@dataclass
class World:
    server: FeedServer
    hook: HookReceiver
    config: Path
    rules: Path  # the directory that `rule_files: [rules/*.yaml]` matches
    daemon: Daemon
    now: datetime

    def publish(self, *entries: Entry) -> None:
        self.server.add("/wire.xml", rss([*OLD, *entries], self.now))

    async def alert_for(self, title: str, *, count: int) -> None:
        """Wait until the webhook accepted `count` alerts, the last one about `title`."""
        posts = await self.hook.wait_for(count, timeout=15)
        assert len(posts) == count, [p.body for p in posts] + ["".join(self.daemon.lines)]
        assert title in posts[-1].body["title"], posts[-1].body


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FeedServer() as server, HookReceiver() as hook:
        now = datetime.now(UTC)
        server.add("/wire.xml", rss(OLD, now))
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "desk.yaml").write_text(rule_file("desk", "nomatchwordxx"))
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"""
database: sqlite:///{tmp_path / "newsmon.db"}
http:
  timeout: 10s
  allow_private_networks: true   # the test feed is on 127.0.0.1
polling:
  interval: 1s
feeds:
  - name: wire
    url: {server.url("/wire.xml")}
channels:
  hook:
    url: {hook.url("/hook")}
rule_files: [rules/*.yaml]
"""
        )
        proc = await start_newsmon(config, "run", stdout=asyncio.subprocess.DEVNULL)
        daemon = Daemon(proc)
        daemon.reader = asyncio.create_task(daemon._read())
        try:
            # The first poll is the baseline (the old item is stored, never alerted).
            await daemon.wait_for_log("polled feed=wire", timeout=30)
            yield World(server, hook, config, rules, daemon, now)
            await daemon.stop()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_an_edited_or_new_rule_file_applies_without_a_restart(world: World) -> None:
    daemon = world.daemon
    mark = daemon.mark()
    (world.rules / "desk.yaml").write_text(rule_file("desk", '"evin prison"'))
    await daemon.wait_for_log("reloaded feeds=1 rules=1", after=mark)
    world.publish(EVIN_1)
    await world.alert_for("Fire reported at Evin Prison", count=1)

    # A file that appears under the glob counts as a change too.
    mark = daemon.mark()
    (world.rules / "treaties.yaml").write_text(rule_file("treaties", "treaty AND ratif*"))
    await daemon.wait_for_log("reloaded feeds=1 rules=2", after=mark)
    world.publish(EVIN_1, TREATY)
    await world.alert_for("ratifies the new transit treaty", count=2)
    assert "treaties" in world.hook.accepted[-1].body["message"]


async def test_a_broken_rule_file_is_reported_and_the_running_rules_stay(world: World) -> None:
    daemon = world.daemon
    desk = world.rules / "desk.yaml"
    mark = daemon.mark()
    desk.write_text(rule_file("desk", '"evin prison"'))
    await daemon.wait_for_log("reloaded feeds=1 rules=1", after=mark)

    mark = daemon.mark()
    desk.write_text(
        "rules:\n"
        "  - name: desk\n"
        "    query: '\"evin prison\" AND (fire'\n"  # unclosed parenthesis
        "  - name: second\n"
        "    query: fire\n"
        "    channel: [hook]\n"  # unknown key (channels)
    )
    with pytest.raises(ConfigError) as broken:
        load_config(world.config)
    assert len(broken.value.problems) == 2
    for problem in broken.value.problems:
        line = await daemon.wait_for_log(f"reload refused: {problem}", after=mark)
        assert re.search(r"ERROR newsmon reload refused: /\S+/rules/desk\.yaml:\d+:\d+: ", line)
    assert str(broken.value.problems[0]).startswith(f"{desk}:3:")
    assert str(broken.value.problems[1]).startswith(f"{desk}:6:5: rules[1].channel: unknown key")

    # The rules that ran before the broken edit still run.
    world.publish(EVIN_1)
    await world.alert_for("Fire reported at Evin Prison", count=1)
    assert not any("reloaded" in line for line in daemon.lines[mark:])

    # Fixed: applied on the next look.
    mark = daemon.mark()
    desk.write_text(rule_file("desk", '"evin prison"') + rule_file("second", "lawyers")[6:])
    await daemon.wait_for_log("reloaded feeds=1 rules=2", after=mark)


async def test_sighup_reloads_even_what_the_watcher_cannot_see(world: World) -> None:
    daemon = world.daemon
    desk = world.rules / "desk.yaml"
    # Same size, same inode, and the old mtime put back: to the watcher nothing changed.
    before = desk.stat()
    desk.write_text(rule_file("desk", '"evin prison"'))
    os.utime(desk, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = desk.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    mark = daemon.mark()
    await asyncio.sleep(1.5)  # more than a watcher look and its settle time
    assert not any("reloaded" in line for line in daemon.lines[mark:])

    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_for_log("reloaded feeds=1 rules=1", after=mark)
    world.publish(EVIN_2)
    await world.alert_for("Lawyers barred from visiting inmates of Evin prison", count=1)


async def test_new_http_settings_take_effect_without_a_restart(world: World) -> None:
    daemon = world.daemon
    mark = daemon.mark()
    text = world.config.read_text()
    world.config.write_text(
        text.replace("allow_private_networks: true", "allow_private_networks: false")
    )
    await daemon.wait_for_log("reloaded feeds=1", after=mark)
    # The next poll goes through a fetcher built from the new settings: 127.0.0.1 is refused.
    line = await daemon.wait_for_log("poll failed feed=wire", after=mark, timeout=15)
    assert "refused address 127.0.0.1 (loopback)" in line
