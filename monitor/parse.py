"""Feed bytes → normalised :class:`~monitor.model.Item` values.

RSS 0.9x/1.0/2.0 and Atom are read by feedparser-rs when it is installed and the guard in
:mod:`monitor.parse_fast` trusts its reading, otherwise by feedparser (which sniffs the
encoding, resolves ``xml:base`` and sanitises embedded HTML); JSON Feed 1.0/1.1, which
feedparser does not read, is parsed here with :mod:`json`. Both XML readings become the same
:class:`~monitor.parse_fast.FeedView`, and one set of rules turns that into items, so every
item comes out the same shape whichever parser read it:

* ``title``, ``summary``, ``content`` and ``author`` are plain text: markup removed,
  entities decoded, ``<script>``/``<style>`` dropped, block elements turned into line breaks,
  whitespace collapsed (titles are one line);
* ``url`` is absolute (http or https), the entry's alternate link;
* ``guid`` is the entry's id (as written: a relative id is not resolved against the
  feed's URL, so guids survive a feed's move), else its link, else ``sha1:`` of its title
  and summary; a guid repeated within one document keeps only its first entry, and an
  entry without a single element is no item;
* ``published`` and ``updated`` are timezone-aware UTC datetimes or ``None``; an entry
  that only gives ``updated`` is published then too. Future dates are kept.

The module is pure: no I/O, no clock, no logging. :func:`parse_feed` is synchronous and
CPU-bound (the scheduler runs it in a worker), safe to call from several threads at once,
and never raises on bad input: a document that cannot be used comes back as a
:class:`ParsedFeed` with no items and ``problem`` saying why.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import re
import xml.sax
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import feedparser

from monitor import parse_fast
from monitor.model import Item
from monitor.parse_fast import EntryView, FeedView, Link, Stamp, Text
from monitor.parse_text import html_to_text, plain_text

__all__ = ["ParsedFeed", "parse_feed"]


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One parsed document: the feed's own title and link, and its items in document order."""

    title: str  # plain text, one line
    link: str | None  # the site the feed belongs to, absolute
    items: tuple[Item, ...]
    version: str  # "rss20", "rss10", "atom10", "json11", ...; "" when not recognised
    problem: str | None  # why the document was malformed (yet maybe usable), or not a feed at all
    truncated: int = 0  # entries dropped by max_items
    duplicates: int = 0  # entries dropped because an earlier entry had the same guid
    parser: str = "feedparser"  # which parser read it: "fast" (feedparser-rs) or "feedparser"


def parse_feed(
    body: bytes,
    *,
    feed: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    max_items: int = 1000,
    fast: bool = True,
) -> ParsedFeed:
    """Parse one fetched document into items of the feed named ``feed``.

    ``url`` is where the document came from (after redirects): relative links resolve
    against it unless the document or a ``Content-Location`` header says otherwise.
    ``headers`` are the HTTP response headers (any case); ``Content-Type`` supplies the
    charset that XML sniffing weighs. Only the first ``max_items`` entries become items;
    ``truncated`` counts the rest (an XML document's entries past twice that are cut from
    the bytes unparsed, and counted by their closing tags).

    Never raises on bad input (malformed XML, wrong encodings, HTML pages, random bytes,
    an empty body): an unusable document gives ``items=()`` and ``problem`` set.

    ``fast=False`` keeps feedparser-rs out of it (feedparser reads every XML document); the
    items are meant to be the same either way, only slower.
    """
    if not body.strip():
        return ParsedFeed(
            title="", link=None, items=(), version="", problem=_not_a_feed(body, None)
        )
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if _looks_like_json(body, lowered.get("content-type", "")):
        return _parse_json_feed(body, feed=feed, url=url, max_items=max_items)
    # Both parsers read the whole document before the first max_items entries are kept: a
    # 14.8 MB body of 255,000 tiny items took feedparser 20 s and 400 MB. Entries past twice
    # the limit are cut from the bytes and only counted. The slack keeps the items exactly as
    # a full parse gives them unless over max_items of the first entries are duplicates or
    # empty, which only a hostile document does.
    body, cut = _cut_entries(body, 2 * max_items)
    if fast:
        fast_read = parse_fast.read(body, lowered)
        view = fast_read.view
        # A date string that neither feedparser-rs nor _parse_date can read: feedparser's
        # date handlers know more formats, and it decides.
        if view is not None and not any(map(_unreadable_dates, view.entries)):
            return _parsed_feed(
                view, feed=feed, base=url, max_items=max_items, parser="fast", cut=cut
            )
    return _parse_xml_feed(body, feed=feed, url=url, headers=lowered, max_items=max_items, cut=cut)


