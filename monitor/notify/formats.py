"""Message formats and the escaping of feed text for each of them. Pure functions.

An alert body is written in one of three formats: ``text``, ``markdown`` (CommonMark, which
apprise turns into each service's dialect: Slack mrkdwn, Telegram Markdown, ...) or ``html``.
Everything that came from a feed is data: it is escaped for the format it lands in, so a
title such as ``<script>``, ``<!channel>``, ``@here`` or ``**`` is shown, never interpreted.

- ``text``: nothing is markup; control characters become spaces (a feed's ESC must not
  reach a terminal) but line breaks are the template's business.
- ``markdown``: every CommonMark punctuation character is backslash-escaped (``\\<`` is what
  apprise's Slack converter turns into ``&lt;``, so ``<!channel>`` cannot become a mention),
  and ``@`` before a word gets a zero-width space, so ``@here`` / ``@everyone`` / ``@channel``
  do not notify a whole room in Slack, Discord or Mattermost.
- ``html``: ``&``, ``<``, ``>`` and quotes become entities (Jinja2's autoescape does this
  for templates; ``escape`` here is the same rule for code).

Email headers are never built from escaped text: titles go through ``clean_line`` (one line,
no CR/LF), and apprise encodes the header.
"""

from __future__ import annotations

import html
import re

__all__ = [
    "FORMATS",
    "HTML",
    "MARKDOWN",
    "TEXT",
    "auto_format",
    "clean_line",
    "clean_text",
    "escape",
    "escape_markdown",
    "mark",
]

TEXT, MARKDOWN, HTML = "text", "markdown", "html"
FORMATS = (TEXT, MARKDOWN, HTML)

# Schemes whose service renders Markdown (apprise converts CommonMark to their dialect).
_MARKDOWN_SCHEMES = frozenset({"slack", "discord", "mmost", "mmosts", "mattermost"})
# Email: an HTML part with a plain-text alternative (apprise writes both from the HTML).
# Telegram: its HTML subset, which apprise reduces the body to.
_HTML_SCHEMES = frozenset({"mailto", "mailtos", "tgram"})

# The marks around highlighted evidence, per format. Text uses « » because they are
# visible in every client and, unlike *stars*, not eaten by services that read Markdown.
_MARKS = {TEXT: ("«", "»"), MARKDOWN: ("**", "**"), HTML: ("<b>", "</b>")}

# C0/C1 control characters: a feed's stray NUL or ESC would otherwise reach terminals.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NOT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# The characters that make inline CommonMark (emphasis, code, links, images, raw HTML,
# tables, strikethrough) plus "#". Not "&": apprise's Slack converter keeps a "\\&" as
# is, raw "&" and all, while it entity-escapes a bare "&" itself; and "." "-" mid-line are
# plain text, where a backslash would only clutter the alert.
_MD_PUNCT = re.compile(r"([\\`*_~\[\]()<>|#!{}])")
# Block markers that act only at the start of a line: "- x", "+ x", "1. x", "1) x".
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])")
# "@here", "@channel", "@everyone", "@U123": an @ right before a word character.
_MENTION = re.compile(r"@(?=\w)")
_ZWSP = "\u200b"


def auto_format(scheme: str) -> str:
    """The format ``format: auto`` picks for a URL of ``scheme`` (json, console, ...: text)."""
    scheme = scheme.lower()
    if scheme in _MARKDOWN_SCHEMES:
        return MARKDOWN
    if scheme in _HTML_SCHEMES:
        return HTML
    return TEXT


def clean_line(text: str) -> str:
    """``text`` as one line: every line break, control character and whitespace run is one
    space. Titles go through this so that CR/LF in a feed cannot add an email header."""
    return " ".join(_CONTROL.sub(" ", text).split())


def clean_text(text: str) -> str:
    """``text`` with control characters other than newline turned into spaces."""
    return _CONTROL_NOT_NEWLINE.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def escape_markdown(text: str) -> str:
    """``text`` as literal CommonMark: punctuation backslash-escaped, mentions defused."""
    # "@" is not backslash-escaped: Slack would show the backslash. A zero-width space
    # after it breaks the mention and stays invisible.
    escaped = _MD_LINE_START.sub(_escape_block_marker, _MD_PUNCT.sub(r"\\\1", text))
    return _MENTION.sub("@" + _ZWSP, escaped)


def _escape_block_marker(found: re.Match[str]) -> str:
    # "- x" -> "\- x"; "1. x" -> "1\. x": the escape goes before the last character.
    lead, marker = found.group(1), found.group(2)
    return f"{lead}{marker[:-1]}\\{marker[-1]}"


def escape(fmt: str, text: str) -> str:
    """``text`` (one line of feed data) escaped for ``fmt``; control characters removed."""
    text = clean_line(text)
    if fmt == MARKDOWN:
        return escape_markdown(text)
    if fmt == HTML:
        return html.escape(text, quote=True)
    return text


def mark(fmt: str, text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """``text`` on one line with each span marked for ``fmt``: «x», **x** or <b>x</b>.

    The text is escaped for ``fmt`` piece by piece, so the marks are the only markup in
    the result. Spans are clipped to the text and overlapping or touching spans merged,
    so a sloppy span list still yields balanced marks.
    """
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        start, end = max(0, start), min(len(text), end)
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    opening, closing = _MARKS.get(fmt, _MARKS[TEXT])
    pieces: list[str] = []
    cursor = 0
    for start, end in merged:
        pieces += [_piece(fmt, text[cursor:start]), opening]
        pieces += [_piece(fmt, text[start:end]).strip(), closing]
        cursor = end
    pieces.append(_piece(fmt, text[cursor:]))
    return "".join(pieces).strip()


def _piece(fmt: str, text: str) -> str:
    # Like escape(), but keeping a piece's edge spaces: they separate it from the marks.
    flat = _CONTROL.sub(" ", text)
    flat = re.sub(r"\s+", " ", flat)
    if fmt == MARKDOWN:
        return escape_markdown(flat)
    if fmt == HTML:
        return html.escape(flat, quote=True)
    return flat
