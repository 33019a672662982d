"""The `newsmon` commands of DESIGN.md, run for real: in-process `main()` or a subprocess."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import model
from monitor.cli import main
from monitor.store import Store
from tests.support.daemon import newsmon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver

REPO = Path(__file__).resolve().parents[1]
REAL_FEEDS = REPO.parent / "shared" / "corpora" / "real-feeds"

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>1</guid><title>Protest outside Evin Prison</title><link>https://x.example/1</link></item>
<item><guid>2</guid><title>Markets</title><link>https://x.example/2</link></item>
</channel></rss>"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_module_and_console_script_are_the_same_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and out.stdout.startswith("newsmon ")
    script = Path(sys.executable).with_name("newsmon")
    assert subprocess.run([script, "--version"], capture_output=True).returncode == 0


def test_init_writes_a_config_that_checks_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "cfg")]) == 0
    config = tmp_path / "cfg" / "newsmon.yaml"
    assert config.is_file()
    assert main(["--config", str(config), "check"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["init", str(tmp_path / "cfg")]) == 1
    assert "not overwritten" in capsys.readouterr().err


def test_repo_default_config_checks() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "check"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"ok: 1\d feeds, 2 rules, \d+ channels", out.stdout), out.stdout


def test_check_reports_every_error_with_file_line_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        tmp_path / "bad.yaml",
        "http:\n  tiemout: 5s\nfeeds:\n  - name: a\n    url: https://a.example/feed\n"
        "    interval: soon\nrules:\n  - name: r\n    query: 'evin AND'\n",
    )
    assert main(["--config", str(config), "check"]) == 1
    err = capsys.readouterr().err
    assert f"{config}:2:3:" in err  # the unknown key
    assert f"{config}:6:15:" in err  # the bad duration's value
    assert f"{config}:9:" in err and "AND" in err  # the broken query, inside the file
    assert len(err.strip().splitlines()) >= 3


def test_check_with_a_missing_variable_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSMON_TEST_TOKEN", raising=False)
    config = write(
        tmp_path / "c.yaml",
        "feeds: []\nchannels:\n  s:\n    url: 'slack://${NEWSMON_TEST_TOKEN}/#x'\n",
    )
    assert main(["--config", str(config), "check"]) == 1
    assert "NEWSMON_TEST_TOKEN" in capsys.readouterr().err


def test_missing_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "none.yaml"), "check"]) == 1
    assert "no such config file" in capsys.readouterr().err


def test_send_test_through_console_and_an_unreachable_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        tmp_path / "c.yaml",
        "feeds: []\nchannels:\n  console:\n    url: console://\n"
        "  down:\n    url: 'json://user:hunter2@127.0.0.1:9/hook'\n",
    )
    assert main(["--config", str(config), "send-test", "console"]) == 0
    out = capsys.readouterr().out
    assert "newsmon test alert" in out and "console: delivered" in out
    assert main(["--config", str(config), "send-test", "down"]) == 1
    captured = capsys.readouterr()
    assert "down: failed" in captured.err
    assert "hunter2" not in captured.err + captured.out
    assert main(["--config", str(config), "send-test", "nope"]) == 1


def test_rules_test_over_a_feed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "f.xml"
    feed.write_bytes(RSS)
    config = write(
        tmp_path / "c.yaml",
        "feeds: []\nchannels:\n  console:\n    url: console://\n"
        "rules:\n  - name: evin\n    query: '\"evin prison\"'\n  - name: other\n    query: gold\n",
    )
    assert main(["--config", str(config), "rules", "test", str(feed)]) == 0
    out = capsys.readouterr().out
    assert "[Evin Prison]" in out
    assert "2 items tested; matches: evin: 1, other: 0" in out
    assert main(["--config", str(config), "rules", "test", "--rule", "nope", str(feed)]) == 1


async def test_state_commands_after_a_real_poll(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FeedServer() as server, HookReceiver([500]) as hook:
        server.add("/f.xml", RSS)
        config = write(
            tmp_path / "c.yaml",
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http:\n  allow_private_networks: true\n"
            f"feeds:\n  - name: local\n    url: {server.url('/f.xml')}\n"
            f"  - name: missing\n    url: {server.url('/gone.xml')}\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: evin\n    query: '\"evin prison\"'\n",
        )

        # Run the commands in a subprocess: they own their event loop.
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "monitor", "--config", str(config), *args],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
            )

        # First poll is a baseline for dated items; these are undated, so nothing alerts.
        first = await asyncio.to_thread(cli, "poll", "--once")
        assert first.returncode == 0, first.stderr
        assert "2 new items" in first.stdout and "1 failed" in first.stdout
        server.add(
            "/f.xml",
            RSS.replace(
                b"<guid>2</guid><title>Markets</title><link>https://x.example/2</link>",
                b"<guid>3</guid><title>Evin prison visits suspended</title>"
                b"<link>https://x.example/3</link>",
            ),
        )
        second = await asyncio.to_thread(cli, "poll", "--once")
        assert "1 new items" in second.stdout and "retrying 1" in second.stdout, second.stdout

        feeds = await asyncio.to_thread(cli, "feeds")
        assert feeds.returncode == 0
        assert "local" in feeds.stdout and "missing" in feeds.stdout
        assert "HTTP 404" in feeds.stdout

        alerts = await asyncio.to_thread(cli, "alerts")
        assert "pending" in alerts.stdout and "Evin prison visits suspended" in alerts.stdout
        assert "500" in alerts.stdout  # the last error, shown for the unsent alert

        stories = await asyncio.to_thread(cli, "stories")
        assert stories.returncode == 0 and "Evin prison visits suspended" in stories.stdout


def test_rules_test_explain_shows_each_clause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "f.xml"
    feed.write_bytes(RSS)
    config = write(
        tmp_path / "c.yaml",
        "feeds: []\nchannels:\n  console:\n    url: console://\n"
        "aliases:\n  EVIN: [Evin, اوین]\n"
        "rules:\n  - name: evin\n    query: '@EVIN AND prison*'\n"
        "  - name: treaty\n    query: 'treaty AND ratif*'\n",
    )
    args = ["--config", str(config), "rules", "test", str(feed), "--explain"]
    assert main([*args, "https://x.example/1"]) == 0
    out = capsys.readouterr().out
    assert "Protest outside Evin Prison" in out
    assert "rule evin: match" in out and '✓ @EVIN  (title: "Evin")' in out
    assert "rule treaty: no match" in out and '✗ ratif*  (no word starting with "ratif")' in out
    assert main([*args, "2"]) == 0  # by GUID
    assert "Markets" in capsys.readouterr().out
    assert main([*args, "https://nowhere.example/"]) == 1
    assert "no item with GUID or URL" in capsys.readouterr().err


def test_check_reports_a_broken_channel_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "alert.j2").write_text("{{ item.title }\n")  # unclosed expression
    config = write(
        tmp_path / "c.yaml",
        "feeds: []\nchannels:\n  desk:\n    url: 'json://user:hunter2@127.0.0.1:9/x'\n"
        "    template: alert.j2\n",
    )
    assert main(["--config", str(config), "check"]) == 1
    err = capsys.readouterr().err
    assert "channels.desk:" in err and "alert.j2" in err and "hunter2" not in err


def stored(feed: str, guid: str, title: str) -> model.ItemRecord:
    """An item as `newsmon poll` would store it, for filling a corpus through the Store API."""
    url = f"https://{feed}.example/{guid}"
    item = model.Item(feed=feed, guid=guid, url=url, title=title, summary="")
    return model.ItemRecord(item, url, f"hash-{feed}-{guid}", f"story-{feed}-{guid}", False, None)


async def store_items(database: str, feed: str, at: datetime, *records: model.ItemRecord) -> None:
    """Store `records` as items of `feed` fetched at `at` (a poll of `feed` at that moment)."""
    async with await Store.open(database) as store:
        if feed not in {f.name for f in await store.feed_states()}:
            await store.sync_feeds([model.Feed(feed, f"https://{feed}.example/feed", MINUTE)], at)
        update = model.FeedUpdate(feed, at, at + MINUTE, True)
        await store.apply(model.Decision(feed=feed, items=records), update)


MINUTE = timedelta(minutes=1)
# Three rules over the same words: one for every feed, one for the feeds tagged world, one for
# the feed named local. Only the first sees items of a feed the config does not know.
FILTERED_RULES = (
    "rules:\n  - name: evin\n    query: '\"evin prison\"'\n"
    "  - name: evin-world\n    query: '\"evin prison\"'\n    feeds: [tag:world]\n"
    "  - name: evin-local\n    query: '\"evin prison\"'\n    feeds: [local]\n"
)


async def test_rules_test_over_the_stored_corpus_since(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    async with FeedServer() as server:
        server.add("/f.xml", RSS)
        config = write(
            tmp_path / "c.yaml",
            f"database: {database}\nhttp:\n  allow_private_networks: true\n"
            f"feeds:\n  - name: local\n    url: {server.url('/f.xml')}\n    tags: [world]\n"
            "channels:\n  console:\n    url: console://\n" + FILTERED_RULES,
        )
        code, out, err = await newsmon(config, "poll", "--once")
        assert code == 0 and "2 new items" in out, out + err
    # An archive feed, no longer configured, polled 40 days ago.
    old = datetime.now(UTC) - timedelta(days=40)
    await store_items(database, "archive", old, stored("archive", "a1", "Evin prison in 1990"))

    code, out, err = await newsmon(config, "rules", "test")  # the default: the last 30 days
    assert code == 0, err
    assert "Protest outside Evin Prison" in out and "1990" not in out
    assert "2 items tested; matches: evin: 1, evin-world: 1, evin-local: 1" in out
    assert "skipped" not in out

    code, out, err = await newsmon(config, "rules", "test", "--since", "60d")
    assert code == 0, err
    assert "[Evin prison] in 1990" in out
    assert "3 items tested; matches: evin: 2, evin-world: 1, evin-local: 1" in out
    assert "2 (item, rule) pairs skipped by the rules' feeds: filters" in out

    # --explain finds any stored item, whatever --since says.
    code, out, err = await newsmon(config, "rules", "test", "--explain", "a1")
    assert code == 0, err
    assert "archive" in out and "rule evin: match" in out
    code, out, err = await newsmon(config, "rules", "test", "--explain", "https://x.example/1")
    assert code == 0 and "Protest outside Evin Prison" in out, out + err

    code, out, err = await newsmon(config, "rules", "test", "--since", "3x")
    assert code == 2
    assert "--since: invalid duration '3x'" in err and "Traceback" not in err, err


def test_rules_test_goes_through_every_stored_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = write(
        tmp_path / "c.yaml",
        f"database: {database}\nfeeds: []\nchannels:\n  console:\n    url: console://\n"
        "rules:\n  - name: evin\n    query: '\"evin prison\"'\n",
    )
    now = datetime.now(UTC)
    many = [stored("wire", f"n{n}", f"Markets, day {n}") for n in range(10_050)]
    asyncio.run(store_items(database, "wire", now - 2 * MINUTE, *many))
    asyncio.run(store_items(database, "wire", now - MINUTE, stored("wire", "last", "Evin prison")))

    assert main(["--config", str(config), "rules", "test", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "10051 items tested; matches: evin: 1" in out  # the newest item too, past 10,000
    assert main(["--config", str(config), "rules", "test", "--explain", "last"]) == 0
    assert "rule evin: match" in capsys.readouterr().out


async def test_rules_test_over_a_feed_url_uses_the_configured_feed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = write(tmp_path / "f.xml", RSS.decode())
    async with FeedServer() as server:
        server.add("/f.xml", RSS)
        url = server.url("/f.xml")
        config = write(
            tmp_path / "c.yaml",
            "http:\n  allow_private_networks: true\n"
            f"feeds:\n  - name: local\n    url: {url}\n    tags: [world]\n"
            "channels:\n  console:\n    url: console://\n" + FILTERED_RULES,
        )

        async def rules_test(*args: str) -> int:  # its own event loop, in a thread
            return await asyncio.to_thread(main, ["--config", str(config), "rules", "test", *args])

        # The URL of a configured feed: its items are that feed's, tags and all.
        assert await rules_test(url) == 0
        out = capsys.readouterr().out
        assert f"{url}: tested as feed 'local' (tags: world)" in out
        assert "evin-local  local" in out and "[Evin Prison]" in out
        assert "2 items tested; matches: evin: 1, evin-world: 1, evin-local: 1" in out
        assert "skipped" not in out

    # Another source is a feed no rule's feeds: names, unless --feed says which one it is.
    assert await rules_test(str(feed)) == 0
    out = capsys.readouterr().out
    assert "2 items tested; matches: evin: 1, evin-world: 0, evin-local: 0" in out
    assert "4 (item, rule) pairs skipped by the rules' feeds: filters; add --feed NAME" in out
    assert await rules_test("--feed", "local", str(feed)) == 0
    out = capsys.readouterr().out
    assert "tested as feed 'local'" in out
    assert "2 items tested; matches: evin: 1, evin-world: 1, evin-local: 1" in out
    assert await rules_test("--feed", "local", "--explain", "1", str(feed)) == 0
    assert "rule evin-local: match" in capsys.readouterr().out

    assert await rules_test("--feed", "nope", str(feed)) == 1
    assert "no feed named 'nope' (configured: local)" in capsys.readouterr().err
    assert await rules_test("--feed", "local") == 2
    assert "--feed needs a FEED_FILE_OR_URL" in capsys.readouterr().err