# The end of an RSS <item> or Atom <entry>, with any namespace prefix (</atom:entry>) and in
# any case (feedparser lower-cases names, and its loose parser reads <ITEM> as an item).
_ENTRY_END = re.compile(rb"</(?:[\w.-]+:)?(?:item|entry)\s*>", re.IGNORECASE)


def _cut_entries(body: bytes, keep: int) -> tuple[bytes, int]:
    """``body`` without the entries after its ``keep``-th, and how many entries were cut.

    The cut goes from the end of the ``keep``-th closing tag to the end of the last one, so
    what follows the entries (``</channel></rss>``, ``</feed>``) stays and the document stays
    as well-formed as it was: the entries in between are complete siblings (feed-level
    elements among them, rare past the first entries, go with them). A closing tag
    that is not an entry's (one quoted in CDATA, an extension's ``<x:item>``) can make the
    cut land inside an entry; the parsers read that as the malformed document it then is.
    """
    if keep < 1 or body.count(b"</") <= keep:  # too few closing tags of any kind: no search
        return body, 0
    ends = _ENTRY_END.finditer(body)
    kept_end = next(itertools.islice(ends, keep - 1, None), None)
    if kept_end is None:
        return body, 0
    # Only the count of the cut entries and where the last one ends are wanted.
    tail = collections.deque(enumerate(ends, 1), maxlen=1)
    if not tail:
        return body, 0
    cut, last = tail[0]
    return body[: kept_end.end()] + body[last.end() :], cut


# --- XML feeds via feedparser ------------------------------------------------------------


def _parse_xml_feed(
    body: bytes, *, feed: str, url: str, headers: dict[str, str], max_items: int, cut: int
) -> ParsedFeed:
    # feedparser weighs Content-Type's charset, and a Content-Location header becomes the
    # document's base URI. No base is made up from `url`: feedparser would resolve entry ids
    # against it too, and a guid must not change when the feed moves. Links are resolved
    # against `url` below instead.
    headers = dict(headers)
    if headers.get("content-location", "").strip():
        headers["content-location"] = urljoin(url, headers["content-location"].strip())
    # With headers but no Content-Type, feedparser would assume ISO-8859-1 (which decodes
    # anything, so a UTF-8 feed without an XML declaration turns to mojibake) and flag the
    # feed; application/xml means "trust the document", as when no headers are given.
    headers.setdefault("content-type", "application/xml")
    # A BytesIO, never the bytes themselves: given bytes, feedparser first tries to open
    # them as a *file name*, so a body reading "/etc/hosts" would parse a local file.
    try:
        doc = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:
        # feedparser's own handlers still trip over some broken documents (found by fuzzing
        # real feeds: TypeError in <media:width>, KeyError in <media:credit>, ValueError on
        # NUL bytes). Hostile input is data: the feed gets a reason, the daemon goes on.
        return ParsedFeed(
            title="", link=None, items=(), version="", problem=_not_a_feed(body, _describe(exc))
        )
    problem = _describe(doc.get("bozo_exception")) if doc.get("bozo") else None
    version = str(doc.get("version") or "")
    entries: list[Any] = list(doc.get("entries") or [])
    meta: Any = doc.get("feed")
    if not isinstance(meta, dict):
        meta = {}

    if not entries and not version:
        return ParsedFeed(
            title="", link=None, items=(), version="", problem=_not_a_feed(body, problem)
        )
    view = FeedView(
        title=_fp_text(meta.get("title"), meta.get("title_detail")),
        link=_fp_string(meta.get("link")),
        author=_fp_author(meta),
        version=version,
        problem=problem,
        # An entry without a single element is no item: feedparser makes such phantoms out
        # of illegally nested markup (real-feeds/illegally-nested.xml has ten).
        entries=tuple(_fp_entry(e) if isinstance(e, dict) and e else None for e in entries),
    )
    base = headers.get("content-location") or url
    return _parsed_feed(
        view, feed=feed, base=base, max_items=max_items, parser="feedparser", cut=cut
    )


