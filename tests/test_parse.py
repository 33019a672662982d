"""parse.py: feed bytes → Items, checked against real feeds and feedparser's own test corpus."""

from __future__ import annotations

import ast
import codecs
import gzip
import importlib.util
import json
import os
import random
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from monitor.model import Item
from monitor.parse import ParsedFeed, parse_feed
from monitor.parse_text import html_to_text, plain_text

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
REAL = CORPORA / "real-feeds"
FP_TESTS = CORPORA / "feedparser-tests" / "tests"
# Where feedparser's own runner serves its test files; some expectations name this host.
FP_BASE = "http://127.0.0.1:8097/tests/"

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real-feeds corpus absent: {REAL}")
needs_fp = pytest.mark.skipif(
    not FP_TESTS.is_dir(), reason=f"feedparser test corpus absent: {FP_TESTS}"
)


def parse(body: bytes | str, **kwargs: Any) -> ParsedFeed:
    data = body.encode() if isinstance(body, str) else body
    kwargs.setdefault("url", "https://example.org/feed.xml")
    return parse_feed(data, feed="test", **kwargs)


def rss(items: str, channel: str = "<title>T</title><link>https://example.org/</link>") -> str:
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{channel}{items}</channel></rss>'


# --- text ---------------------------------------------------------------------------------


def test_title_markup_and_entities_become_plain_text() -> None:
    doc = rss("<item><title>&lt;b&gt;Iran&lt;/b&gt; &amp;amp; Russia</title><guid>1</guid></item>")
    assert parse(doc).items[0].title == "Iran & Russia"


@pytest.mark.parametrize(
    "title",
    [
        # Escaped once in RSS: feedparser types it text/plain (script is no "safe" tag), so it
        # reaches us with the script intact.
        "&lt;script&gt;alert(1)&lt;/script&gt;Hello",
        # Escaped twice: HTML that feedparser sanitises.
        "&lt;b&gt;Hello&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
        "<![CDATA[<script type='text/javascript'>alert(1)</script>Hello]]>",
    ],
)
def test_script_in_a_title_never_survives(title: str) -> None:
    item = parse(rss(f"<item><title>{title}</title><guid>1</guid></item>")).items[0]
    assert item.title == "Hello"


def test_script_in_an_atom_text_title_never_survives() -> None:
    doc = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><entry><id>urn:1</id>'
        '<title type="text">&lt;script&gt;alert(1)&lt;/script&gt;Hello</title></entry></feed>'
    )
    assert parse(doc).items[0].title == "Hello"


def test_plain_text_keeps_angle_brackets_that_are_words() -> None:
    doc = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><entry><id>urn:1</id>'
        '<title type="text">Why a &lt; b &amp;&amp; the &lt;blink&gt; tag</title></entry></feed>'
    )
    assert parse(doc).items[0].title == "Why a < b && the <blink> tag"


def test_html_to_text_blocks_whitespace_and_hidden_elements() -> None:
    html = (
        "<style>p{color:red}</style><p>First&nbsp;para,\n  <b>bold</b>&#8217;s</p>"
        "<ul><li>one</li><li>two</li></ul>line<br>break<script>var x = '<p>no</p>';</script>"
        "<noscript><img src=x></noscript><table><tr><td>a</td><td>b</td></tr></table>"
    )
    assert html_to_text(html) == "First para, bold’s\none\ntwo\nline\nbreak\na b"
    assert html_to_text(html, single_line=True) == "First para, bold’s one two line break a b"


def test_text_keeps_persian_zero_width_non_joiner() -> None:
    # ZWNJ is part of Persian spelling (می‌گوید), not whitespace to collapse.
    assert html_to_text("<p>می\u200cگوید  ایران</p>") == "می\u200cگوید ایران"


@pytest.mark.parametrize(
    "markup", ["<![", "<!x", "</", "<a href='", "<![CDATA[x", "&#xffffffff;", "<p>x<!--", "\x00<"]
)
def test_html_to_text_never_raises_on_broken_markup(markup: str) -> None:
    assert isinstance(html_to_text(markup), str)
    assert isinstance(plain_text(markup), str)


def test_a_nested_image_title_does_not_change_how_the_title_reads() -> None:
    # feedparser keeps "A &amp; B" (HTML) as the title but lets <image><title> overwrite
    # title_detail with a text/plain "plain": the stale type must not make "&amp;" literal.
    doc = rss("<item><title>A &amp;amp; B</title><image><title>plain</title></image></item>")
    assert parse(doc).items[0].title == "A & B"


