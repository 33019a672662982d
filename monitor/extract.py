"""Article page → its main text, title, author and date, for feeds with ``full_text: true``.

Contract
--------
``extract_article(body, url=..., headers=...)`` takes the bytes of a page that
:class:`~monitor.fetch.Fetcher` returned (already decompressed and size-capped) and returns an
:class:`Article`. It never raises on bad input: an empty, binary, non-HTML, oversize or
unparseable body gives ``text == ""`` and a short reason in ``problem``; so does a failure inside
trafilatura, reported with its exception's type and message.

It is pure, synchronous and CPU-bound (news pages: 18 ms median, 43 ms p95 on one core; see
docs/benchmarks.md, "Article extraction"): call it in a worker process, never on the event loop.
It keeps no state between calls, so the same page gives the same text whatever was extracted
before it (trafilatura's own deduplication cache is process-wide: it is off, and a ``Tuning``
that turns it on gets a fresh cache per page).

The text is what rules see in the ``text:`` scope: the article's paragraphs only, in page
order, separated by blank lines. It favours precision: navigation, related stories, comments,
share bars and repeated photo captions are left out, because a rule that fires on a sidebar story
is a false alert, while a sentence missed here is usually still in the title or the feed summary.

Decoding follows the order browsers use: a byte-order mark, then the ``charset`` of
Content-Type, then a ``<meta>`` (or XML) declaration in the first bytes, then UTF-8 if the bytes
are valid UTF-8, then statistical detection (charset_normalizer), then windows-1252. The body is
decoded here, never by trafilatura, so that it never decompresses a body on its own (trafilatura
unpacks gzip/brotli/zstd bytes it is given, which would bypass the fetcher's size cap).

Dates are read by trafilatura (htmldate), which bounds plausible dates by today's date from the
system clock; that is the one clock read below the scheduler, inside a library.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import charset_normalizer
import trafilatura
from trafilatura.deduplication import LRUCache

__all__ = ["MAX_BODY", "MAX_ELEMENTS", "TUNING", "Article", "Tuning", "extract_article"]

# Pages bigger, or with more elements, than this are refused unparsed, because extraction cost
# grows with both: measured on the dev machine, 30,000 paragraphs take 2-3 s and 8 MB of text
# 3 s, while the largest page of the two benchmark corpora (219 news pages) is 1.6 MB with 5,600
# elements (median 120 kB, 780 elements, 17 ms). Both limits leave 2.5-4x room above real pages;
# just under them, hostile pages cost 1.5-2.2 s (docs/benchmarks.md, "Article extraction").
MAX_BODY = 4 * 1024 * 1024
MAX_ELEMENTS = 25_000
_START_TAG = re.compile(r"<[A-Za-z]")  # counts elements without parsing (script text may add a few)

# Less text than this is what is left of a page without an article (a "Home" link, a cookie
# notice, "Loading..."), never an article: a one-sentence news brief is longer.
_MIN_TEXT = 50
# Media types that are markup; any other declared type is refused unless the body starts with
# markup anyway (servers that label HTML text/plain or application/octet-stream exist).
_MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/xml", "application/xml"})
# Leading bytes of formats that are never pages, checked before any decoding.
_BINARY_MAGIC = (
    (b"%PDF-", "PDF"),
    (b"\x89PNG", "PNG image"),
    (b"GIF8", "GIF image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"RIFF", "RIFF media"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x28\xb5\x2f\xfd", "zstd data"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# The declaration a page makes about itself must sit in its first bytes (HTML: 1024; we look at a
# little more, as pages with long <head> comments put it later). This scans bytes for a charset
# label the way the HTML "prescan" does; it reads no markup structure, so a pattern is enough.
_PRESCAN = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.I)
# Labels that browsers read as another encoding (WHATWG Encoding): pages declaring latin-1 are
# in practice windows-1252 (curly quotes at 0x91-0x94), and a page cannot be UTF-16 while its
# declaration was readable as ASCII.
_ALIASES = {
    "ascii": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "utf-16": "utf-8",
    "utf-16-le": "utf-8",
    "utf-16-be": "utf-8",
}
_DETECT_BYTES = 64 * 1024  # charset_normalizer cost grows with input; a prefix is enough to judge
# htmldate: the first publication, not the last update; with the time and offset when the page
# gives them (a naive value is taken as UTC). No max_date: htmldate bounds by today itself.
_DATE_PARAMS: Mapping[str, object] = {
    "original_date": True,
    "extensive_search": True,
    "outputformat": "%Y-%m-%dT%H:%M:%S%z",
}
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")


@dataclass(frozen=True, slots=True)
class Article:
    """What a page says, without its surroundings."""

    text: str  # main text, plain, paragraphs separated by blank lines; "" when nothing usable
    title: str | None  # the article's headline as the page gives it
    author: str | None  # byline; several authors joined by "; "
    published: datetime | None  # UTC; publication (not modification) date when the page has one
    problem: str | None  # why text is empty or doubtful ("no main text found", "not HTML", ...)


@dataclass(frozen=True, slots=True)
class Tuning:
    """trafilatura's knobs, fixed by measurement (docs/benchmarks.md, "Article extraction").

    The defaults are what the daemon uses; ``bench/extract_eval.py`` passes other values to
    compare them.
    """

    precision: bool = True  # favor_precision: drops more doubtful blocks (sidebars, teasers)
    recall: bool = False  # favor_recall: keeps more doubtful blocks
    fallback: bool = True  # compare with readability/jusText output when the main pass is weak
    tables: bool = True  # keep tables: in news they hold results and figures, rarely layout
    metadata: bool = True  # title, author, date (htmldate): ≈20% of the median cost
    # trafilatura's deduplication, with a per-page cache. Off: its passes and fallbacks count
    # the same block several times, so it drops real paragraphs (AEB F1 0.956 on, 0.961 off);
    # exact repeats are removed afterwards by _paragraphs instead.
    dedup: bool = False


TUNING = Tuning()


def extract_article(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    max_chars: int = 200_000,
    tuning: Tuning = TUNING,
) -> Article:
    """The main text and metadata of the page ``body`` fetched from ``url``.

    ``headers`` are the response's (any case); only Content-Type is read. ``text`` holds at most
    ``max_chars`` characters, cut at a paragraph (or word) boundary; a cut is noted in ``problem``.
    """
    content_type = _header(headers, "content-type")
    refusal = _refusal(body, content_type)
    if refusal is not None:
        return _nothing(refusal)
    markup = _decode(body, content_type)
    if "<" not in markup[:_PRESCAN]:
        return _nothing("not HTML: no markup at the start of the body")
    if _more_elements_than(markup, MAX_ELEMENTS):
        return _nothing(f"page too complex (more than {MAX_ELEMENTS} elements)")
    doc = _run_trafilatura(markup, url, tuning)
    if doc is None or isinstance(doc, str):
        return _nothing(doc or "no main text found")
    meta = (
        (_clean_line(doc.title), _clean_line(doc.author), _published(doc.date))
        if tuning.metadata
        else (None, None, None)
    )
    text = _paragraphs(doc.text or "")
    problem = None
    if len(text) < _MIN_TEXT:
        problem = "no main text found" + (f" (only {text!r})" if text else "")
        text = ""
    if len(text) > max_chars:
        text = _cut(text, max_chars)
        problem = f"text cut at {max_chars} characters"
    return Article(text, *meta, problem=problem)


def _nothing(problem: str) -> Article:
    return Article("", None, None, None, problem)


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return ""


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _refusal(body: bytes, content_type: str) -> str | None:
    """Why ``body`` is not worth parsing, or None."""
    if not body or not body.strip():
        return "empty body"
    if len(body) > MAX_BODY:
        return f"page too large ({len(body)} bytes, limit {MAX_BODY})"
    head = body[:16]
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            return f"not HTML: {what}"
    if b"\x00" in body[:1024] and not _starts_with_markup(body):
        return "not HTML: binary data"  # text never holds NUL; UTF-16 pages start with a BOM
    media = _media_type(content_type)
    if media and media not in _MARKUP_TYPES and not _starts_with_markup(body):
        return f"not HTML: {media}"
    return None


def _more_elements_than(markup: str, limit: int) -> bool:
    if markup.count("<") <= limit:  # the common case, at C speed
        return False
    return any(n > limit for n, _ in enumerate(_START_TAG.finditer(markup), 1))


def _starts_with_markup(body: bytes) -> bool:
    for bom, _ in _BOMS:
        if body.startswith(bom):
            return True
    return body.lstrip()[:1] == b"<"


def _decode(body: bytes, content_type: str) -> str:
    """The body as text, in the encoding a browser would pick (see the module's docstring)."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace")
    declared = _charset(_content_type_charset(content_type)) or _charset(_page_charset(body))
    if declared is not None:
        return body.decode(declared, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    guess = charset_normalizer.from_bytes(body[:_DETECT_BYTES]).best()
    detected = _charset(guess.encoding) if guess is not None else None
    return body.decode(detected or "cp1252", errors="replace")


def _content_type_charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return None


def _page_charset(body: bytes) -> str | None:
    head = body[:_PRESCAN]
    found = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    return found.group(1).decode("ascii") if found else None


def _charset(label: str | None) -> str | None:
    """Python's codec name for a charset label; None for an unknown or unusable one."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return _ALIASES.get(name, name)


def _run_trafilatura(
    markup: str, url: str, tuning: Tuning
) -> trafilatura.settings.Document | str | None:
    """trafilatura's document; a string saying why it failed; None when it found nothing."""
    # The per-page cache makes deduplication drop blocks repeated within this page only;
    # trafilatura's default cache lives for the process and would, after a few copies of the same
    # wire story, start dropping that story's paragraphs from every further page.
    dedup: bool | LRUCache = LRUCache(maxsize=1024) if tuning.dedup else False
    try:
        doc = trafilatura.bare_extraction(
            markup,
            url=url,
            favor_precision=tuning.precision,
            favor_recall=tuning.recall,
            no_fallback=not tuning.fallback,
            include_comments=False,
            include_tables=tuning.tables,
            include_images=False,
            include_links=False,
            include_formatting=False,
            deduplicate=dedup,
            with_metadata=tuning.metadata,
            date_extraction_params=dict(_DATE_PARAMS),
        )
    except Exception as exc:
        # A third-party parser fed hostile pages: whatever breaks inside it (lxml and the
        # fallbacks trip over some malformed trees) is a page without usable text, reported,
        # not a crash of the worker that also serves other feeds.
        return f"extractor failed: {type(exc).__name__}: {exc}"[:300]
    return doc if isinstance(doc, trafilatura.settings.Document) else None


def _clean_line(value: str | None) -> str | None:
    if not value:
        return None
    cleaned = _SPACES.sub(" ", value).strip()
    return cleaned or None


def _published(value: str | None) -> datetime | None:
    """htmldate's date in UTC (naive values taken as UTC); None when absent or malformed."""
    if not value:
        return None
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        return None
    return day.replace(tzinfo=UTC) if day.tzinfo is None else day.astimezone(UTC)


def _paragraphs(raw: str) -> str:
    """trafilatura's lines as paragraphs separated by blank lines, each kept once.

    A line seen before is dropped: photo captions and pull quotes are often printed twice
    (under the image and in a gallery), and short ones escape trafilatura's own check, which
    skips blocks under 100 characters.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for line in raw.splitlines():
        para = _SPACES.sub(" ", line).strip()
        if para and para not in seen:
            seen.add(para)
            kept.append(para)
    return "\n\n".join(kept)


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters at a paragraph, else a word, boundary."""
    if limit <= 0:
        return ""
    head = text[:limit]
    for sep in ("\n\n", " "):
        at = head.rfind(sep)
        if at > limit // 2:
            return head[:at].rstrip()
    return head.rstrip()
