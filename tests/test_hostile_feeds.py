"""Hostile documents, through a real `newsmon poll --once` process and a real local server.

One daemon process polls many feeds at once, each serving one kind of bad document, next to a
good feed. Each bad feed must end in a clear reason on its own log line (or in items stored as
data), the good feed must be polled as if nothing happened, and the process must exit 0.

Also here: hostile configuration (at `check`, at start and at reload: the old config stays), and
feed text that tries to act on the log or the terminal (format strings, escape sequences, a
forged log line).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from monitor.config import ConfigError, load_config, load_config_text
from monitor.model import Item
from monitor.rules import compile_rules
from monitor.scheduler import Daemon
from monitor.store import Store
from tests.support.daemon import newsmon, start_newsmon
from tests.support.feedserver import FeedServer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
REAL_FEEDS = Path(os.environ.get("NEWSMON_CORPORA", REPO.parent / "shared/corpora")) / "real-feeds"

NOW = datetime.now(UTC)


def rss(items: str, *, head: str = "", title: str = "t") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{head}<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://site.example/</link>{items}</channel></rss>"
    ).encode()


def item(guid: str, title: str, *, date: str | None = None, link: str | None = None) -> str:
    when = format_datetime(NOW - timedelta(minutes=5)) if date is None else date
    href = link if link is not None else f"https://site.example/{guid}"
    return (
        f"<item><guid>{escape(guid)}</guid><title>{escape(title)}</title>"
        f"<link>{escape(href)}</link><pubDate>{when}</pubDate></item>"
    )


FEED = rss(item("g1", "Tehran talks resume") + item("g2", "Markets open"))


def _laughs(separator: str) -> bytes:
    # Ten levels of ten: 10^9 "lol"s (3 GB) if expanded.
    entities = separator.join(
        f'<!ENTITY e{n} "{f"&e{n - 1};" * 10}">' if n else '<!ENTITY e0 "lol">' for n in range(10)
    )
    head = f"{separator}<!DOCTYPE rss [{separator}{entities}{separator}]>{separator}"
    return rss(item("boom", "&e9;") + item("ok", "Still readable"), head=head).replace(
        b"&amp;e9;", b"&e9;"
    )


# Single-line and multi-line DTDs take different paths through feedparser (its regex that
# strips unsafe entities reads them differently); both must end bounded.
BILLION_LAUGHS = (_laughs(""), _laughs("\n"))

# 10,000 entries of about 1.4 kB: 14 MB, just under http.max_body's default (15 MB).
ITEMS_FEED = rss(
    "".join(
        item(f"n{n}", f"Item {n} " + "words " * 10) + "<!--" + "x" * 1200 + "-->"
        for n in range(10_000)
    )
)


def xxe(target: str, *, parameter: bool = False, external_dtd: bool = False) -> bytes:
    """A feed whose DTD asks for `target`: as an external entity, a parameter entity, or as
    the external DTD itself (whose `ext` entity the item uses)."""
    if parameter:
        head = f'<!DOCTYPE rss [<!ENTITY % ext SYSTEM "{target}"> %ext;]>'
        return rss(item("x1", "before after"), head=head)
    if external_dtd:
        head = f'<!DOCTYPE rss SYSTEM "{target}">'
    else:
        head = f'<!DOCTYPE rss [<!ENTITY ext SYSTEM "{target}">]>'
    return rss(item("x1", "before &ext; after"), head=head).replace(b"&amp;ext;", b"&ext;")


@dataclass
class Run:
    code: int
    out: str
    err: str
    items: dict[str, list[Item]]  # stored items by feed
    server: FeedServer

    def log(self, feed: str) -> list[str]:
        # Values holding spaces are quoted in the log: compare them unquoted.
        lines = self.err.splitlines()
        return [line.replace('"', "") for line in lines if f"feed={feed} " in line + " "]


def feeds_yaml(server: FeedServer, names: list[str], *, extra: str = "") -> str:
    return "".join(
        f"  - name: {name}\n    url: {server.url(f'/{name}')}\n{extra}" for name in names
    )


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text("SECRET-MARKER-7f3a")
    return path


@pytest.fixture
async def hostile(tmp_path: Path, secret_file: Path) -> AsyncIterator[Run]:
    async with FeedServer() as server:
        dtd = server.url("/evil.dtd")
        server.add("/evil.dtd", b'<!ENTITY ext "FROM-THE-NETWORK">', content_type="text/plain")
        documents: dict[str, tuple[bytes, str]] = {
            "good": (FEED, "application/rss+xml"),
            "laughs-line": (BILLION_LAUGHS[0], "application/rss+xml"),
            "laughs-lines": (BILLION_LAUGHS[1], "application/rss+xml"),
            "xxe-file": (xxe(secret_file.as_uri()), "application/rss+xml"),
            "xxe-http": (xxe(dtd), "application/rss+xml"),
            "xxe-param": (xxe(dtd, parameter=True), "application/rss+xml"),
            "xxe-dtd": (xxe(dtd, external_dtd=True), "application/rss+xml"),
            "challenge": (
                b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                b"<noscript>Enable JavaScript and cookies to continue</noscript></body></html>",
                "text/html",
            ),
            "empty": (b"", "application/rss+xml"),
            "dates": (
                rss(
                    item("bad-date", "Undated really", date="the 32nd of Smarch")
                    + item("future", "From the future", date="Fri, 01 Jan 2099 00:00:00 GMT")
                    + item("iso-junk", "Junk ISO", date="2024-13-45T99:99:99Z")
                ),
                "application/rss+xml",
            ),
            "many": (ITEMS_FEED, "application/rss+xml"),
            "dupes": (
                rss(item("same", "First") + item("same", "Second") + item("other", "Third")),
                "application/rss+xml",
            ),
            "binary": (os.urandom(4096), "application/octet-stream"),
        }
        for name, (body, content_type) in documents.items():
            server.add(f"/{name}", body, content_type=content_type)
        # Real feeds with a wrong or missing charset in Content-Type.
        corpus = REAL_FEEDS / "node-feedparser"
        if corpus.is_dir():
            iconv = (corpus / "iconv.xml").read_bytes()  # windows-1251, declared in the document
            server.add("/cp1251-no-charset", iconv, content_type="text/xml")
            server.add("/cp1251-says-utf8", iconv, content_type="application/xml; charset=utf-8")
            # gzip on disk (a windows-1251 feed inside): sent as is, as a compressing server would.
            compressed = (corpus / "compressed.xml").read_bytes()
            server.add("/gzip-real", compressed, headers={"Content-Encoding": "gzip"})
            documents |= {
                n: (b"", "") for n in ("cp1251-no-charset", "cp1251-says-utf8", "gzip-real")
            }
        database = tmp_path / "newsmon.db"
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: sqlite:///{database}\n"
            "http: {allow_private_networks: true}\n"
            "polling: {interval: 1h}\n"
            f"feeds:\n{feeds_yaml(server, list(documents))}"
            "channels:\n  console: {url: 'console://'}\n"
        )
        code, out, err = await newsmon(config, "poll", "--once")
        store = await Store.open(f"sqlite:///{database}")
        try:
            stored = await store.items_since(NOW - timedelta(days=1))
        finally:
            await store.close()
        by_feed: dict[str, list[Item]] = {}
        for one in stored:
            by_feed.setdefault(one.feed, []).append(one)
        yield Run(code, out, err, by_feed, server)


async def test_each_hostile_document_is_a_reason_and_the_good_feed_is_untouched(
    hostile: Run,
) -> None:
    run = hostile
    assert run.code == 0, run.err
    assert "Traceback" not in run.err and "internal error" not in run.err, run.err
    # The good feed, polled in the same process at the same time, is as if alone.
    assert [i.guid for i in run.items["good"]] == ["g1", "g2"]
    assert any("polled feed=good status=200 new=2" in line for line in run.log("good"))

    # Billion laughs: stopped by expat's amplification limit or never expanded. The document's
    # harmless item survives; the bomb's item holds no expansion.
    for name in ("laughs-line", "laughs-lines"):
        titles = [i.title for i in run.items[name]]
        assert "Still readable" in titles and all(len(t) < 100 for t in titles), titles
        assert any("feed malformed but usable" in line for line in run.log(name)), run.err

    # Pages and bytes that are not feeds: the feed fails with the reason.
    def failed(name: str, reason: str) -> None:
        lines = run.log(name)
        assert any("poll failed" in line and reason in line for line in lines), (name, lines)
        assert name not in run.items

    failed("challenge", "error=not a feed: looks like HTML")
    failed("empty", "error=not a feed: empty body")
    failed("binary", "error=not a feed")

    # Dates: unreadable ones are no date, a date in 2099 is kept as the feed says.
    dates = {i.guid: i.published for i in run.items["dates"]}
    assert dates["bad-date"] is None and dates["iso-junk"] is None
    assert dates["future"] == datetime(2099, 1, 1, tzinfo=UTC)

    # 10,000 entries: the first 1,000 kept, the rest counted in the log.
    assert len(run.items["many"]) == 1000
    assert any("feed truncated feed=many dropped=9000" in line for line in run.err.splitlines())

    # One document repeating a guid: stored once, first entry wins, nothing fails.
    dupes = {i.guid: i.title for i in run.items["dupes"]}
    assert dupes == {"same": "First", "other": "Third"}


async def test_external_entities_are_never_resolved(hostile: Run) -> None:
    run = hostile
    # No request for the DTD or entity reached the server, no local file was read.
    assert run.server.hits("/evil.dtd") == 0
    everything = run.out + run.err + repr(run.items)
    assert "SECRET-MARKER" not in everything and "FROM-THE-NETWORK" not in everything
    for name in ("xxe-file", "xxe-http", "xxe-param", "xxe-dtd"):
        titles = [i.title for i in run.items[name]]
        assert titles and all("before" in t for t in titles), (name, titles)


# A document that keeps feedparser busy for seconds: 8 MB of escaped HTML in one description
# for its sanitiser to walk (about a microsecond a byte here), and a guid that is no URL, which
# keeps the document off the fast path.
SLOW_FEED = rss(
    "<item><guid>slow-1</guid><title>Slow</title><description>"
    + "&lt;p&gt;&lt;b&gt;w&lt;/b&gt; x&lt;/p&gt;" * 200_000
    + "</description></item>"
)


async def test_a_parse_over_the_configured_worker_limit_fails_that_feed_alone(
    tmp_path: Path,
) -> None:
    async with FeedServer() as server:
        server.add("/good", FEED, content_type="application/rss+xml")
        server.add("/slow", SLOW_FEED, content_type="application/rss+xml")
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
            "http: {allow_private_networks: true}\n"
            "workers: {timeout: 1s}\n"
            f"feeds:\n{feeds_yaml(server, ['slow', 'good'])}"
        )
        code, out, err = await newsmon(config, "poll", "--once")
    run = Run(code, out, err, {}, server)
    assert code == 0, err
    assert "Traceback" not in err, err
    slow = run.log("slow")
    assert any("poll failed" in line for line in slow), slow
    assert any("error=worker stopped: task ran longer than 1s" in line for line in slow), slow
    assert any("polled feed=good status=200 new=2" in line for line in run.log("good")), err


@pytest.mark.skipif(not REAL_FEEDS.is_dir(), reason=f"no corpus at {REAL_FEEDS}")
async def test_wrong_or_missing_charsets_still_read_the_words(hostile: Run) -> None:
    for name in ("cp1251-no-charset", "cp1251-says-utf8"):
        titles = [i.title for i in hostile.items[name]]
        assert len(titles) == 10, (name, hostile.log(name))
        assert all(re.search("[А-Яа-я]{3}", t) for t in titles), titles


@pytest.mark.skipif(not REAL_FEEDS.is_dir(), reason=f"no corpus at {REAL_FEEDS}")
async def test_a_real_gzip_encoded_feed_is_decoded_and_read(hostile: Run) -> None:
    assert hostile.server.hits("/gzip-real") == 1
    log = hostile.log("gzip-real")
    assert any("polled feed=gzip-real status=200 new=10" in line for line in log), log
    titles = [i.title for i in hostile.items["gzip-real"]]
    assert len(titles) == 10, log
    assert "В Бузулуке главные стройплощадки – детсад и Ледовый дворец" in titles, titles


# --- feed text reaches the log and the terminal as data ----------------------------------------

HOSTILE_TITLE = "Evin prison %s%n%(x)s {0} \x1b[2J\x1b]0;owned\x07 \r\nFAKE LOG LINE ok"


async def test_feed_text_never_acts_on_the_log_or_terminal(tmp_path: Path) -> None:
    async with FeedServer() as server:
        base = server.url("/a")
        link = f"{base}/%s%n\x1b[2J\r\nFAKE LOG LINE"
        server.add("/daily", rss(item("t1", HOSTILE_TITLE, link=link)))
        config = tmp_path / "newsmon.yaml"
        full_text = "    full_text: true\n"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
            "http: {allow_private_networks: true}\n"
            "polling: {backlog_window: 1s}\n"
            f"feeds:\n{feeds_yaml(server, ['daily'], extra=full_text)}"
            "channels:\n  console: {url: 'console://'}\n"
            "rules:\n  - {name: evin, query: '\"evin prison\"'}\n"
        )
        # Baseline poll (nothing alerts), then the hostile item arrives as news.
        server.add("/daily", rss(item("t0", "Weather", date=format_datetime(NOW))))
        code, _out, err = await newsmon(config, "poll", "--once")
        assert code == 0, err
        server.add("/daily", rss(item("t1", HOSTILE_TITLE, link=link)))
        code, out, err = await newsmon(config, "poll", "--once")
    assert code == 0, err
    # The title alerted (so it went all the way through) ...
    assert "Evin prison %s%n%(x)s {0}" in out, out + err
    # ... and the article fetch for its link failed and was logged, link included, as data.
    assert "article fetch failed feed=daily" in err, err
    for stream in (out, err):
        assert "\x1b" not in stream and "\x07" not in stream
        assert not any(line.startswith("FAKE LOG LINE") for line in stream.splitlines())
    # Every line is one of ours (the daemon's logger, or a module's under monitor.): none
    # was started by a line break the feed smuggled in.
    log_line = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ (newsmon|monitor(\.\w+)+) "
    )
    assert all(log_line.match(line) for line in err.splitlines()), err


# --- hostile configuration ------------------------------------------------------------------

GOOD_CONFIG = """
database: sqlite:///{db}
feeds:
  - {{name: wire, url: "https://wire.example/feed.xml"}}