def test_summary_and_distinct_content() -> None:
    doc = rss(
        '<item xmlns:content="http://purl.org/rss/1.0/modules/content/"><title>t</title>'
        "<guid>1</guid><description>Short &lt;i&gt;teaser&lt;/i&gt;</description>"
        "<content:encoded><![CDATA[<p>Full</p><p>article text</p>]]></content:encoded></item>"
        '<item xmlns:content="http://purl.org/rss/1.0/modules/content/"><title>u</title>'
        "<guid>2</guid><content:encoded><![CDATA[<p>Only content</p>]]></content:encoded></item>"
    )
    first, second = parse(doc).items
    assert (first.summary, first.content) == ("Short teaser", "Full\narticle text")
    # Without a description, feedparser offers the content as the summary: not repeated.
    assert (second.summary, second.content) == ("Only content", "")


# --- identity, links, dates -----------------------------------------------------------------


def test_guid_falls_back_to_link_then_to_a_stable_hash() -> None:
    doc = rss(
        "<item><title>A</title><guid isPermaLink='false'>  id-1  </guid></item>"
        "<item><title>B</title><link>/news/b</link></item>"
        "<item><title>C</title><description>words</description></item>"
    )
    first, second, third = parse(doc).items
    assert first.guid == "id-1"
    assert second.guid == second.url == "https://example.org/news/b"
    assert third.url is None
    assert re.fullmatch(r"sha1:[0-9a-f]{40}", third.guid)
    assert parse(doc).items[2].guid == third.guid  # the same words, the same guid


def test_duplicate_guids_keep_the_first_entry() -> None:
    doc = rss(
        "<item><title>first</title><guid>same</guid></item>"
        "<item><title>other</title><guid>other</guid></item>"
        "<item><title>second copy</title><guid>same</guid></item>"
    )
    parsed = parse(doc)
    assert [i.title for i in parsed.items] == ["first", "other"]
    assert parsed.duplicates == 1
    assert parsed.problem is None


def test_max_items_keeps_the_first_and_counts_the_rest() -> None:
    doc = rss("".join(f"<item><title>n{n}</title><guid>g{n}</guid></item>" for n in range(7)))
    parsed = parse(doc, max_items=3)
    assert [i.title for i in parsed.items] == ["n0", "n1", "n2"]
    assert parsed.truncated == 4


def atom(entries: str) -> str:
    return f'<atom:feed xmlns:atom="http://www.w3.org/2005/Atom"><atom:title>F</atom:title>{entries}</atom:feed>'


@pytest.mark.parametrize(
    ("wrap", "entry"),
    [
        (rss, "<item><title>n{n}</title><guid>g{n}</guid></item>"),
        (rss, "<ITEM><title>n{n}</title><guid>g{n}</guid></ITEM >"),
        (atom, "<atom:entry><atom:id>g{n}</atom:id><atom:title>n{n}</atom:title></atom:entry>"),
    ],
    ids=["rss", "loose-case", "prefixed-atom"],
)
def test_entries_past_twice_max_items_are_cut_unparsed_and_counted(wrap: Any, entry: str) -> None:
    entries = [entry.format(n=n) for n in range(25)]
    # A duplicate within the first max_items: the next entry takes its place, as if the
    # whole document had been read.
    entries[2] = entry.format(n=1)
    # Never parsed: an undefined entity would make the document malformed.
    entries[20] = entry.format(n="&undefined;")
    parsed = parse(wrap("".join(entries)), max_items=5)
    assert [i.title for i in parsed.items] == ["n0", "n1", "n3", "n4", "n5"]
    assert (parsed.duplicates, parsed.truncated) == (1, 19)
    assert parsed.problem is None
    assert parsed.title == ("F" if wrap is atom else "T")
    # What was read is what a document of the first ten entries gives.
    first_ten = parse(wrap("".join(entries[:10])), max_items=5)
    assert (parsed.items, parsed.version) == (first_ten.items, first_ten.version)


def test_links_are_absolute_and_prefer_the_alternate() -> None:
    doc = (
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://news.example.com/world/">'
        "<title>F</title><entry><id>urn:1</id><title>t</title>"
        '<link rel="enclosure" href="/audio.mp3"/><link rel="alternate" href="story-1"/>'
        '</entry><entry><id>urn:2</id><title>u</title><link href="javascript:alert(1)"/></entry>'
        "</feed>"
    )
    first, second = parse(doc, url="https://feeds.example.com/atom").items
    assert first.url == "https://news.example.com/world/story-1"
    assert second.url is None  # not an article anyone can be sent to


