"""feedparser-rs as a fast first reading of RSS and Atom, and a guard that says when it is unsure.

:func:`read` parses a document with feedparser-rs 0.7.1 (about 30× faster than feedparser on
a 50-item feed) and returns a :class:`FeedView`, or ``None`` and the reason why feedparser must
read the document instead. The guard's rules are the measured disagreements of
docs/parsers.md ("Recommendation for newsmon"): whenever feedparser-rs fails, flags the
document, or meets a construct on which it was seen to read differently from feedparser, it
is *unsure*. The rules are tied to this version's behaviour: the pin is exact, and an upgrade
needs the probe in tests/test_parse_fast.py to pass again.

:class:`FeedView` and :class:`EntryView` are the parser-neutral reading of a document that
both adapters fill (this module for feedparser-rs, monitor.parse for feedparser). Values in
them are raw, as the parser gave them; monitor.parse turns them into items by one set of
rules, whichever parser read the document.

Pure and thread-safe; :func:`read` never raises on bad input. Nothing here releases the GIL.
When feedparser-rs is not installed, :data:`AVAILABLE` is false and :func:`read` is always
unsure.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:
    import feedparser_rs
except ImportError:  # an optional speed-up: without it, feedparser reads everything
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "EntryView", "FastRead", "FeedView", "Link", "Stamp", "Text", "read"]


@dataclass(frozen=True, slots=True)
class Text:
    """A title, summary or content value as the parser gave it (markup and entities intact)."""

    value: str  # never empty
    plain: bool  # the parser typed this very value text/plain; otherwise it is read as HTML


@dataclass(frozen=True, slots=True)
class Link:
    """One ``<link>`` of an entry, with the absent attributes' defaults already applied."""

    href: str  # as written: not yet resolved against any base
    rel: str  # "alternate" when absent
    type: str  # "text/html" when absent


@dataclass(frozen=True, slots=True)
class Stamp:
    """A date as the parser read it."""

    parsed: tuple[int, ...] | None  # UTC (year, month, day, hour, minute, second, ...)
    raw: str | None  # the string in the document, for the formats the parser gave up on


NO_STAMP = Stamp(None, None)


@dataclass(frozen=True, slots=True)
class EntryView:
    title: Text | None
    summary: Text | None
    contents: tuple[Text, ...]
    links: tuple[Link, ...]
    link: str | None  # the parser's own choice of link, used when no alternate is listed
    id: str | None  # as written (not resolved)
    author: str | None  # the author's name, raw
    published: Stamp
    created: Stamp
    updated: Stamp


@dataclass(frozen=True, slots=True)
class FeedView:
    title: Text | None
    link: str | None
    author: str | None  # the feed's author's name, raw (Atom entries inherit it)
    version: str  # feedparser's names: "rss20", "rss10", "atom10", ...
    problem: str | None  # what was malformed, when the document is still usable
    entries: tuple[EntryView | None, ...]  # None: an entry without a single element


@dataclass(frozen=True, slots=True)
class FastRead:
    """feedparser-rs's reading, or why there is none (``view`` None, ``unsure`` set)."""

    view: FeedView | None
    unsure: str  # "" when view is set


# Self-closing elements that feedparser-rs 0.7.1 reads correctly in RSS (docs/parsers.md,
# probed): elements carrying only attributes, and names it maps to no entry field. Any other
# self-closing element in an RSS document (<category/>, <link/>, <dc:creator/>, ...) makes it
# skip the next sibling (a <pubDate>, a <guid>) or, as an item's last child, the whole next
# item, with bozo unset. An allowlist: a name nobody has probed is unsure.
SAFE_EMPTY = frozenset(
    "enclosure media:content media:thumbnail atom:link atom10:link "
    "itunes:image itunes:category feedburner:info cloud image textinput br img hr".split()
)