def _fp_entry(entry: dict[str, Any]) -> EntryView:
    """feedparser's entry (a dict of whatever a hostile document made) as the common view."""
    ident = entry.get("id")

    def stamp(key: str) -> Stamp:
        # dict.get, not entry.get: feedparser's own lookup quietly answers "updated" with
        # the published date (and warns).
        parsed = dict.get(entry, f"{key}_parsed")
        raw = dict.get(entry, key)
        return Stamp(
            tuple(parsed[:6]) if isinstance(parsed, tuple) else None,
            raw if isinstance(raw, str) else None,
        )

    return EntryView(
        title=_fp_text(entry.get("title"), entry.get("title_detail")),
        summary=_fp_text(entry.get("summary"), entry.get("summary_detail")),
        contents=tuple(
            text
            for part in _dicts(entry.get("content"))
            if (text := _fp_text(part.get("value"), part)) is not None
        ),
        links=tuple(
            Link(
                link["href"],
                _fp_string(link.get("rel", "alternate")) or "",
                _fp_string(link.get("type", "text/html")) or "",
            )
            for link in _dicts(entry.get("links"))
            if isinstance(link.get("href"), str)
        ),
        link=_fp_string(entry.get("link")),
        id=str(ident) if ident else None,
        author=_fp_author(entry),
        published=stamp("published"),
        created=stamp("created"),
        updated=stamp("updated"),
    )


def _fp_text(value: object, detail: object) -> Text | None:
    if not isinstance(value, str) or not value:
        return None
    # The *_detail dict can be stale: a nested <image><title> overwrites title_detail but
    # not title. Its type counts only when it describes this very value.
    plain = (
        isinstance(detail, dict)
        and detail.get("value") == value
        and detail.get("type") == "text/plain"
    )
    return Text(value, plain)


def _fp_author(node: dict[str, Any]) -> str | None:
    details = _dicts([node.get("author_detail")])
    return _fp_string((details[0].get("name") if details else None) or node.get("author"))


def _fp_string(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- the common view → items: the same rules whichever parser read the document -----------


def _parsed_feed(
    view: FeedView, *, feed: str, base: str, max_items: int, parser: str, cut: int
) -> ParsedFeed:
    """Items from the view; ``cut`` counts the entries cut before parsing (as truncated)."""
    # Atom entries inherit the feed's author (RFC 4287 §4.2.1); RSS has no such rule.
    inherited = _name(view.author) if view.version.startswith("atom") else ""

    def items() -> Iterable[tuple[int, Item | None]]:
        for index, entry in enumerate(view.entries):
            if entry is None:
                yield index, None
            else:
                yield index, _item_from_view(entry, feed=feed, base=base, inherited=inherited)

    kept, duplicates, truncated = _collect(items(), len(view.entries), max_items)
    return ParsedFeed(
        title=_clean(view.title, single_line=True),
        link=_absolute(base, view.link),
        items=kept,
        version=view.version,
        problem=view.problem,
        truncated=truncated + cut,
        duplicates=duplicates,
        parser=parser,
    )


def _item_from_view(entry: EntryView, *, feed: str, base: str, inherited: str) -> Item:
    title = _clean(entry.title, single_line=True)
    summary = _clean(entry.summary)
    content = ""
    for part in entry.contents:
        text = _clean(part)
        if len(text) > len(content):
            content = text
    if content == summary:
        content = ""
    url = _absolute(base, _alternate_link(entry))
    published = _stamp_date(entry.published) or _stamp_date(entry.created)
    updated = _stamp_date(entry.updated)
    return Item(
        feed=feed,
        guid=_guid(entry.id, url, title, summary),
        url=url,
        title=title,
        summary=summary,
        content=content,
        author=_name(entry.author) or inherited,
        # An entry that only says when it was last updated (common in Atom, where
        # <published> is optional) is dated by that: "undated" would keep it from alerting.
        published=published or updated,
        updated=updated,
    )


def _alternate_link(entry: EntryView) -> str | None:
    """The entry's link to its article: an HTML alternate first, then any alternate."""
    alternates = [link for link in entry.links if link.rel == "alternate"]
    for link in alternates:
        if link.type in ("text/html", "application/xhtml+xml"):
            return link.href
    if alternates:
        return alternates[0].href
    return entry.link


def _name(raw: str | None) -> str:
    return plain_text(raw, single_line=True) if raw else ""


def _clean(text: Text | None, *, single_line: bool = False) -> str:
    """Plain text of a value, read as HTML unless the parser typed it text/plain."""
    if text is None:
        return ""
    if text.plain:
        return plain_text(text.value, single_line=single_line)
    return html_to_text(text.value, single_line=single_line)


def _stamp_date(stamp: Stamp) -> datetime | None:
    # The parsers' *_parsed values are UTC; the raw string is the fallback for the odd
    # format their date handlers give up on.
    raw = stamp.raw
    if raw is not None and _ISO_DAY.match(raw.strip()) and _parse_date(raw) is None:
        # feedparser carries out-of-range ISO fields over (2024-13-45T99:99:99Z became
        # 2025-01-01): an impossible date is no date, not some other day.
        return None
    if stamp.parsed is not None:
        try:
            year, month, day, hour, minute, second = stamp.parsed[:6]
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except (TypeError, ValueError):
            pass
    return _parse_date(raw) if raw is not None else None


def _unreadable_dates(entry: EntryView | None) -> bool:
    """Whether the entry has a date string that came out as no date."""
    if entry is None:
        return False
    stamps = (entry.published, entry.created, entry.updated)
    return any(s.raw and s.raw.strip() and _stamp_date(s) is None for s in stamps)


_ISO_DAY = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]|$)")


