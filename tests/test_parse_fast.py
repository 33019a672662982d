"""parse_fast.py: the feedparser-rs path gives the items feedparser's path gives, or stands aside.

Every file of the real-feeds and feedparser-tests corpora is parsed twice, with the fast path
and without it; the items must be equal. On top of that, the two rules docs/parsers.md holds
as never allowed are asserted on their own: the fast path never dates an item feedparser
leaves undated, and never leaves out an item feedparser keeps.
"""

from __future__ import annotations

import gzip
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor import parse_fast
from monitor.parse import ParsedFeed, parse_feed

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
REAL = CORPORA / "real-feeds"
FP_TESTS = CORPORA / "feedparser-tests" / "tests"
FP_BASE = "http://127.0.0.1:8097/tests/"

pytestmark = pytest.mark.skipif(not parse_fast.AVAILABLE, reason="feedparser-rs not installed")


def rss(items: str, ns: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0" {ns}><channel><title>T</title>'
        f"<link>https://example.org/</link>{items}</channel></rss>"
    ).encode()


def both(body: bytes, url: str, headers: dict[str, str]) -> tuple[ParsedFeed, ParsedFeed]:
    fast = parse_feed(body, feed="t", url=url, headers=headers)
    slow = parse_feed(body, feed="t", url=url, headers=headers, fast=False)
    return fast, slow


def corpus(name: str) -> list[tuple[str, bytes, str, dict[str, str]]]:
    """(name, body, url, headers) for each file, as the fetcher would hand it over."""
    docs = []
    if name == "real-feeds":
        for path in sorted(REAL.rglob("*")):
            if path.suffix in (".xml", ".rss", ".atom"):
                data = path.read_bytes()
                body = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
                docs.append((path.name, body, "https://example.org/feed.xml", {}))
    else:
        for path in sorted(FP_TESTS.rglob("*")):
            if not path.is_file():
                continue
            body = path.read_bytes()
            headers = {}
            for line in body[:4000].decode("latin-1").split("-->", 1)[0].splitlines():
                key, _, value = line.strip().partition(":")
                if key == "Header":
                    header, _, header_value = value.strip().partition(":")
                    headers[header.strip().lower()] = header_value.strip()
            relative = path.relative_to(FP_TESTS).as_posix()
            docs.append((relative, body, FP_BASE + relative, headers))
    return docs


# Files that must take the fast path at least this often: a guard that always says "unsure"
# would pass the agreement test and be no use (measured: 6 of 16 and 207 of 2,248).
FAST_AT_LEAST = {"real-feeds": 5, "feedparser-tests": 150}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("real-feeds", marks=pytest.mark.skipif(not REAL.is_dir(), reason="absent")),
        pytest.param(
            "feedparser-tests", marks=pytest.mark.skipif(not FP_TESTS.is_dir(), reason="absent")
        ),
    ],
)
def test_fast_path_gives_the_items_feedparser_gives(name: str) -> None:
    reasons: Counter[str] = Counter()
    disagreements: list[str] = []
    for doc, body, url, headers in corpus(name):
        fast, slow = both(body, url, headers)
        reasons[parse_fast.read(body, headers).unsure or fast.parser] += 1
        # Never allowed: an item feedparser keeps that the fast path lacks, or a date
        # feedparser does not give.
        theirs = {item.guid: item for item in slow.items}
        ours = {item.guid: item for item in fast.items}
        for guid in theirs.keys() - ours.keys():
            disagreements.append(f"{doc}: dropped {guid}")
        for guid in theirs.keys() & ours.keys():
            for stamp in ("published", "updated"):
                if getattr(theirs[guid], stamp) is None and getattr(ours[guid], stamp):
                    disagreements.append(f"{doc}: {stamp} invented for {guid}")
        # And beyond those: the same items, fields and order, and the same feed.
        if fast.items != slow.items:
            pairs = zip(fast.items, slow.items, strict=False)
            first = next(((a, b) for a, b in pairs if a != b), (len(fast.items), len(slow.items)))
            disagreements.append(f"{doc}: items differ: {first}")
        if (fast.title, fast.link, fast.version) != (slow.title, slow.link, slow.version):
            disagreements.append(f"{doc}: feed differs: {fast} / {slow}")
    print(f"\n{name}: {dict(reasons.most_common())}")
    assert not disagreements, "\n".join(disagreements[:20])
    assert reasons["fast"] >= FAST_AT_LEAST[name]


def test_a_self_closing_element_falls_back() -> None:
    # wapowellness.xml: <category/> before <pubDate> makes feedparser-rs 0.7.1 skip the date,
    # with bozo unset; 9 of its 29 items came out undated.
    body = rss(
        "<item><title>A</title><link>https://example.org/a</link><category/>"
        "<pubDate>Tue, 14 Aug 2012 05:31:45 GMT</pubDate></item>"
    )
    assert parse_fast.read(body, {}).unsure == "self-closing <category/>"
    parsed = parse_feed(body, feed="t", url="https://example.org/feed.xml")
    assert parsed.parser == "feedparser"
    assert parsed.items[0].published == datetime(2012, 8, 14, 5, 31, 45, tzinfo=UTC)


