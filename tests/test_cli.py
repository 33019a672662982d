"""The `newsmon` commands of DESIGN.md, run for real: in-process `main()` or a subprocess."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
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
