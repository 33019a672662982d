"""Fast feed parsers against feedparser, read the way newsmon reads them.

    .venv/bin/python bench/parser_eval.py              # everything (about 40 s on 2 cores)
    .venv/bin/python bench/parser_eval.py --quick      # real feeds, synthetic and hostile only

Parsers: feedparser (called as monitor.parse does: a BytesIO and the response headers, with
Content-Type defaulting to application/xml), feedparser-rs and fastfeedparser (bytes in; neither
takes headers). Inputs: ../shared/corpora/real-feeds/ (gzip bodies gunzipped), the 2,242 files
of ../shared/corpora/feedparser-tests/tests/ (their ``Header:`` lines go to feedparser), a
synthetic 50-item RSS feed, and a set of hostile documents built here.

Every entry becomes a :class:`View` by newsmon's rules (monitor/parse.py): title, summary and
content through monitor.parse_text (``plain_text`` when the parser types the value text/plain,
else ``html_to_text``), the alternate link resolved against the document URL and kept only when
http(s), the id as written, dates as UTC with ``published`` falling back to ``updated``, empty
entries dropped, repeated guids dropped. Each fast parser's views are then compared with
feedparser's, entry by entry.

Each parser runs in its own worker process with a 2 GiB address-space limit; a document that
takes longer than ``--timeout`` seconds gets the worker killed and counts as a timeout. Times
are measured inside the worker around the parser call alone ("parse"); "normalise" is the
conversion to views (the text cleaning newsmon does whatever the parser).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import multiprocessing as mp
import random
import re
import resource
import statistics
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import fastfeedparser
import feedparser
import feedparser_rs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.parse_text import html_to_text, plain_text  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
REAL = CORPORA / "real-feeds"
FP_TESTS = CORPORA / "feedparser-tests" / "tests"
FP_BASE = "http://127.0.0.1:8097/tests/"  # where feedparser's runner serves its test files
PARSERS = ("feedparser", "feedparser-rs", "fastfeedparser")
FAST = PARSERS[1:]
FIELDS = ("title", "link", "id", "guid", "published", "updated", "summary", "content")
MEMORY_LIMIT = 2 << 30  # a runaway entity expansion dies of MemoryError, not the machine


@dataclass(frozen=True)
class View:
    """One entry as newsmon would store it (before its guid digest and author)."""

    title: str
    link: str | None
    id: str
    published: datetime | None
    updated: datetime | None
    summary: str
    content: str

    @property
    def guid(self) -> str:
        if self.id or self.link:
            return self.id or self.link or ""
        text = f"{self.title}\n{self.summary}".encode()
        return "sha1:" + hashlib.sha1(text, usedforsecurity=False).hexdigest()


@dataclass
class Outcome:
    status: str  # ok, exception, timeout, crash
    error: str = ""
    times: list[float] = field(default_factory=list)  # seconds per parse call
    normalise: float = 0.0  # seconds to turn the result into views
    version: str = ""
    bozo: bool = False
    encoding: str = ""
    views: list[View] = field(default_factory=list)  # kept entries, document order
    raw_dates: int = 0  # entries with a date string the parser could not read
    # feedparser-rs only: its views with the RSS "updated" copy undone, and why the guard
    # would hand the document to feedparser ("" when it would not).
    fixed_views: list[View] = field(default_factory=list)
    unsure: str = ""
    guard_time: float = 0.0


# --- reading each parser's result the newsmon way ------------------------------------------


def text(value: object, kind: object, *, single_line: bool = False) -> str:
    if not isinstance(value, str) or not value:
        return ""
    if kind == "text/plain":
        return plain_text(value, single_line=single_line)
    return html_to_text(value, single_line=single_line)


def absolute(base: str, link: object) -> str | None:
    if not isinstance(link, str) or not link.strip():
        return None
    try:
        resolved = urljoin(base, link.strip())
        parts = urlsplit(resolved)
    except ValueError:
        return None
    return resolved if parts.scheme in ("http", "https") and parts.netloc else None


def date_from_string(raw: object) -> datetime | None:
    """monitor.parse's fallback for dates the parser left unread: ISO 8601, then RFC 822."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        try:
            value = parsedate_to_datetime(raw.strip())
        except (TypeError, ValueError, IndexError):
            return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def date_from_struct(parsed: object, raw: object) -> tuple[datetime | None, bool]:
    """(UTC date, whether a date string was there but unreadable by both means)."""
    if parsed is not None:
        try:
            return datetime(*parsed[:6], tzinfo=UTC), False  # type: ignore[index]
        except (TypeError, ValueError):
            pass
    value = date_from_string(raw)
    return value, value is None and isinstance(raw, str) and bool(raw.strip())