channels:
  console: {{url: "console://"}}
rules:
  - {{name: first, query: evin}}
"""

BROKEN = {
    "invalid YAML": ("rules: [unclosed\n  - {name: x", r":\d+:\d+: "),
    "rule that does not parse": (
        "rules:\n  - {name: bad, query: 'evin AND (prison'}\n",
        r"newsmon\.yaml:\d+:\d+: .*\(",
    ),
    "missing variable": (
        "channels:\n  hook: {url: 'json://${NEWSMON_TEST_UNSET_VAR}/'}\n",
        r"NEWSMON_TEST_UNSET_VAR",
    ),
    "regex with a backreference": (
        "rules:\n  - {name: backref, query: '/(a+)\\1/'}\n",
        r"newsmon\.yaml:\d+:\d+: ",
    ),
}


def write_config(path: Path, db: Path, tail: str = "") -> None:
    text = GOOD_CONFIG.format(db=db)
    if tail:
        section = tail.split(":", 1)[0]
        # Replace the section the broken text redefines, keep the rest.
        kept = re.split(rf"\n{section}:", text)[0]
        text = kept + "\n" + tail
    path.write_text(text)


@pytest.mark.parametrize("case", list(BROKEN))
async def test_broken_config_is_refused_at_check_and_at_reload(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    tail, reason = BROKEN[case]
    config, db = tmp_path / "newsmon.yaml", tmp_path / "db.sqlite"
    os.environ.pop("NEWSMON_TEST_UNSET_VAR", None)
    write_config(config, db, tail)
    code, out, err = await newsmon(config, "check")
    assert code == 1, out + err
    assert re.search(reason, err), err
    assert "Traceback" not in err

    # The daemon refuses to start on it, with the very reason `check` gave.
    proc = await start_newsmon(config, "run")
    try:
        _out, raw = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # still running: the config was accepted
            proc.kill()
            await proc.wait()
    run_err = raw.decode(errors="replace")
    assert proc.returncode == 1, run_err
    assert err.strip() and all(line in run_err for line in err.splitlines()), (err, run_err)
    assert "Traceback" not in run_err

    # A running daemon keeps its config when the file turns bad.
    write_config(config, db)
    async with Daemon(load_config(config)) as daemon:
        write_config(config, db, tail)
        assert await daemon.reload(str(config)) is False
        assert re.search(reason, caplog.text) and "reload refused" in caplog.text
        write_config(config, db)
        assert await daemon.reload(str(config)) is True


async def test_a_regex_that_would_backtrack_forever_runs_in_linear_time(tmp_path: Path) -> None:
    settings = load_config_text(
        f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
        "channels:\n  console: {url: 'console://'}\n"
        "rules:\n  - {name: redos, query: '/(a+)+$/'}\n"
    )
    rules = compile_rules(settings.rule_values(), settings.aliases)
    hostile = Item(feed="f", guid="g", url=None, title="a" * 50_000 + "!", summary="")
    loop = asyncio.get_running_loop()
    started = loop.time()
    matched = rules.match(hostile)
    assert loop.time() - started < 2.0
    assert not matched


def test_load_config_errors_are_config_errors_not_crashes(tmp_path: Path) -> None:
    config = tmp_path / "newsmon.yaml"
    for tail, _reason in BROKEN.values():
        write_config(config, tmp_path / "db.sqlite", tail)
        with pytest.raises(ConfigError):
            load_config(config)
