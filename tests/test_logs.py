"""monitor.logs: one line per event, fields from our format strings, hostile text defused."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import load_config_text
from monitor.logs import clean, configure_logging, event_fields
from monitor.scheduler import Daemon
from tests.support.feedserver import FeedServer
from tests.support.receivers import HookReceiver
from tests.test_e2e import Entry, rss

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("newsmon")

# What a hostile feed can put in a title or an error: a line break followed by a forged event,
# terminal escapes that clear the screen or retitle the window, a bidi override.
HOSTILE = (
    "Breaking\n2026-11-23T00:00:00.000Z ERROR newsmon forged rule=x\r"
    "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\x00"
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """configure_logging on a string buffer; the root logger restored afterwards (pytest's
    own capture handlers included)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_text_lines(stream: io.StringIO) -> None:
    configure_logging("INFO", "text", stream)
    log.info("polled feed=%s status=%s new=%d elapsed=%.2fs", "aawsat", 200, 3, 0.4567)
    log.warning("poll failed feed=%s error=%s", "aawsat", "connection refused")
    log.debug("not shown")
    first, second = lines(stream)
    ts, level, logger, message = first.split(" ", 3)
    assert ts.endswith("Z") and ts[10] == "T" and len(ts) == len("2026-11-23T07:10:00.123Z")
    assert (level, logger, message) == (
        "INFO",
        "newsmon",
        "polled feed=aawsat status=200 new=3 elapsed=0.46s",
    )
    # A value with a space is quoted, so the line still splits into key=value pairs.
    assert second.endswith('WARNING newsmon poll failed feed=aawsat error="connection refused"')