def alternate(links: list[tuple[str, str, str]], link: object) -> str | None:
    """(href, rel, type) triples → the HTML alternate, else any alternate, else ``link``."""
    alternates = [(h, t) for h, r, t in links if (r or "alternate") == "alternate" and h]
    for href, kind in alternates:
        if (kind or "text/html") in ("text/html", "application/xhtml+xml"):
            return href
    if alternates:
        return alternates[0][0]
    return link if isinstance(link, str) else None


def longest(parts: Iterator[tuple[object, object]], summary: str) -> str:
    best = ""
    for value, kind in parts:
        candidate = text(value, kind)
        if len(candidate) > len(best):
            best = candidate
    return "" if best == summary else best


def views_feedparser(doc: Any, base: str) -> tuple[list[View], int]:
    views, unread = [], 0
    for e in doc.get("entries") or []:
        if not isinstance(e, dict) or not e:
            continue

        def detail(key: str, e: dict[str, Any] = e) -> object:
            d = e.get(f"{key}_detail")
            return d.get("type") if isinstance(d, dict) and d.get("value") == e.get(key) else None

        dates = {}
        for key in ("published", "created", "updated"):
            dates[key], bad = date_from_struct(dict.get(e, f"{key}_parsed"), dict.get(e, key))
            unread += bad
        summary = text(e.get("summary"), detail("summary"))
        links = [
            (str(x.get("href") or ""), str(x.get("rel") or ""), str(x.get("type") or ""))
            for x in e.get("links") or []
            if isinstance(x, dict) and isinstance(x.get("href"), str)
        ]
        parts = ((c.get("value"), c.get("type")) for c in e.get("content") or [])
        published = dates["published"] or dates["created"]
        views.append(
            View(
                title=text(e.get("title"), detail("title"), single_line=True),
                link=absolute(base, alternate(links, e.get("link"))),
                id=str(e.get("id") or "").strip(),
                published=published or dates["updated"],
                updated=dates["updated"],
                summary=summary,
                content=longest(parts, summary),
            )
        )
    return views, unread


def views_rs(doc: Any, base: str, *, fix_updated: bool = False) -> tuple[list[View], int]:
    """``fix_updated``: in RSS, feedparser-rs copies <pubDate> into ``updated``; feedparser
    leaves ``updated`` empty unless the item has its own (dc:date, which rs also reports)."""
    views, unread = [], 0
    rss = str(doc.version or "").startswith("rss")
    for e in doc.entries:
        dates = {}
        for key in ("published", "created", "updated"):
            dates[key], bad = date_from_struct(
                getattr(e, f"{key}_parsed", None), getattr(e, key, None)
            )
            unread += bad
        if fix_updated and rss and e.updated == e.published and not e.dc_date:
            dates["updated"] = None

        def kind(d: Any) -> object:
            return getattr(d, "type", None)

        summary = text(e.summary, kind(e.summary_detail))
        links = [(x.href or "", x.rel or "", x.type or "") for x in e.links or []]
        parts = ((c.value, c.type) for c in e.content or [])
        published = dates["published"] or dates["created"]
        views.append(
            View(
                title=text(e.title, kind(e.title_detail), single_line=True),
                link=absolute(base, alternate(links, e.link)),
                id=str(e.id or "").strip(),
                published=published or dates["updated"],
                updated=dates["updated"],
                summary=summary,
                content=longest(parts, summary),
            )
        )
    return views, unread