def _describe(exc: object) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, xml.sax.SAXParseException):
        return f"SAXParseException: {exc.getMessage()} at line {exc.getLineNumber()}"
    return _printable(f"{type(exc).__name__}: {exc}"[:300])


def _printable(text: str) -> str:
    """`text` with control characters written as escapes: fit for one log line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _not_a_feed(body: bytes, problem: str | None) -> str:
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "not a feed: empty body"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        return "not a feed: looks like HTML"
    return f"not a feed: {problem}" if problem else "not a feed: no RSS, Atom or JSON Feed found"


# --- JSON Feed ---------------------------------------------------------------------------

_JSON_FEED_VERSIONS = {
    "https://jsonfeed.org/version/1": "json10",
    "https://jsonfeed.org/version/1.1": "json11",
}


def _looks_like_json(body: bytes, content_type: str) -> bool:
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return True
    # A server that labels XML as JSON is wrong about the label, not the body.
    return "json" in content_type.lower() and not head.startswith(b"<")


def _parse_json_feed(body: bytes, *, feed: str, url: str, max_items: int) -> ParsedFeed:
    def unusable(why: str) -> ParsedFeed:
        return ParsedFeed(title="", link=None, items=(), version="", problem=why)

    try:
        # bytes in: json detects UTF-8 (with or without BOM), UTF-16 and UTF-32 itself.
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        return unusable(_printable(f"not a feed: invalid JSON: {type(exc).__name__}: {exc}"[:300]))
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return unusable("not a feed: JSON without a JSON Feed items list")

    problem = None
    version = _JSON_FEED_VERSIONS.get(str(doc.get("version", "")).rstrip("/"), "")
    if not version:
        problem = f"unknown JSON Feed version {str(doc.get('version'))[:80]!r}"
    # JSON Feed allows relative URLs; they resolve against the feed's own address.
    base = _string(doc.get("feed_url")) or url
    base = urljoin(url, base)
    inherited = _json_authors(doc)
    entries = [entry for entry in doc["items"] if isinstance(entry, dict)]
    if len(entries) != len(doc["items"]):
        problem = problem or "JSON Feed items that are not objects were skipped"

    def items() -> Iterable[tuple[int, Item | None]]:
        for index, entry in enumerate(entries):
            if not entry:
                yield index, None
            else:
                yield index, _item_from_json(entry, feed=feed, base=base, inherited=inherited)

    kept, duplicates, truncated = _collect(items(), len(entries), max_items)
    return ParsedFeed(
        title=html_to_text(_string(doc.get("title")), single_line=True),
        link=_absolute(base, _string(doc.get("home_page_url"))),
        items=kept,
        version=version,
        problem=problem,
        truncated=truncated,
        duplicates=duplicates,
    )


def _item_from_json(entry: dict[str, Any], *, feed: str, base: str, inherited: str) -> Item:
    # The spec says title and summary are plain text, yet publishers put entities and
    # tags in them; reading them as HTML costs nothing on true plain text.
    title = html_to_text(_string(entry.get("title")), single_line=True)
    if entry.get("content_html") is not None:
        content = html_to_text(_string(entry.get("content_html")))
    else:
        content = plain_text(_string(entry.get("content_text")))
    summary = html_to_text(_string(entry.get("summary")))
    if not summary:
        # As feedparser does for RSS/Atom entries that carry only content.
        summary = content
    if content == summary:
        content = ""
    url = _absolute(base, _string(entry.get("url")) or _string(entry.get("external_url")))
    raw_id = entry.get("id")
    ident = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    published = _parse_date(_string(entry.get("date_published")))
    updated = _parse_date(_string(entry.get("date_modified")))
    return Item(
        feed=feed,
        guid=_guid(ident, url, title, summary),
        url=url,
        title=title,
        summary=summary,
        content=content,
        author=_json_authors(entry) or inherited,
        published=published or updated,  # as for XML entries: see _item_from_entry
        updated=updated,
    )


def _json_authors(node: dict[str, Any]) -> str:
    """Names from 1.1 ``authors`` (a list) or 1.0 ``author`` (one object), comma-joined."""
    authors = node.get("authors")
    if not isinstance(authors, list):
        authors = [node.get("author")]
    names = [
        plain_text(_string(a.get("name")), single_line=True) for a in authors if isinstance(a, dict)
    ]
    return ", ".join(name for name in names if name)


def _dicts(value: object) -> list[dict[str, Any]]:
    """The dicts in a list; anything else (hostile documents make odd shapes) as none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- shared by both formats --------------------------------------------------------------