def test_relative_links_resolve_against_the_document_url() -> None:
    doc = rss("<item><title>t</title><link>../a/b.html</link></item>")
    assert parse(doc, url="https://example.org/feeds/rss.xml").items[0].url == (
        "https://example.org/a/b.html"
    )


def test_dates_are_utc_and_missing_or_broken_dates_are_none() -> None:
    doc = rss(
        "<item><guid>1</guid><pubDate>Tue, 10 Jun 2003 04:00:00 +0330</pubDate></item>"
        "<item><guid>2</guid><pubDate>not a date</pubDate></item>"
        "<item><guid>3</guid></item>"
        "<item><guid>4</guid><pubDate>Sat, 01 Jan 2100 00:00:00 GMT</pubDate></item>"
    )
    items = parse(doc).items
    assert items[0].published == datetime(2003, 6, 10, 0, 30, tzinfo=UTC)
    assert items[0].published.tzinfo is UTC
    assert (items[1].published, items[2].published) == (None, None)
    assert items[3].published == datetime(2100, 1, 1, tzinfo=UTC)  # the future is kept


def test_atom_updated_only_dates_the_entry_and_authors_are_inherited() -> None:
    doc = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>'
        "<author><name>Desk &amp; Co</name></author>"
        "<entry><id>urn:1</id><title>t</title><updated>2024-03-01T12:00:00+01:00</updated></entry>"
        "<entry><id>urn:2</id><title>u</title><author><name>Reza</name></author>"
        "<published>2024-03-01T10:00:00Z</published><updated>2024-03-02T10:00:00Z</updated></entry>"
        "</feed>"
    )
    first, second = parse(doc).items
    assert first.published == first.updated == datetime(2024, 3, 1, 11, tzinfo=UTC)
    assert first.author == "Desk & Co"
    assert second.published == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert second.updated == datetime(2024, 3, 2, 10, tzinfo=UTC)
    assert second.author == "Reza"


def test_charset_from_content_type_is_weighed() -> None:
    # No XML declaration: only the header knows these bytes are windows-1251.
    body = rss("<item><title>Москва</title><guid>1</guid></item>").encode("windows-1251")
    body = body.replace(b'<?xml version="1.0"?>', b"")
    parsed = parse(body, headers={"Content-Type": "application/rss+xml; charset=windows-1251"})
    assert parsed.items[0].title == "Москва"


def test_a_local_file_name_as_body_is_not_opened() -> None:
    # feedparser opens a *bytes* argument as a path when it can: a body must never do that.
    target = Path(__file__).resolve().parent / "golden" / "one-item.rss"
    parsed = parse(str(target))
    assert parsed.items == ()
    assert parsed.problem is not None


# --- not feeds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not a feed: empty body"),
        (b"  \r\n ", "not a feed: empty body"),
        (b"<!DOCTYPE html><html><head><title>Hi</title></head><body>x</body></html>", "HTML"),
        (b"<html><body><p>Moved</p></body></html>", "HTML"),
        (bytes(range(256)) * 8, "not a feed: SAXParseException"),
        (b"\xff\xfe\x00garbage\x00", "not a feed"),
        (b'{"error": "rate limited"}', "not a feed: JSON without"),
        (b"{not json", "not a feed: invalid JSON"),
        (b"[" * 100_000, "not a feed"),
        (b"<rss", "not a feed"),
    ],
)
def test_documents_that_are_not_feeds(body: bytes, reason: str) -> None:
    parsed = parse(body)
    assert parsed.items == ()
    assert parsed.problem is not None and reason in parsed.problem