def test_json_lines_carry_the_event_fields_with_their_types(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    log.info("polled feed=%s status=%s new=%d elapsed=%.2fs", "ایران-news", 304, 0, 0.25)
    log.info("alert queued rule=%s", "evin", extra={"channel": "desk", "item": "guid-1"})
    (polled, queued) = [json.loads(line) for line in lines(stream)]
    assert polled.pop("ts").endswith("Z")
    assert polled == {
        "level": "INFO",
        "logger": "newsmon",
        "message": "polled feed=ایران-news status=304 new=0 elapsed=0.25s",
        "feed": "ایران-news",
        "status": 304,
        "new": 0,
        "elapsed": 0.25,
    }
    assert (queued["rule"], queued["channel"], queued["item"]) == ("evin", "desk", "guid-1")


def test_fields_come_from_the_format_string_not_from_the_values(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    log.warning("feed malformed feed=%s problem=%s", "wire", "bad xml rule=forged level=DEBUG")
    (event,) = [json.loads(line) for line in lines(stream)]
    assert event["problem"] == "bad xml rule=forged level=DEBUG"
    assert "rule" not in event
    assert event["level"] == "WARNING"


def test_reserved_names_are_never_overwritten(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    log.info("odd level=%s ts=%s", "DEBUG", "yesterday", extra={"logger": "other"})
    (event,) = [json.loads(line) for line in lines(stream)]
    assert (event["level"], event["logger"]) == ("INFO", "newsmon")
    assert event["ts"] != "yesterday"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_hostile_text_cannot_forge_lines_or_reach_the_terminal(
    stream: io.StringIO, fmt: str
) -> None:
    configure_logging("INFO", fmt, stream)  # type: ignore[arg-type]
    log.warning("feed malformed feed=%s problem=%s", "wire", HOSTILE)
    output = stream.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n")
    for raw in ("\r", "\x1b", "\x9b", "\x07", "\x00", "\u202e"):
        assert raw not in output
    if fmt == "json":
        (event,) = [json.loads(line) for line in lines(stream)]
        problem = event["problem"]
    else:
        problem = output.split("problem=", 1)[1].rstrip("\n")
    # The line break and the control characters are visible escapes; the escape sequences are
    # gone entirely.
    assert "Breaking\\n2026-11-23T00:00:00.000Z ERROR newsmon forged rule=x\\r" in problem
    assert "[2J" not in problem and "pwned" not in problem and "31m" not in problem
    assert problem.endswith("\\u202eevil\\x00" + ('"' if fmt == "text" else ""))


def test_clean_keeps_persian_and_arabic_text_intact() -> None:
    text = "می\u200cخواهد — خبر عاجل"  # ZWNJ is part of Persian spelling
    assert clean(text) == text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_urls_with_secrets_are_masked_everywhere(stream: io.StringIO, fmt: str) -> None:
    configure_logging("INFO", fmt, stream)  # type: ignore[arg-type]
    url = "https://reader:hunter2hunter2@feeds.example.org/private.xml?token=s3cr3tT0ken99"
    log.warning("poll failed feed=%s url=%s error=%s", "private", url, f"GET {url}: 500")
    log.info("moved %s", url, extra={"target": url})
    output = stream.getvalue()
    assert "hunter2hunter2" not in output and "s3cr3tT0ken99" not in output
    assert "feeds.example.org/private.xml" in output  # the useful part stays


def test_a_traceback_stays_with_its_event(stream: io.StringIO) -> None:
    configure_logging("INFO", "text", stream)
    try:
        raise RuntimeError("bad\nthing")
    except RuntimeError:
        log.exception("poll failed feed=%s", "wire")
    event, *trace = lines(stream)
    assert event.endswith("ERROR newsmon poll failed feed=wire")
    assert trace and all(line.startswith("  ") for line in trace)
    # Continuation lines are indented, so even a message with a line break cannot start a line
    # that reads as an event of its own.
    assert trace[-2:] == ["  RuntimeError: bad", "  thing"]


def test_json_traceback_is_a_field(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("poll failed feed=%s", "wire")
    (event,) = [json.loads(line) for line in lines(stream)]
    assert event["feed"] == "wire"
    assert event["exc"].startswith("Traceback") and event["exc"].endswith("RuntimeError: boom")


def test_a_broken_log_call_still_logs(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    log.info("two placeholders feed=%s status=%s", "only one")
    (event,) = [json.loads(line) for line in lines(stream)]
    assert "two placeholders" in event["message"] and "feed" not in event


def test_event_fields_without_keys_or_args() -> None:
    record = logging.LogRecord("newsmon", logging.INFO, __file__, 1, "100%% done %s", ("x",), None)
    assert event_fields(record) == {}
    record = logging.LogRecord("newsmon", logging.INFO, __file__, 1, "a=%(a)s", ({"a": 1},), None)
    assert event_fields(record) == {}


def test_levels_and_quiet_libraries(stream: io.StringIO) -> None:
    configure_logging("warning", "text", stream)
    log.info("hidden")
    logging.getLogger("apscheduler.scheduler").info("Added job")
    log.error("shown")
    assert [line.split(" ", 1)[1] for line in lines(stream)] == ["ERROR newsmon shown"]
    with pytest.raises(ValueError):
        configure_logging("LOUD", "text", stream)
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml", stream)  # type: ignore[arg-type]


def test_a_real_process_writes_json_lines_to_stderr() -> None:
    code = (
        "import logging\n"
        "from monitor.logs import configure_logging\n"
        "configure_logging('INFO', 'json')\n"
        "logging.getLogger('newsmon').info('started feeds=%d', 3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (event,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert (event["message"], event["feeds"]) == ("started feeds=3", 3)
    assert done.stdout == ""


async def test_json_events_of_a_match_and_its_delivery_carry_feed_item_rule_channel(
    stream: io.StringIO, tmp_path: Path
) -> None:
    configure_logging("INFO", "json", stream)
    async with FeedServer() as server, HookReceiver(answers=[500]) as hook:
        server.add("/wire.xml", rss([Entry("evin-1", "Fire at Evin prison")], datetime.now(UTC)))
        settings = load_config_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: true}\nweb: {enabled: false}\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
            f"channels:\n  hook:\n    url: {hook.url()}\n"
            "rules:\n  - name: evin\n    query: '\"evin prison\"'\n"
        )
        clock = [datetime.now(UTC)]
        async with Daemon(settings, clock=lambda: clock[0]) as daemon:
            await daemon.poll_once()
            await daemon.deliver()  # 500: retried later
            clock[0] = clock[0].replace(year=clock[0].year + 1)
            await daemon.deliver()
    assert len(hook.accepted) == 1
    events = [json.loads(line) for line in lines(stream)]
    (matched,) = [e for e in events if e["message"].startswith("rule matched")]
    assert (matched["feed"], matched["item"], matched["rule"]) == ("wire", "evin-1", "evin")
    (failed,) = [e for e in events if e["message"].startswith("delivery failed")]
    (sent,) = [e for e in events if e["message"].startswith("delivery sent")]
    for event in (failed, sent):
        assert (event["channel"], event["rule"], event["item"]) == ("hook", "evin", "evin-1")
        assert isinstance(event["delivery"], int)
    assert failed["level"] == "WARNING" and "500" in failed["error"]
    assert sent["delivery"] == failed["delivery"] and sent["attempt"] == 2