def _collect(
    items: Iterable[tuple[int, Item | None]], total: int, max_items: int
) -> tuple[tuple[Item, ...], int, int]:
    """Keep the first ``max_items`` distinct guids; returns (items, duplicates, truncated).

    A None stands for an empty entry, skipped without being counted.
    """
    kept: list[Item] = []
    seen: set[str] = set()
    duplicates = 0
    examined = 0
    for index, item in items:
        if len(kept) >= max_items:
            break
        examined = index + 1
        if item is None:
            continue
        if item.guid in seen:
            duplicates += 1
            continue
        seen.add(item.guid)
        kept.append(item)
    return tuple(kept), duplicates, total - examined


# A guid is a key in a unique index; PostgreSQL refuses b-tree entries over ~2.7 KB. Real ids
# are URLs or UUIDs far below this; a longer one (hostile, or a whole text used as id) is
# replaced by its digest, which is as stable as the id itself.
MAX_GUID = 512


def _guid(ident: object, url: str | None, title: str, summary: str) -> str:
    guid = (str(ident).strip() if ident else "") or url or ""
    if len(guid) > MAX_GUID:
        return "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    if guid:
        return guid
    # Nothing to identify the entry but its words: the same words give the same guid on
    # every poll, so an id-less, link-less item is stored once, not once per poll.
    digest = hashlib.sha1(f"{title}\n{summary}".encode(), usedforsecurity=False).hexdigest()
    return f"sha1:{digest}"


_URL_DROPPED = re.compile("[\t\n\r]")
_URL_CONTROL = re.compile("[\x00-\x20\x7f-\x9f]")
# Control characters in a problem message (which may quote the document): shown escaped.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _absolute(base: str, link: object) -> str | None:
    """``link`` resolved against ``base``; None unless the result is an http(s) URL.

    Other schemes (``javascript:``, ``data:``, ``file:``) are no article to send a reader to.
    """
    if not isinstance(link, str) or not link.strip():
        return None
    # As browsers read a link (WHATWG URL): tabs and line breaks inside vanish, and other
    # control characters and spaces are percent-encoded, so that a link logged or sent in an
    # alert can neither break a line nor carry a terminal escape sequence.
    link = _URL_CONTROL.sub(lambda m: quote(m.group()), _URL_DROPPED.sub("", link.strip()))
    try:
        resolved = urljoin(base, link)
        parts = urlsplit(resolved)
    except ValueError:  # e.g. an invalid IPv6 literal in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return resolved


def _parse_date(raw: str) -> datetime | None:
    """RFC 3339 / ISO 8601 or RFC 822 date → UTC; a date without a zone is taken as UTC."""
    raw = raw.strip()
    if not raw:
        return None
    value: datetime | None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        try:
            value = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            value = None
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 with a positive offset, and the like
        return None