# One pass over the body finds everything the guard looks for in the markup. CDATA sections
# and comments are consumed whole, so that markup quoted inside them is not taken for the
# document's own elements.
_SCAN = re.compile(
    rb"<(?:(?P<cdata>!\[CDATA\[.*?(?:\]\]>|\Z))"
    rb"|!--.*?(?:-->|\Z)"
    # A self-closing element; attribute values may hold ">" and "/".
    rb"""|(?P<empty>[A-Za-z_][\w.:-]*)(?:\s(?:[^<>"']|"[^"]*"|'[^']*')*)?/>"""
    rb"|(?:[\w.-]+:)?(?P<atom>entry|updated)[\s>]"
    # An Atom text construct without a type attribute: text by RFC 4287, as feedparser reads
    # it; feedparser-rs calls it text/html.
    rb"|(?P<untyped>(?:[\w.-]+:)?(?:title|summary|content|subtitle)(?:\s(?![^<>]*\btype=)[^<>]*)?>)"
    # An RSS <link> whose text is not an absolute http(s) URL: feedparser-rs resolves it
    # against the channel's <link>, feedparser (and newsmon) against the document's URL.
    rb"|(?P<relative>link\s*>\s*(?![hH][tT][tT][pP][sS]?:)))"
    # A C1 control as a character reference or as UTF-8 (U+0080-U+009F): feedparser reads
    # both as the windows-1252 character meant ("don\x92t" -> "don't"); feedparser-rs keeps
    # the control, which newsmon's cleaning then deletes.
    rb"|(?P<c1>&\#0*(?:12[89]|1[34][0-9]|15[0-9]);|&\#x0*[89][0-9a-fA-F];|\xc2[\x80-\x9f])",
    re.DOTALL,
)
# An RSS <guid> that counts as a permalink (no isPermaLink="false") and is not absolute.
_RELATIVE_PERMALINK = re.compile(
    rb"""<guid(?![^>]*isPermaLink\s*=\s*["']false)[^>]*>\s*(?![hH][tT][tT][pP][sS]?:)[^<\s]""",
)
# HTML whose sanitising differs between the two (feedparser-tests' "crazy" documents): a
# <script> inside an HTML comment, escaped or in CDATA. feedparser keeps the comment and
# newsmon drops it; feedparser-rs shows text from inside it.
_COMMENTED_SCRIPT = re.compile(rb"<!--.*?<script", re.DOTALL | re.IGNORECASE)
_ESCAPED_COMMENTED_SCRIPT = re.compile(rb"&lt;!--.*?&lt;script", re.DOTALL | re.IGNORECASE)
# feedparser names an <rss> without version="2.x" "rss" where feedparser-rs says "rss20".
_RSS2 = re.compile(rb"""<rss\b[^<>]*\bversion\s*=\s*["']2\.""")
# Text that html_to_text and plain_text read differently (markup, entities, line breaks).
_NOT_SIMPLE = re.compile(r"[<&]|[^\S ]")
# Elements feedparser reads as an item's description: beside a <description> its text
# becomes the item's content. feedparser-rs prefers <summary> to <description> and keeps the
# other two apart (real-feeds/mediacontent-dupes.xml lost its content).
_DESCRIPTION_ALIASES = (b"<summary", b"<itunes:summary", b"<media:description")


@dataclass(slots=True)
class _Markup:
    """What :data:`_SCAN` found: the first of each kind of trouble."""

    empty: str = ""  # the first self-closing element not in SAFE_EMPTY
    odd_cdata: bool = False  # nested CDATA, or a <script> inside a comment inside CDATA
    relative_link: bool = False
    c1: bool = False
    atom_entry_without_updated: bool = False
    untyped_text: bool = False


def _scan(body: bytes, found: _Markup) -> None:
    in_entry = False  # inside an Atom <entry> that has shown no <updated> yet
    for match in _SCAN.finditer(body):
        kind = match.lastgroup
        if kind == "cdata":
            section = match["cdata"]
            if b"<![CDATA[" in section[8:] or (
                b"<!--" in section and _COMMENTED_SCRIPT.search(section)
            ):
                found.odd_cdata = True
        elif kind == "empty":
            if not found.empty:
                name = match["empty"].decode("latin-1")
                if name.lower() not in SAFE_EMPTY:
                    found.empty = name
        elif kind == "atom":
            if match["atom"] == b"entry":
                found.atom_entry_without_updated |= in_entry
                in_entry = True
            else:
                in_entry = False
        elif kind == "untyped":
            found.untyped_text = True
        elif kind == "relative":
            found.relative_link = True
        elif kind == "c1":
            found.c1 = True
    found.atom_entry_without_updated |= in_entry