def test_the_self_closing_bug_is_still_there_and_the_allowlist_is_safe() -> None:
    # The guard is tied to feedparser-rs 0.7.1. An upgrade that fixes the bug fails the first
    # assertion (the allowlist may then grow); one that breaks an allowed name, the second.
    import feedparser_rs

    date = "<pubDate>Tue, 14 Aug 2012 05:31:45 GMT</pubDate>"
    ns = (
        'xmlns:media="http://search.yahoo.com/mrss/" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:atom10="http://www.w3.org/2005/Atom" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
        'xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"'
    )

    def dated(name: str) -> bool:
        doc: Any = feedparser_rs.parse(rss(f"<item><title>A</title><{name}/>{date}</item>", ns))
        return bool(doc.entries and doc.entries[0].published)

    assert not dated("category")
    assert [name for name in sorted(parse_fast.SAFE_EMPTY) if not dated(name)] == []


def test_a_url_as_the_body_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    # feedparser-rs fetches a str that starts with http://; parse_feed hands it bytes only.
    def no_network(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    parsed = parse_feed(b"http://127.0.0.1:9/x", feed="t", url="https://example.org/feed.xml")
    assert parsed.items == ()
    assert parsed.problem is not None
    text: Any = "http://127.0.0.1:9/x"
    assert parse_fast.read(text, {}).unsure == "body is not bytes"


def test_the_copied_updated_date_is_undone_in_rss() -> None:
    ns = 'xmlns:dc="http://purl.org/dc/elements/1.1/"'
    body = rss(
        '<item><guid isPermaLink="false">1</guid><title>A</title>'
        "<pubDate>Tue, 14 Aug 2012 05:31:45 GMT</pubDate>"
        '</item><item><guid isPermaLink="false">2</guid><title>B</title>'
        "<pubDate>Tue, 14 Aug 2012 05:31:45 GMT</pubDate>"
        "<dc:date>2012-08-15T00:00:00Z</dc:date></item>",
        ns,
    )
    fast, slow = both(body, "https://example.org/feed.xml", {})
    assert fast.parser == "fast"
    assert fast.items == slow.items
    first, second = fast.items
    assert first.updated is None  # feedparser-rs alone says 2012-08-14
    assert second.updated == datetime(2012, 8, 15, tzinfo=UTC)


def test_a_plain_news_feed_takes_the_fast_path() -> None:
    ns = 'xmlns:content="http://purl.org/rss/1.0/modules/content/"'
    body = rss(
        "".join(
            f"<item><title>Story {n} &amp; more</title>"
            f"<link>https://example.org/{n}</link><guid isPermaLink='false'>g{n}</guid>"
            f"<pubDate>Wed, 01 May 2024 10:{n:02d}:00 +0200</pubDate>"
            f"<description><![CDATA[<p>Teaser {n}</p>]]></description>"
            f"<content:encoded><![CDATA[<p>Body</p><p>{n}</p>]]></content:encoded></item>"
            for n in range(50)
        ),
        ns,
    )
    fast, slow = both(body, "https://example.org/feed.xml", {})
    assert (fast.parser, slow.parser) == ("fast", "feedparser")
    assert fast.items == slow.items and len(fast.items) == 50
    assert fast.items[0].published == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert fast.items[0].updated is None


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (rss("<item><title>Caf\xe9</title></item>").replace(b"\xc3\xa9", b"\xe9"), {}, "UTF-8"),
        (rss("<item><title>A&#146;s</title></item>"), {}, "C1 control"),
        (
            rss("<item><title>A</title></item>"),
            {"content-type": "text/xml; charset=koi8-r"},
            "charset",
        ),
        (rss("<item><title>A</title></item>"), {"content-location": "/x"}, "Content-Location"),
        (rss("<item><title>A</title><link>/a</link></item>"), {}, "relative <link>"),
        (rss("<item><title>A</title><pubDate>yesterday</pubDate></item>"), {}, ""),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><entry><id>1</id>'
            b"<title>t</title><published>2024-01-01T00:00:00Z</published></entry></feed>",
            {},
            "without <updated>",
        ),
    ],
)
def test_the_guard_stands_aside(body: bytes, headers: dict[str, str], reason: str) -> None:
    assert reason in parse_fast.read(body, headers).unsure
    fast, slow = both(body, "https://example.org/feed.xml", headers)
    assert fast.parser == "feedparser"  # an unreadable date is judged by feedparser too
    assert fast == slow


@pytest.mark.parametrize(
    "guid",
    [
        "<guid>new-1</guid>",  # a relative permalink: the fast path must stand aside
        "<guid>https://news.example/g1</guid>",  # an absolute one listed before <link>
        '<guid isPermaLink="false">new-1</guid>',
    ],
)
def test_an_rss_link_keeps_its_query_whatever_the_guid_before_it(guid: str) -> None:
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>'
        f"<link>https://news.example/</link><item>{guid}<title>T</title>"
        "<link>https://news.example/new-1?utm_source=rss</link></item></channel></rss>"
    ).encode()
    fast = parse_feed(body, feed="w", url="http://127.0.0.1/x", fast=True)
    slow = parse_feed(body, feed="w", url="http://127.0.0.1/x", fast=False)
    assert fast.items == slow.items
    assert fast.items[0].url == "https://news.example/new-1?utm_source=rss"