@needs_real
def test_mutated_real_feeds_never_raise() -> None:
    # Seeded byte mutations of real feeds: the shapes that once made feedparser's own
    # handlers raise (TypeError in <media:width>, KeyError in <media:credit>, NUL bytes).
    rnd = random.Random(20240501)
    sources = [
        read_feed(REAL / path)[:5000]
        for path in ("rss-parser/guardian.rss", "node-feedparser/tpm.atom", "rss-parser/rss-1.rss")
    ] + [json.dumps(JSON_FEED).encode()]
    splices = [b"<", b"&", b"<![", b"\x00", b"</item>", b"<entry>", b"<media:credit>", b"{", b"["]
    failures = []
    for case in range(400):
        body = bytearray(rnd.choice(sources))
        for _ in range(rnd.randint(1, 12)):
            at = rnd.randrange(len(body))
            choice = rnd.random()
            if choice < 0.4:
                body[at] = rnd.randrange(256)
            elif choice < 0.7:
                del body[at : at + rnd.randint(1, 40)]
            else:
                body[at:at] = rnd.choice(splices)
        content_type = rnd.choice(["text/xml", "application/json", "text/html; charset=utf-16"])
        try:
            parsed = parse(bytes(body), headers={"content-type": content_type}, max_items=5)
        except Exception as exc:  # every failure is collected and reported at once
            failures.append(f"case {case}: {type(exc).__name__}: {exc}")
            continue
        assert len(parsed.items) <= 5
    assert not failures, "\n".join(failures)


def test_malformed_but_usable_feed_keeps_items_and_names_the_problem() -> None:
    doc = rss("<item><title>A</title><link>https://e.org/a?x=1&y=2</link></item>")
    parsed = parse(doc)
    assert [i.title for i in parsed.items] == ["A"]
    assert parsed.problem is not None
    assert parsed.problem.startswith("SAXParseException: not well-formed (invalid token) at line")


def test_xml_bomb_is_stopped() -> None:
    # A billion "boom"s if expanded (10 GB). Expat's amplification limit (expat >= 2.4) ends
    # the parse after a few MB of expansion, about a second of CPU here.
    entities = "".join(
        f'<!ENTITY e{n} "{f"&e{n - 1};" * 10}">' if n else '<!ENTITY e0 "boom">' for n in range(10)
    )
    doc = f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]>' + rss(
        "<item><title>&e9;</title><guid>1</guid></item>"
    ).removeprefix('<?xml version="1.0"?>')
    started = time.perf_counter()
    parsed = parse(doc)
    assert time.perf_counter() - started < 20
    assert parsed.problem is not None
    assert all(len(item.title) < 1000 for item in parsed.items)


# --- JSON Feed ------------------------------------------------------------------------------

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Desk &amp; Wire",
    "home_page_url": "https://wire.example.com/",
    "feed_url": "https://wire.example.com/feed.json",
    "authors": [{"name": "Wire desk"}],
    "items": [
        {
            "id": "2024-001",
            "url": "/2024/treaty",
            "title": "Iran &amp; Russia ratify treaty",
            "content_html": (
                "<p>Tehran <b>ratified</b> the pact.</p><script>x()</script><p>More.</p>"
            ),
            "summary": "The pact is ratified.",
            "date_published": "2024-05-01T10:30:00+03:30",
            "date_modified": "2024-05-01T08:00:00Z",
            "authors": [{"name": "Sara"}, {"name": "Omid"}],
        },
        {
            "id": 17,
            "external_url": "https://elsewhere.example.net/story",
            "content_text": "Plain   text\n\nbody",
            "date_published": "yesterday",
        },
        {"id": "2024-001", "title": "a duplicate id"},
        "not an object",
    ],
}


def test_json_feed() -> None:
    body = json.dumps(JSON_FEED).encode()
    parsed = parse(body, url="https://wire.example.com/feed.json")
    assert (parsed.version, parsed.title, parsed.link) == (
        "json11",
        "Desk & Wire",
        "https://wire.example.com/",
    )
    assert parsed.duplicates == 1
    assert parsed.problem is not None and "not objects" in parsed.problem
    first, second = parsed.items
    assert first == Item(
        feed="test",
        guid="2024-001",
        url="https://wire.example.com/2024/treaty",
        title="Iran & Russia ratify treaty",
        summary="The pact is ratified.",
        content="Tehran ratified the pact.\nMore.",
        author="Sara, Omid",
        published=datetime(2024, 5, 1, 7, 0, tzinfo=UTC),
        updated=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
    )
    assert first.published is not None and first.published.utcoffset() is not None
    assert second.guid == "17"
    assert second.url == "https://elsewhere.example.net/story"
    assert (second.title, second.summary, second.content) == ("", "Plain text\nbody", "")
    assert second.author == "Wire desk"  # inherited from the feed
    assert second.published is None


def test_json_feed_10_detected_by_content_type_with_bom() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "title": "Old",
        "items": [{"id": "a", "content_text": "x", "author": {"name": "Ann"}}],
    }
    body = b"\xef\xbb\xbf\n " + json.dumps(doc).encode()
    parsed = parse(body, headers={"content-type": "application/feed+json"})
    assert parsed.version == "json10"
    assert parsed.items[0].author == "Ann"