def read(body: bytes, headers: Mapping[str, str]) -> FastRead:
    """feedparser-rs's reading of ``body``, unless it might differ from feedparser's.

    ``headers`` are the response headers with lower-case names. The caller resolves dates
    (a date string neither feedparser-rs nor newsmon can read is for feedparser to judge) and
    turns the view into items.
    """
    reason = _unsure_before_parsing(body, headers)
    if reason:
        return FastRead(None, reason)
    try:
        doc: Any = feedparser_rs.parse(body)
    except Exception as exc:  # a bug in it, not in the document: feedparser decides
        return FastRead(None, f"raised {type(exc).__name__}")
    markup = _Markup()
    reason = _unsure_of_document(doc, body, headers, markup)
    if reason:
        return FastRead(None, reason)
    rss = str(doc.version).startswith("rss")
    entries = tuple(_entry(e, rss=rss) for e in doc.entries)
    if any(e is None for e in entries):
        # feedparser keeps such an entry as an item whose guid hashes its (empty) words,
        # unless the entry is wholly empty: the two cannot be told apart from here.
        return FastRead(None, "an entry with none of the fields newsmon reads")
    meta = doc.feed
    view = FeedView(
        title=_text(meta.title, meta.title_detail),
        link=meta.link if isinstance(meta.link, str) else None,
        author=_person(meta),
        version=str(doc.version),
        problem=None,  # bozo documents are feedparser's
        entries=entries,
    )
    texts = [view.title] + [t for e in entries if e for t in (e.title, e.summary, *e.contents)]
    if any(t is not None and "\ufffd" in t.value for t in texts):
        # Bytes it could not decode: feedparser would have detected windows-1252 or
        # ISO-8859-1 (uolNoticias: "simula��es").
        return FastRead(None, "undecodable bytes (U+FFFD)")
    if rss and any(e and e.author and "@" in e.author for e in entries):
        # "me@example.com (Name)" and "Name (me@example.com)": feedparser takes the name
        # apart from the address, feedparser-rs does not.
        return FastRead(None, "author with an email address")
    if (
        not rss
        and markup.untyped_text
        and any(t is not None and not t.plain and _NOT_SIMPLE.search(t.value) for t in texts)
    ):
        return FastRead(None, "Atom text without a type (it reads it as HTML)")
    return FastRead(view, "")


def _unsure_before_parsing(body: bytes, headers: Mapping[str, str]) -> str:
    if not AVAILABLE:
        return "feedparser-rs is not installed"
    if type(body) is not bytes:
        # feedparser-rs fetches a str that starts with http:// or https:// (an SSRF hole);
        # only bytes are safe to hand it.
        return "body is not bytes"
    if headers.get("content-location", "").strip():
        return "Content-Location header (a base it cannot be given)"
    if b"base64" in body:
        return "base64 (it does not decode Atom base64 text)"
    if b"&lt;!--" in body and _ESCAPED_COMMENTED_SCRIPT.search(body):
        return "escaped <script> inside an HTML comment (sanitised differently)"
    return ""