def views_ffp(doc: Any, base: str) -> tuple[list[View], int]:
    views = []
    for e in doc.get("entries") or []:
        summary = text(e.get("description"), None)
        links = [
            (str(x.get("href") or ""), str(x.get("rel") or ""), str(x.get("type") or ""))
            for x in e.get("links") or []
            if isinstance(x, dict)
        ]
        parts = ((c.get("value"), c.get("type")) for c in e.get("content") or [])
        published = date_from_string(e.get("published")) or date_from_string(e.get("created"))
        updated = date_from_string(e.get("updated"))
        views.append(
            View(
                title=text(e.get("title"), None, single_line=True),
                link=absolute(base, alternate(links, e.get("link"))),
                id=str(e.get("id") or "").strip(),
                published=published or updated,
                updated=updated,
                summary=summary,
                content=longest(parts, summary),
            )
        )
    return views, 0  # fastfeedparser keeps no raw date string to tell "absent" from "unread"


# --- when feedparser-rs is unsure ------------------------------------------------------------

_CDATA = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.DOTALL)
_EMPTY_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:-]*)(?:\s[^<>]*)?/>")
# Self-closing elements that feedparser-rs 0.7.1 reads correctly in RSS (found by probe(),
# which this script runs and prints): elements that carry only attributes, and names it does
# not map to an entry field. Any other self-closing element in an RSS document (<category/>,
# <link/>, <description/>, <dc:creator/>...) makes it skip the next sibling (a <pubDate>, a
# <guid>) or, as an item's last child, the whole next item, with bozo unset.
# A C1 control as a character reference or as UTF-8 (U+0080-U+009F): feedparser reads both as
# the windows-1252 character meant ("don\x92t" -> "don't"); feedparser-rs keeps the control.
_CP1252_REF = re.compile(rb"&#(?:1[2-5][0-9]|x[89][0-9a-fA-F]);|\xc2[\x80-\x9f]")
_ATOM_ENTRY = re.compile(rb"<(?:[\w.-]+:)?entry[\s>]")
_ATOM_UPDATED = re.compile(rb"<(?:[\w.-]+:)?updated[\s>]")
SAFE_EMPTY = frozenset(
    "enclosure media:content media:thumbnail atom:link atom10:link "
    "itunes:image itunes:category feedburner:info cloud image textinput br img hr".split()
)


def unsure(doc: Any, body: bytes, headers: dict[str, str], views: list[View]) -> str:
    """Why newsmon should not trust feedparser-rs on this document ("" when it may)."""
    if doc.bozo:
        return f"bozo: {str(doc.bozo_exception)[:60]}"
    if not views:
        return "no entries"
    charset = headers.get("content-type", "").lower().partition("charset=")[2]
    charset = charset.split(";")[0].strip(" \"'")
    if charset and charset.replace("_", "-") not in (str(doc.encoding).lower(), "utf8"):
        return "charset header differs from the encoding it used"
    if any("\ufffd" in f"{v.title}{v.summary}{v.content}" for v in views):
        return "undecodable bytes (U+FFFD)"
    if str(doc.encoding).lower() in ("utf-8", "utf8") and not _valid_utf8(body):
        return "invalid UTF-8 read as UTF-8 (feedparser falls back to windows-1252)"
    if "content-location" in headers:
        return "Content-Location header (a base it cannot be given)"
    if doc.version == "atom03":
        return "Atom 0.3"
    if _CP1252_REF.search(body):
        return "C1 control character (feedparser reads it as windows-1252)"
    if b"base64" in body:
        return "base64 (it does not decode Atom base64 text)"
    if str(doc.version).startswith("atom"):
        entries = _ATOM_ENTRY.split(body)[1:]
        if any(not _ATOM_UPDATED.search(e) for e in entries):
            return "Atom entry without <updated> (it would copy <published> there)"
    if str(doc.version or "").startswith("rss") or not doc.version:
        for m in _EMPTY_ELEMENT.finditer(_CDATA.sub(b"", body)):
            if m.group(1).decode("latin-1").lower() not in SAFE_EMPTY:
                return f"self-closing <{m.group(1).decode('latin-1')}/>"
    return ""