# --- golden file ----------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden"


def item_as_json(item: Item) -> dict[str, Any]:
    return {
        name: (value.isoformat() if isinstance(value, datetime) else value)
        for name, value in ((f.name, getattr(item, f.name)) for f in fields(Item))
    }


@pytest.mark.parametrize("name", ["one-item.rss"])
def test_golden_file(name: str) -> None:
    # NEWSMON_REGOLD=1 rewrites the .json beside the source; review its diff before committing.
    source = GOLDEN / name
    expected = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    parsed = parse(source.read_bytes(), url="https://example.org/feed.xml")
    got = {
        "title": parsed.title,
        "link": parsed.link,
        "version": parsed.version,
        "problem": parsed.problem,
        "items": [item_as_json(item) for item in parsed.items],
    }
    if os.environ.get("NEWSMON_REGOLD"):
        (GOLDEN / f"{name}.json").write_text(
            json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    assert got == expected


# --- real feeds -----------------------------------------------------------------------------


def read_feed(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def real_feed_index() -> list[dict[str, str]]:
    if not REAL.is_dir():
        return []
    lines = (REAL / "INDEX.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]


# Entries that feedparser makes out of illegally nested markup, holding no element at all.
PHANTOM_ENTRIES = {"node-feedparser/illegally-nested.xml": 10}


def parse_real(local_path: str) -> ParsedFeed:
    return parse(read_feed(REAL / local_path), url="https://example.org/feed.xml")


@needs_real
@pytest.mark.parametrize("row", real_feed_index(), ids=lambda row: row["local_path"])
def test_every_real_feed_parses(row: dict[str, str]) -> None:
    parsed = parse_real(row["local_path"])
    assert parsed.version == row["fp_version"]
    if int(row["fp_entries"]):
        assert parsed.items
        phantoms = PHANTOM_ENTRIES.get(row["local_path"], 0)
        assert len(parsed.items) + parsed.duplicates + phantoms == int(row["fp_entries"])
    assert all(item.title for item in parsed.items)
    assert all(item.guid for item in parsed.items)
    for item in parsed.items:
        assert item.url is None or item.url.startswith(("http://", "https://"))
        assert "<" not in item.title or ">" not in item.title
        for stamp in (item.published, item.updated):
            assert stamp is None or stamp.utcoffset() is not None


def rss_parser_expected(name: str) -> list[dict[str, Any]]:
    raw = (REAL / "rss-parser" / f"{name}.expected.rss-parser.json").read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # encoding.expected… was saved in the feed's own charset
    items: list[dict[str, Any]] = json.loads(text)["feed"]["items"]
    return items


def same_text(ours: str, theirs: str) -> bool:
    """Equal after whitespace collapse; U+FFFD in theirs (rss-parser's lost bytes) matches one
    character of ours."""
    theirs = html_to_text(theirs, single_line=True)
    pattern = ".".join(re.escape(part) for part in theirs.split("\ufffd"))
    return re.fullmatch(pattern, ours) is not None


@needs_real
@pytest.mark.parametrize(
    "name", ["encoding", "guardian", "heise", "reddit", "rss-1", "uolNoticias"]
)
def test_rss_parser_golden_titles_and_links(name: str) -> None:
    source = next(p for p in (REAL / "rss-parser").glob(f"{name}.*") if "expected" not in p.name)
    parsed = parse_real(f"rss-parser/{source.name}")
    expected = rss_parser_expected(name)
    assert len(parsed.items) == len(expected)
    for ours, theirs in zip(parsed.items, expected, strict=True):
        assert same_text(ours.title, theirs["title"]), (ours.title, theirs["title"])
        assert ours.url == theirs["link"]
    first, last = parsed.items[0], parsed.items[-1]
    assert same_text(first.title, expected[0]["title"]) and first.url == expected[0]["link"]
    assert same_text(last.title, expected[-1]["title"]) and last.url == expected[-1]["link"]


@needs_real
def test_windows_1251_feed_plain_and_gzipped_give_the_same_items() -> None:
    plain = parse_real("node-feedparser/iconv.xml")
    zipped = parse_real("node-feedparser/compressed.xml")
    assert len(plain.items) == 10
    assert [(i.guid, i.title) for i in plain.items] == [(i.guid, i.title) for i in zipped.items]
    assert plain.items == zipped.items
    assert plain.title == "Новости Оренбурга и области / Раздел Новости"
    assert plain.items[0].title == "В Бузулуке главные стройплощадки – детсад и Ледовый дворец"
    assert (
        plain.items[3].title == 'Профилактическое мероприятие "Горка" прошло в Оренбургской области'
    )


@needs_real
def test_iso_8859_1_portuguese_accents() -> None:
    parsed = parse_real("rss-parser/encoding.rss")
    assert parsed.title == "Jornal de Notícias - Últimas Notícias"
    assert parsed.items[0].title == "Mãe de utente é a nova presidente da Raríssimas"
    assert parsed.items[0].summary.startswith("Sónia Laygue, profissional na área")


@needs_real
def test_mislabelled_encoding_is_decoded_and_reported() -> None:
    parsed = parse_real("rss-parser/uolNoticias.rss")
    assert parsed.items[0].title.startswith("Ibope: Bolsonaro perde de Haddad")
    assert "simulações de 2º turno" in parsed.items[0].title
    assert parsed.problem is not None and parsed.problem.startswith("CharacterEncodingOverride")


@needs_real
def test_duplicate_guid_feeds_keep_one_item_per_guid() -> None:
    for path in ("node-feedparser/guid-dupes.xml", "node-feedparser/illegally-nested.xml"):
        parsed = parse_real(path)
        guids = [item.guid for item in parsed.items]
        assert len(guids) == len(set(guids))
    assert [i.guid for i in parse_real("node-feedparser/guid-dupes.xml").items] == [
        "http://www.braingle.com/50366.html"
    ]


@needs_real
def test_sax_error_feed_is_usable_with_a_problem() -> None:
    parsed = parse_real("node-feedparser/saxerror.xml")
    assert [i.title for i in parsed.items] == ["Good Item", "Bad Item", "Item After Error"]
    assert parsed.problem == "SAXParseException: not well-formed (invalid token) at line 15"


@needs_real
def test_atom_relative_links_resolve_against_the_document_url() -> None:
    parsed = parse(
        read_feed(REAL / "node-feedparser/intertwingly.atom"),
        url="http://intertwingly.net/blog/index.atom",
    )
    assert parsed.link == "http://intertwingly.net/blog/"
    first = parsed.items[0]
    assert first.url == "http://intertwingly.net/blog/2012/07/16/Inhibiting-Suspend"
    assert (first.guid, first.author) == ("tag:intertwingly.net,2004:3299", "Sam Ruby")


# --- feedparser's own test corpus -----------------------------------------------------------

# Expectation categories on which newsmon deliberately differs from feedparser. Each one is
# counted in the report; none of them is a failure.
DELIBERATE = {
    # feedparser's `author` is "name (email)"; ours is the name alone (model.Item: plain name).
    "author with email": "newsmon keeps the author's name only",
    # feedparser lists every entry; newsmon keeps the first of entries sharing a guid.
    "dropped duplicate": "entries repeating an earlier guid are dropped",
    # feedparser resolves a relative entry id against the document's URL; newsmon keeps the
    # id as written, so that guids do not change when a feed moves (Content-Location, which
    # the server sends on purpose, is still honoured).
    "relative id kept": "relative ids are not resolved against the document URL",
    # feedparser keeps any link; an Item.url must be an http(s) article address.
    "non-http link": "links that are not http(s) become None",
    # feedparser's links[0] is the entry's first <link>, whatever its rel; an Item.url is the
    # article, the alternate link (model.Item), never a license or an enclosure.
    "not the alternate link": "a link whose rel is not alternate is not the item's url",
}

CHECKED_FIELDS = {
    "title",
    "link",
    "id",
    "guid",
    "author",
    "published_parsed",
    "updated_parsed",
    "description",
    "summary",
    "content",
}


# Longer paths into a feedparser entry that hold a value an Item carries, and that value's
# single-key name. Each *_detail dict describes the value of its key, and links[0] is the
# entry's first <link>.
DETAIL_PATHS: dict[tuple[object, ...], str] = {
    ("title_detail", "value"): "title",
    ("summary_detail", "value"): "summary",
    ("author_detail", "name"): "author",
    ("links", 0, "href"): "link",
    ("content", 0, "value"): "content",
}


@dataclass
class Expectation:
    index: int  # entries[index]
    field: str
    value: object
    path: tuple[object, ...] = ()  # further subscripts, e.g. ("content", 0, "value")
    rel: object = "alternate"  # for a link from entries[i]['links']: its rel, where stated


@dataclass
class Report:
    files: int = 0
    crashes: list[str] = field(default_factory=list)
    agreed: int = 0
    disagreed: list[str] = field(default_factory=list)
    deliberate: Counter[str] = field(default_factory=Counter)
    unchecked: int = 0  # Expect expressions with no entry-level field that Item carries
    skipped_files: int = 0  # SkipUnless not met here (chardet absent, codec missing)


def literal(node: ast.expr) -> object:
    """A constant, tuple or string concatenation from an Expect expression."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = literal(node.left), literal(node.right)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        raise ValueError("not a literal")
    return ast.literal_eval(node)


def entry_reference(node: ast.expr) -> tuple[int, tuple[object, ...]] | None:
    """entries[i][k1][k2]… as (i, (k1, k2, …)), else None."""
    keys: list[object] = []
    while isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant):
            return None
        keys.append(node.slice.value)
        node = node.value
    if not (isinstance(node, ast.Name) and node.id == "entries" and len(keys) >= 2):
        return None
    keys.reverse()
    index = keys[0]
    return (index, tuple(keys[1:])) if isinstance(index, int) else None


def expectations(expr: str) -> list[Expectation]:
    """The `entries[i][field] == literal` parts of an Expect expression that we can check."""
    stated: dict[tuple[int, tuple[object, ...]], object] = {}
    tree = ast.parse(expr, mode="eval").body
    parts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    for part in parts:
        if not isinstance(part, ast.Compare) or not all(isinstance(o, ast.Eq) for o in part.ops):
            continue
        operands = [part.left, *part.comparators]
        value: object = None
        for operand in operands:
            try:
                value = literal(operand)
                break
            except ValueError:
                continue
        else:
            continue
        for operand in operands:
            ref = entry_reference(operand)
            if ref is not None:
                stated[ref] = value
    found: list[Expectation] = []
    for (index, path), value in stated.items():
        name = DETAIL_PATHS.get(path) or (str(path[0]) if len(path) == 1 else None)
        if name in CHECKED_FIELDS:
            # A link the expression says is not an alternate (a license, an enclosure).
            rel = (
                stated.get((index, (*path[:-1], "rel")), "alternate")
                if path[0] == "links"
                else "alternate"
            )
            found.append(Expectation(index, name, value, path, rel))
    return found


def test_expect_paths_into_details_and_links_are_checked() -> None:
    expr = (
        "not bozo and entries[0]['title_detail']['value'] == u'T' and "
        "entries[0]['summary_detail']['value'] == 'S' and "
        "entries[1]['author_detail']['name'] == 'A' and entries[0]['title_detail']['type'] == "
        "'text/plain' and entries[0]['links'][0]['rel'] == 'license' and "
        "entries[0]['links'][0]['href'] == 'http://l.example/' and "
        "entries[0]['links'][1]['href'] == 'http://a.example/'"
    )
    found = [(e.index, e.field, e.value, e.rel) for e in expectations(expr)]
    assert found == [
        (0, "title", "T", "alternate"),
        (0, "summary", "S", "alternate"),
        (1, "author", "A", "alternate"),
        (0, "link", "http://l.example/", "license"),
    ]


def as_utc(stamp: object) -> datetime | None:
    if not isinstance(stamp, tuple) or len(stamp) < 6:
        return None
    year, month, day, hour, minute, second = stamp[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def text_agrees(ours: str, theirs: object, *, single_line: bool) -> bool:
    """feedparser's value may be HTML or plain text (the Expect line does not say which):
    ours agrees when it equals either reading, after Unicode normalisation."""
    if not isinstance(theirs, str):
        return False
    readings = {
        html_to_text(theirs, single_line=single_line),
        plain_text(theirs, single_line=single_line),
    }
    return unicodedata.normalize("NFC", ours) in {unicodedata.normalize("NFC", r) for r in readings}


def judge(item: Item, exp: Expectation, url: str) -> str | None:
    """ "" when ours agrees, a DELIBERATE category, or None on disagreement."""
    name, want = exp.field, exp.value
    if name == "title":
        return "" if text_agrees(item.title, want, single_line=True) else None
    if name in ("description", "summary"):
        return "" if text_agrees(item.summary, want, single_line=False) else None
    if name == "content":
        return "" if text_agrees(item.content or item.summary, want, single_line=False) else None
    if name == "link":
        if item.url == want:
            return ""
        if exp.rel != "alternate":
            return "not the alternate link"
        if item.url is None and isinstance(want, str) and not want.startswith("http"):
            return "non-http link"
        return None
    if name in ("id", "guid"):
        if item.guid == want:
            return ""
        return (
            "relative id kept"
            if not urlsplit(item.guid).scheme and urljoin(url, item.guid) == want
            else None
        )
    if name == "author":
        if item.author == want:
            return ""
        if isinstance(want, str) and want.startswith(f"{item.author} (") and "@" in want:
            return "author with email"
        return None
    if name == "updated_parsed":
        return "" if item.updated == as_utc(want) else None
    if name == "published_parsed":
        return "" if item.published == as_utc(want) else None
    return None


def header_lines(text: str) -> tuple[str, dict[str, str], str | None]:
    """(Expect expression, HTTP headers, SkipUnless expression) from a test file's comment."""
    comment = text.split("-->", 1)[0]
    expect, skip, headers = "", None, {}
    for line in comment.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Expect":
            expect = value.strip()
        elif key == "SkipUnless":
            skip = value.strip()
        elif key == "Header":
            name, _, header_value = value.strip().partition(":")
            headers[name.strip().lower()] = header_value.strip()
    return expect, headers, skip


def skip_applies(skip: str | None) -> bool:
    if not skip:
        return False
    if "chardet" in skip:
        return importlib.util.find_spec("chardet") is None
    codec = re.search(r"lookup\('([^']+)'\)", skip)
    if codec:
        try:
            codecs.lookup(codec.group(1))
        except LookupError:
            return True
    return False


def run_feedparser_corpus() -> Report:
    report = Report()
    for path in sorted(FP_TESTS.rglob("*")):
        if not path.is_file():
            continue
        report.files += 1
        relative = path.relative_to(FP_TESTS).as_posix()
        body = path.read_bytes()
        expect, headers, skip = header_lines(body[:4000].decode("latin-1"))
        try:
            parsed = parse_feed(body, feed="t", url=FP_BASE + relative, headers=headers)
        except Exception as exc:  # every crash is collected and reported at once
            report.crashes.append(f"{relative}: {type(exc).__name__}: {exc}")
            continue
        if not expect:
            continue
        if skip_applies(skip):
            report.skipped_files += 1
            continue
        checks = expectations(expect)
        if not checks:
            report.unchecked += 1
        for exp in checks:
            if exp.index >= len(parsed.items):
                verdict = "dropped duplicate" if parsed.duplicates else None
            else:
                item = parsed.items[exp.index]
                verdict = judge(item, exp, FP_BASE + relative)
            if verdict == "":
                report.agreed += 1
            elif verdict is None:
                got = parsed.items[exp.index] if exp.index < len(parsed.items) else None
                report.disagreed.append(f"{relative}: {expect}\n    ours: {got}")
            else:
                report.deliberate[verdict] += 1
    return report


@needs_fp
def test_feedparser_corpus_parses_and_agrees_with_its_expectations() -> None:
    started = time.perf_counter()
    report = run_feedparser_corpus()
    elapsed = time.perf_counter() - started
    checked = report.agreed + len(report.disagreed) + sum(report.deliberate.values())
    print(
        f"\nfeedparser corpus: {report.files} files in {elapsed:.1f}s, {checked} entry-level "
        f"expectations checked: {report.agreed} agree, {len(report.disagreed)} disagree, "
        f"deliberate differences {dict(report.deliberate)}; {report.unchecked} Expect lines "
        f"without a checkable entry field; {report.skipped_files} files skipped (SkipUnless)"
    )
    assert report.files >= 2242
    assert not report.crashes, "\n".join(report.crashes)
    assert not report.disagreed, "\n".join(report.disagreed[:40])
    assert set(report.deliberate) <= set(DELIBERATE)
    # The checker checks: a parser that lost its items, or a checker that lost the detail
    # paths (89 expectations), would fail.
    assert report.agreed > 800
    assert elapsed < 45


def test_a_huge_guid_becomes_a_stable_digest() -> None:
    huge = "id-" + "x" * 10_000
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><guid>{huge}</guid><title>A</title></item></channel></rss>"
    ).encode()
    first = parse_feed(body, feed="f", url="https://f.example/feed")
    again = parse_feed(body, feed="f", url="https://f.example/feed")
    assert first.items[0].guid.startswith("sha256:") and len(first.items[0].guid) < 100
    assert first.items[0].guid == again.items[0].guid