def _unsure_of_document(doc: Any, body: bytes, headers: Mapping[str, str], markup: _Markup) -> str:
    """The guard's rules on the document as a whole; ``markup`` is filled by the scan."""
    if doc.bozo:
        # Ill-formed XML, truncation, undefined entities: every item it was seen to drop.
        return "bozo"
    version = str(doc.version or "")
    if not doc.entries or not version:
        return "no entries or no version"  # feedparser says what the document is
    if version == "atom03":
        return "Atom 0.3"  # issued and modified go to other fields
    if version == "rss20" and not _RSS2.search(body):
        return "RSS without version 2.x (feedparser names it rss)"
    if version == "rss10" and b"my.netscape.com/rdf/simple/0.9" in body:
        return "RSS 0.90 (feedparser names it rss090)"
    if not version.startswith(("rss", "atom")):
        return f"format {version}"
    encoding = _codec(str(doc.encoding or ""))
    charset = headers.get("content-type", "").lower().partition("charset=")[2]
    charset = charset.split(";")[0].strip(" \"'")
    if charset and _codec(charset) != encoding:
        # It ignores the header; feedparser weighs it.
        return "charset header differs from the encoding it used"
    if encoding == "utf-8":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid UTF-8 read as UTF-8 (feedparser falls back to windows-1252)"
    elif "16" in encoding or "32" in encoding:
        return f"{encoding}: the markup scan reads ASCII-compatible bytes only"
    _scan(body, markup)
    if markup.c1:
        return "C1 control character (feedparser reads it as windows-1252)"
    if markup.odd_cdata:
        return "nested CDATA or <script> inside a comment (sanitised differently)"
    if version.startswith("atom"):
        if markup.atom_entry_without_updated:
            # It copies <published> into updated, which cannot be undone in Atom.
            return "Atom entry without <updated>"
    else:
        if markup.empty:
            return f"self-closing <{markup.empty}/>"
        if markup.relative_link:
            return "relative <link> (it resolves it against the channel's link)"
        if _RELATIVE_PERMALINK.search(body):
            # A permalink guid stands in for a missing <link>: resolved against the channel's
            # link by feedparser-rs, against the document's URL by feedparser.
            return "permalink <guid> that is not an absolute URL"
        for name in _DESCRIPTION_ALIASES:
            if name in body:
                return f"{name.decode()}> in RSS (feedparser reads it as a description)"
    return ""


def _codec(name: str) -> str:
    """Python's name for an encoding ("utf8", "UTF_8" -> "utf-8"), or the name itself."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name


def _entry(e: Any, *, rss: bool) -> EntryView | None:
    updated = _stamp(e.updated_parsed, e.updated)
    if rss and e.updated == e.published and not e.dc_date:
        # In RSS it copies <pubDate> into updated; feedparser's updated comes from the
        # item's own dc:date, which feedparser-rs reports apart.
        updated = NO_STAMP
    view = EntryView(
        title=_text(e.title, e.title_detail),
        summary=_text(e.summary, e.summary_detail),
        contents=tuple(t for c in e.content or () if (t := _text(c.value, c)) is not None),
        # RSS: only <link>. feedparser-rs also lists a permalink <guid> as the first alternate
        # link when the guid comes first, where feedparser (and newsmon) keep <link>.
        links=() if rss else tuple(_link(x) for x in e.links or () if isinstance(x.href, str)),
        link=e.link if isinstance(e.link, str) else None,
        id=e.id if isinstance(e.id, str) and e.id else None,
        author=_person(e),
        published=_stamp(e.published_parsed, e.published),
        created=_stamp(e.created_parsed, e.created),
        updated=updated,
    )
    empty = (
        view.title is None
        and view.summary is None
        and not view.contents
        and not view.links
        and not view.link
        and not view.id
        and not view.author
        and NO_STAMP == view.published == view.created == view.updated
    )
    return None if empty else view


def _text(value: object, detail: Any) -> Text | None:
    if not isinstance(value, str) or not value:
        return None
    # As for feedparser: a detail's type counts only when it describes this very value.
    plain = detail is not None and detail.value == value and detail.type == "text/plain"
    return Text(value, plain)


def _link(link: Any) -> Link:
    rel = "alternate" if link.rel is None else link.rel
    kind = "text/html" if link.type is None else link.type
    return Link(
        link.href, rel if isinstance(rel, str) else "", kind if isinstance(kind, str) else ""
    )


def _person(node: Any) -> str | None:
    # author_detail as feedparser fills it; where feedparser-rs leaves it empty, its authors
    # list still holds the name, and author is "name (email)".
    detail = node.author_detail or next(iter(node.authors or ()), None)
    name = (detail.name if detail is not None else None) or node.author
    return name if isinstance(name, str) else None


def _stamp(parsed: Any, raw: object) -> Stamp:
    return Stamp(
        tuple(parsed[:6]) if parsed is not None else None,
        raw if isinstance(raw, str) else None,
    )
