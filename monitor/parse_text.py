"""Markup → plain text, for feed titles, summaries and contents.

Built on the standard library's tolerant ``html.parser`` (never on regular expressions over
HTML). Pure functions, safe from any thread, that never raise on malformed markup. Their output
holds no control characters but line breaks (none at all in single-line mode): text from a feed
is data, and must never act on the terminal or log it ends up in.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "plain_text"]


# Elements whose content is never readable text: code, styling, and fallbacks that repeat or
# replace what the page shows.
_HIDDEN = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg"})
# Elements that begin a new line of text.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
        "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
# Elements that separate words without starting a line (table cells, list-less items).
_SPACED = frozenset({"td", "th", "img", "input", "label", "option"})
_WHITESPACE = re.compile(r"\s+")
# Control characters that are not whitespace (C0, DEL, C1): no text needs them, and in a title
# they would reach a terminal as escape sequences (ESC [ 2 J clears the screen) or cut a log
# line. The whitespace controls (tab, line breaks, U+001C-U+001F, NEL) are collapsed instead.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # depth inside _HIDDEN elements
        self.saw_hidden = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
            self.saw_hidden = True
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag in _SPACED:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <script/> opens nothing; <br/> is still a break.
        if tag in _HIDDEN:
            self.saw_hidden = True
        else:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag in _SPACED:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        # A line break in HTML source is just a space; only elements break lines.
        if not self.hidden:
            self.parts.append(_WHITESPACE.sub(" ", data))


def _extract(markup: str) -> _TextExtractor:
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, AttributeError, ValueError):
        # html.parser still trips over a few malformed declarations ("<![" and kin);
        # the text gathered up to that point is kept.
        pass
    return parser


def _collapse(text: str, *, single_line: bool) -> str:
    text = _CONTROL.sub("", text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return (" " if single_line else "\n").join(line for line in lines if line)


def html_to_text(markup: str, *, single_line: bool = False) -> str:
    """Plain text of an HTML fragment.

    Tags are removed and character references decoded; the content of ``<script>``,
    ``<style>`` and similar never-visible elements is dropped; block elements become line
    breaks (spaces when ``single_line``); runs of whitespace collapse to one space and blank
    lines disappear. Never raises on malformed markup.
    """
    if not markup:
        return ""
    return _collapse("".join(_extract(markup).parts), single_line=single_line)


def plain_text(text: str, *, single_line: bool = False) -> str:
    """Whitespace-collapsed ``text`` that is meant as plain text.

    Angle brackets in plain text are words ("the <blink> tag"), so they stay, unless the
    text hides a ``<script>`` or the like: then it is read as HTML, since such text is
    markup escaped once too often, and a script must never reach an alert.
    """
    if "<" in text:
        parser = _extract(text)
        if parser.saw_hidden:
            return _collapse("".join(parser.parts), single_line=single_line)
    return _collapse(text, single_line=single_line)