def _valid_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def probe(names: list[str]) -> dict[str, str]:
    """What a self-closing ``<name/>`` inside an RSS item does to feedparser-rs."""
    ns = " ".join(
        f'xmlns:{p}="{u}"'
        for p, u in [
            ("dc", "http://purl.org/dc/elements/1.1/"),
            ("media", "http://search.yahoo.com/mrss/"),
            ("content", "http://purl.org/rss/1.0/modules/content/"),
            ("atom", "http://www.w3.org/2005/Atom"),
            ("wfw", "http://wellformedweb.org/CommentAPI/"),
            ("itunes", "http://www.itunes.com/dtds/podcast-1.0.dtd"),
            ("slash", "http://purl.org/rss/1.0/modules/slash/"),
        ]
    ) + "".join(
        f' xmlns:{n.split(":")[0]}="urn:x"'
        for n in names
        if n.count(":") == 1
        and n.split(":")[0] not in ("dc", "media", "content", "atom", "wfw", "itunes", "slash")
    )
    date = "<pubDate>Tue, 14 Aug 2012 05:31:45 GMT</pubDate>"
    found = {}
    for name in sorted(set(names)):
        one = f"<item><link>https://e.org/a</link><{name}/>{date}</item>"
        two = f"<item><title>A</title><{name}/></item><item><title>B</title></item>"
        wrap = '<rss version="2.0" {}><channel><title>T</title>{}</channel></rss>'
        a = feedparser_rs.parse(wrap.format(ns, one).encode())
        b = feedparser_rs.parse(wrap.format(ns, two).encode())
        lost = []
        if a.entries and not a.entries[0].published:
            lost.append("next sibling" + (" (bozo)" if a.bozo else ", bozo unset"))
        if len(b.entries) < 2:
            lost.append("next item" + (" (bozo)" if b.bozo else ", bozo unset"))
        found[name] = "; ".join(lost)
    return found


def parse_feedparser(body: bytes, headers: dict[str, str]) -> Any:
    headers = {"content-type": "application/xml", **headers}
    return feedparser.parse(io.BytesIO(body), response_headers=headers)


def parse_rs(body: bytes, headers: dict[str, str]) -> Any:
    return feedparser_rs.parse(body)  # bytes are never taken for a URL (a str would be)


def parse_ffp(body: bytes, headers: dict[str, str]) -> Any:
    return fastfeedparser.parse(body)  # bytes: as above


ADAPTERS: dict[str, tuple[Callable[..., Any], Callable[[Any, str], tuple[list[View], int]]]] = {
    "feedparser": (parse_feedparser, views_feedparser),
    "feedparser-rs": (parse_rs, views_rs),
    "fastfeedparser": (parse_ffp, views_ffp),
}


def kept(views: list[View]) -> list[View]:
    """Empty entries and repeated guids dropped, as monitor.parse does."""
    seen: set[str] = set()
    out = []
    for v in views:
        if not (v.title or v.link or v.id or v.summary or v.content or v.published):
            continue
        if v.guid not in seen:
            seen.add(v.guid)
            out.append(v)
    return out


# --- worker processes with a timeout -------------------------------------------------------


def meta(doc: Any, key: str) -> object:
    return doc.get(key) if isinstance(doc, dict) else getattr(doc, key, None)


def serve(conn: Any, name: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    sys.setrecursionlimit(10_000)
    parse, to_views = ADAPTERS[name]
    while True:
        job = conn.recv()
        if job is None:
            return
        body, headers, url, repeats = job
        out = Outcome("ok")
        try:
            for _ in range(repeats):
                started = time.perf_counter()
                doc = parse(body, headers)
                out.times.append(time.perf_counter() - started)
            spent = []
            for _ in range(repeats):
                started = time.perf_counter()
                views, out.raw_dates = to_views(doc, url)
                out.views = kept(views)
                spent.append(time.perf_counter() - started)
            out.normalise = statistics.median(spent)
            if name == "feedparser-rs":
                started = time.perf_counter()
                out.unsure = unsure(doc, body, headers, out.views)
                if out.raw_dates and not out.unsure:
                    out.unsure = "a date it could not read"
                out.guard_time = time.perf_counter() - started
                out.fixed_views = kept(views_rs(doc, url, fix_updated=True)[0])
            out.version, out.bozo, out.encoding = (
                str(meta(doc, "version") or ""),
                bool(meta(doc, "bozo")),
                str(meta(doc, "encoding") or ""),
            )
        except (Exception, MemoryError, RecursionError) as exc:
            out = Outcome("exception", f"{type(exc).__name__}: {exc}"[:160])
        conn.send(out)


class Worker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.start()

    def start(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(
            target=serve, args=(child, self.name), daemon=True
        )
        self.proc.start()

    def run(
        self, body: bytes, headers: dict[str, str], url: str, repeats: int, timeout: float
    ) -> Outcome:
        self.conn.send((body, headers, url, repeats))
        if not self.conn.poll(timeout):
            self.restart()
            return Outcome("timeout", f"over {timeout:g} s")
        try:
            result: Outcome = self.conn.recv()
            return result
        except EOFError:
            code = self.proc.exitcode
            self.restart()
            return Outcome("crash", f"worker died (exit {code})")

    def restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.start()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    corpus: str
    name: str
    body: bytes
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def unpacked(body: bytes) -> bytes:
    if body[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(body)
        except (OSError, EOFError):
            return body
    if body[:1] == b"\x78":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return body
    return body


def real_feeds() -> list[Doc]:
    return [
        Doc(
            "real",
            p.relative_to(REAL).as_posix(),
            unpacked(p.read_bytes()),
            f"https://feeds.example.org/{p.name}",
        )
        for p in sorted(REAL.rglob("*"))
        if p.suffix in (".xml", ".rss", ".atom")
    ]


def fp_tests() -> list[Doc]:
    docs = []
    for path in sorted(FP_TESTS.rglob("*")):
        if not path.is_file():
            continue
        body = unpacked(path.read_bytes())
        headers = {}
        for line in body[:4000].decode("latin-1").split("-->", 1)[0].splitlines():
            key, _, value = line.strip().partition(":")
            if key == "Header":
                name, _, val = value.strip().partition(":")
                headers[name.strip().lower()] = val.strip()
        rel = path.relative_to(FP_TESTS).as_posix()
        docs.append(Doc("fp-tests", rel, body, FP_BASE + rel, headers))
    return docs


WORDS = (
    "minister treaty parliament sanctions talks energy grain export court ruling election "
    "protest border ceasefire inflation central bank rate budget strike union port shipping "
    "pipeline refinery drone attack prison release delegation summit agreement signed "
    "official statement spokesman reported according sources said week month capital region"
).split()


def synthetic(items: int = 50, seed: int = 9) -> bytes:
    """A realistic news RSS 2.0 feed: HTML description (~600 chars), content:encoded (~3 KB)."""
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    parts = []
    for i in range(items):
        desc = "".join(f"<p>{sentence(14)} {sentence(12)}</p>" for _ in range(3))
        body = "".join(
            f"<p>{sentence(18)} <b>{sentence(6)}</b> {sentence(15)}</p>" for _ in range(8)
        )
        parts.append(
            f"<item><title>{sentence(9)} &amp; {sentence(3)}</title>"
            f"<link>https://news.example.com/2024/05/{i:03d}/story.html?utm_source=rss</link>"
            f'<guid isPermaLink="false">news-example-{10_000 + i}</guid>'
            f"<pubDate>Wed, {1 + i % 28:02d} May 2024 {i % 24:02d}:{i % 60:02d}:00 +0200</pubDate>"
            f"<dc:creator>Reporter {i % 7}</dc:creator><category>World</category>"
            f"<description><![CDATA[{desc}]]></description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        "<title>Example News</title><link>https://news.example.com/</link>"
        "<description>World news</description>" + "".join(parts) + "</channel></rss>"
    ).encode()


def rss(items: str, head: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return f'{head}<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'


def hostile() -> list[Doc]:
    ok = (
        "<item><title>Caf\u00e9 {n}</title><link>https://e.org/{n}</link><guid>g{n}</guid>"
        "<pubDate>Mon, 06 May 2024 10:00:00 GMT</pubDate></item>"
    )
    three = "".join(ok.format(n=n) for n in range(3))
    bomb = "".join(
        f'<!ENTITY e{n} "{f"&e{n - 1};" * 10}">' if n else '<!ENTITY e0 "boom">' for n in range(10)
    )
    head = '<?xml version="1.0"?>'
    cases: dict[str, bytes | tuple[bytes, dict[str, str]]] = {
        "billion laughs": (
            f"{head}<!DOCTYPE rss [{bomb}]>"
            + rss("<item><title>&e9;</title><guid>1</guid></item>", head="")
        ).encode(),
        "quadratic blowup": (
            f'{head}<!DOCTYPE rss [<!ENTITY a "{"x" * 50_000}">]>'
            + rss(f"<item><title>{'&a;' * 2_000}</title><guid>1</guid></item>", head="")
        ).encode(),
        "external entity (XXE)": (
            f'{head}<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
            + rss("<item><title>leak:&x;</title><guid>1</guid></item>", head="")
        ).encode(),
        "bare & in a link": rss(
            "<item><title>A</title><link>https://e.org/a?x=1&y=2</link></item>" + three
        ).encode(),
        "truncated mid-item": rss(three).encode()[:-60],
        "unclosed tag mid-feed": rss(
            ok.format(n=0) + "<item><title>B<b>bold</title><guid>gb</guid></item>" + ok.format(n=2)
        ).encode(),
        "latin-1 bytes declared utf-8": rss(three).encode("latin-1"),
        "windows-1251, header says utf-8": (
            rss(
                three.replace("Caf\u00e9", "\u041d\u043e\u0432\u043e\u0441\u0442\u0438"),
                head='<?xml version="1.0" encoding="windows-1251"?>',
            ).encode("cp1251"),
            {"content-type": "text/xml; charset=utf-8"},
        ),
        "utf-8, no declaration, header says iso-8859-1": (
            rss(three, head="").encode(),
            {"content-type": "text/xml; charset=iso-8859-1"},
        ),
        "utf-16 with BOM": rss(three, head='<?xml version="1.0" encoding="utf-16"?>').encode(
            "utf-16"
        ),
        "NUL bytes in a title": rss(three.replace("Caf\u00e9 1", "A\x00B")).encode(),
        "control chars in a title": rss(three.replace("Caf\u00e9 1", "A\x1b[2JB")).encode(),
        "HTML page": b"<!doctype html><html><head><title>x</title></head><body>hi</body></html>",
        "empty body": b"",
        "random bytes": random.Random(1).randbytes(4096),
        "deep nesting": rss("<item><title>" + "<x>" * 100_000 + "</title></item>").encode(),
        "5,000 items": rss("".join(ok.format(n=n) for n in range(5_000))).encode(),
        "odd dates": rss(
            "".join(
                f"<item><title>d{n}</title><guid>d{n}</guid><pubDate>{d}</pubDate></item>"
                for n, d in enumerate(
                    [
                        "Mon, 32 Foo 2024 10:00:00 GMT",
                        "2024-13-45T10:00:00Z",
                        "yesterday",
                        "Sun, 06 Nov 1994 08:49:37 EST",
                        "Sun, 6 Nov 1994 08:49 +0530",
                        "2024-05-06",
                        "2024-05-06 10:00:00",
                        "06 May 2024",
                        "0",
                        "",
                        "Tue, 07 May 2024 25:61:00 +0000",
                        "9999-12-31T23:59:59Z",
                    ]
                )
            )
        ).encode(),
    }
    docs = []
    for name, value in cases.items():
        body, headers = value if isinstance(value, tuple) else (value, {})
        docs.append(Doc("hostile", name, body, "https://e.org/feed.xml", headers))
    return docs


# --- comparison -----------------------------------------------------------------------------


@dataclass
class Tally:
    files: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # status → files
    count_differs: int = 0
    entries: int = 0  # feedparser entries compared
    agree: Counter[str] = field(default_factory=Counter)
    invented: int = 0  # a date where feedparser has none
    dropped: int = 0  # feedparser items the fast parser silently lacks (it parsed "fine")
    extra: int = 0
    fallback: Counter[str] = field(default_factory=Counter)  # guarded row: why feedparser ran
    times: list[float] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, category: str, example: str, limit: int) -> None:
        self.examples[category].append(example)
        del self.examples[category][limit:]


def short(value: object) -> str:
    s = repr(value)
    return s if len(s) <= 70 else s[:67] + "..."


def compare(doc: Doc, ref: Outcome, fast: Outcome, tally: Tally, limit: int) -> None:
    tally.files += 1
    if fast.status != "ok":
        tally.failed[fast.status] += 1
        if ref.views:
            tally.note(f"failed ({fast.status})", f"{doc.name}: {fast.error}", limit)
        return
    tally.times.append(statistics.median(fast.times))
    want, got = ref.views, fast.views
    if len(want) != len(got):
        tally.count_differs += 1
        tally.note("entry count", f"{doc.name}: feedparser {len(want)}, this {len(got)}", limit)
    if len(want) == len(got):
        pairs = list(zip(want, got, strict=True))
    else:
        by_guid = {v.guid: v for v in got}
        pairs = [(w, by_guid.get(w.guid)) for w in want]  # type: ignore[misc]
    tally.extra += max(0, len(got) - len(want))
    for w, g in pairs:
        tally.entries += 1
        if g is None:
            tally.dropped += 1
            tally.note("dropped item", f"{doc.name}: {short(w.title or w.guid)}", limit)
            continue
        for name in FIELDS:
            a, b = getattr(w, name), getattr(g, name)
            if a == b:
                tally.agree[name] += 1
                continue
            if name in ("published", "updated") and a is None:
                tally.invented += 1
                category = f"{name}: date invented"
            elif name in ("published", "updated") and b is None:
                category = f"{name}: date lost"
            else:
                category = f"{name}: differs"
            tally.note(category, f"{doc.name}: feedparser {short(a)} / this {short(b)}", limit)


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}" if total else "-"


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f}"


def report(corpus: str, ref_times: list[float], tallies: dict[str, Tally]) -> None:
    print(f"\n### {corpus}\n")
    print(
        "| parser | files | exc/timeout/crash | count differs | entries | "
        + " | ".join(FIELDS)
        + " | dates invented | dropped | fallbacks | median ms | p95 ms |"
    )
    print("|" + "---|" * (10 + len(FIELDS)))
    print(
        f"| feedparser | {len(ref_times)} | | | | "
        + " | ".join("ref" for _ in FIELDS)
        + f" | | | | {ms(ref_times, 0.5)} | {ms(ref_times, 0.95)} |"
    )
    for name, t in tallies.items():
        failed = "/".join(str(t.failed[s]) for s in ("exception", "timeout", "crash"))
        fields = " | ".join(pct(t.agree[f], t.entries) for f in FIELDS)
        print(
            f"| {name} | {t.files} | {failed} | {t.count_differs} | {t.entries} | {fields} | "
            f"{t.invented} | {t.dropped} | {t.fallback.total() or ''} | "
            f"{ms(t.times, 0.5)} | {ms(t.times, 0.95)} |"
        )


def examples(corpus: str, tallies: dict[str, Tally]) -> None:
    for name, t in tallies.items():
        if not t.examples:
            continue
        print(f"\n#### {corpus}: {name}\n")
        for category, lines in sorted(t.examples.items()):
            print(f"- **{category}**")
            for line in lines:
                print(f"  - {line}")


GUARDED = "feedparser-rs, guarded"


def guarded(out: Outcome, ref: Outcome, tally: Tally) -> Outcome:
    """The recommended fast path: feedparser-rs with its RSS ``updated`` copy undone, and
    feedparser's result wherever the guard (or a failure) says feedparser-rs is unsure."""
    rs_time = statistics.median(out.times) + out.guard_time if out.status == "ok" else 0.0
    reason = out.unsure if out.status == "ok" else out.status
    if not reason:
        return Outcome("ok", times=[rs_time], views=out.fixed_views)
    tally.fallback[reason.split(":")[0] if reason.startswith("bozo") else reason] += 1
    if ref.status != "ok":
        return ref
    return Outcome("ok", times=[rs_time + statistics.median(ref.times)], views=ref.views)


def run_corpus(
    label: str,
    docs: list[Doc],
    workers: dict[str, Worker],
    args: argparse.Namespace,
    repeats: int,
) -> None:
    tallies = {name: Tally() for name in (*FAST, GUARDED)}
    ref_times: list[float] = []
    ref_failed = Counter[str]()
    for doc in docs:
        ref = workers["feedparser"].run(doc.body, doc.headers, doc.url, repeats, args.timeout)
        if ref.status != "ok":
            ref_failed[ref.status] += 1
        else:
            ref_times.append(statistics.median(ref.times))
        for name in FAST:
            out = workers[name].run(doc.body, doc.headers, doc.url, repeats, args.timeout)
            compare(doc, ref, out, tallies[name], args.examples)
            if name == "feedparser-rs":
                compare(
                    doc, ref, guarded(out, ref, tallies[GUARDED]), tallies[GUARDED], args.examples
                )
    report(label, ref_times, tallies)
    for reason, n in tallies[GUARDED].fallback.most_common():
        print(f"- {GUARDED} fell back to feedparser: {n} × {reason}")
    if ref_failed:
        print(f"\nfeedparser itself: {dict(ref_failed)}")
    examples(label, tallies)


def run_hostile(workers: dict[str, Worker], timeout: float) -> None:
    print("\n### hostile documents (entries kept; first title; status)\n")
    print("| case | " + " | ".join(PARSERS) + " |")
    print("|---|" + "---|" * len(PARSERS))
    for doc in hostile():
        cells = []
        for name in PARSERS:
            out = workers[name].run(doc.body, doc.headers, doc.url, 1, timeout)
            if out.status != "ok":
                cells.append(f"{out.status}: {out.error[:60]}")
                continue
            first = out.views[0] if out.views else None
            title = short(first.title[:40]) if first else "-"
            dates = sum(v.published is not None for v in out.views)
            flag = " bozo" if out.bozo else ""
            cells.append(
                f"{len(out.views)} kept, {dates} dated, {1000 * out.times[0]:.1f} ms{flag}; {title}"
            )
        print(f"| {doc.name} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")


def run_synthetic(workers: dict[str, Worker], repeats: int, timeout: float) -> None:
    body = synthetic()
    print(f"\n### synthetic 50-item RSS feed ({len(body) // 1024} KiB), {repeats} runs each\n")
    print("| parser | parse median ms | parse p95 ms | + normalise ms | total | speed-up |")
    print("|---|---|---|---|---|---|")
    base = 0.0
    for name in PARSERS:
        out = workers[name].run(body, {}, "https://news.example.com/rss", repeats, timeout)
        if out.status != "ok":
            print(f"| {name} | {out.status}: {out.error} |")
            continue
        median = statistics.median(out.times)
        total = median + out.normalise
        base = base or total
        print(
            f"| {name} | {1000 * median:.2f} | {ms(out.times, 0.95)} | "
            f"{1000 * out.normalise:.2f} | {1000 * total:.2f} | {base / total:.1f}× |"
        )


def gil_check(rounds: int = 20) -> None:
    """Two threads parsing at once: does the parser let the other thread run?"""
    body = synthetic()
    print("\n### two threads at once (synthetic feed; 1.0 = no gain, 2.0 = GIL released)\n")
    for name in PARSERS:
        parse = ADAPTERS[name][0]

        def work(n: int, parse: Callable[..., Any] = parse) -> None:
            for _ in range(n):
                parse(body, {})

        started = time.perf_counter()
        work(2 * rounds)
        alone = time.perf_counter() - started
        threads = [threading.Thread(target=work, args=(rounds,)) for _ in range(2)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = time.perf_counter() - started
        print(f"- {name}: {alone / both:.2f}× throughput with 2 threads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="skip the 2,242 feedparser tests")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per document")
    ap.add_argument("--examples", type=int, default=4, help="examples per category")
    args = ap.parse_args()
    versions = {
        n: getattr(m, "__version__", "?")
        for n, m in zip(PARSERS, (feedparser, feedparser_rs, fastfeedparser), strict=True)
    }
    print(f"## parser_eval: {versions}, Python {sys.version.split()[0]}")
    workers = {name: Worker(name) for name in PARSERS}
    try:
        for w in workers.values():  # warm-up: imports, lazy tables
            w.run(synthetic(5), {}, "https://e.org/", 3, args.timeout)
        run_synthetic(workers, 50, args.timeout)
        if REAL.is_dir():
            run_corpus("real-feeds", real_feeds(), workers, args, repeats=5)
        if FP_TESTS.is_dir() and not args.quick:
            run_corpus("feedparser-tests", fp_tests(), workers, args, repeats=1)
        run_corpus("hostile", hostile(), workers, args, repeats=1)
        run_hostile(workers, args.timeout)
    finally:
        for w in workers.values():
            w.close()
    gil_check()
    names = [
        *"title link description author category comments guid pubDate source".split(),
        *"content:encoded dc:creator dc:date dc:subject wfw:commentRss slash:comments".split(),
        *"itunes:duration foo x:bar".split(),
        *SAFE_EMPTY,
    ]
    print("\n### feedparser-rs and a self-closing <name/> inside an RSS item\n")
    for name, effect in probe(names).items():
        print(f"- <{name}/>: {effect or 'read correctly'}")


if __name__ == "__main__":
    main()
