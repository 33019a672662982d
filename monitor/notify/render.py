"""The text of an alert: a pure function of the claimed delivery.

Plain text only, the same for every channel: apprise converts it where a service wants
markup. Everything that came from a feed is data, so each value that ends up on one line
(the title above all, which email puts in its Subject header) is flattened to one line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from monitor.model import Copy, Delivery, Match

__all__ = ["clean_line", "format_time", "mark_highlights", "render"]

# The marks around highlighted words: visible in every client, rare in news text, and
# unlike *stars* not turned into emphasis (or eaten) by services that read Markdown.
MARK_OPEN, MARK_CLOSE = "«", "»"
# "Also reported by" stops here: a wire story can run in fifty outlets, and the alert
# is about the story, not the list.
MAX_ALSO = 10
# C0/C1 control characters: a feed's stray NUL or ESC would otherwise reach terminals.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_line(text: str) -> str:
    """``text`` as one line: every line break, control character and whitespace run is one
    space. Titles go through this so that CR/LF in a feed cannot add an email header."""
    return " ".join(_CONTROL.sub(" ", text).split())


def format_time(when: datetime | None, *, date: bool = True) -> str:
    """``2026-11-23 07:10 UTC`` (or ``07:10 UTC`` without the date); ``undated`` for None."""
    if when is None:
        return "undated"
    if when.tzinfo is None:  # the model promises aware datetimes; a naive one is UTC
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def mark_highlights(match: Match) -> str:
    """The match's snippet with each highlighted span between « and », on one line.

    Spans are clipped to the snippet and overlapping or touching spans merged, so a
    sloppy span list still yields balanced marks.
    """
    text = match.snippet
    spans: list[list[int]] = []
    for start, end in sorted(match.highlights):
        start, end = max(0, start), min(len(text), end)
        if start >= end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    pieces: list[str] = []
    cursor = 0
    for start, end in spans:
        pieces += [text[cursor:start], MARK_OPEN, text[start:end], MARK_CLOSE]
        cursor = end
    pieces.append(text[cursor:])
    return clean_line("".join(pieces))


def _also_line(also: tuple[Copy, ...], published: datetime | None) -> str:
    day = published.astimezone(UTC).date() if published is not None else None
    shown = []
    for copy in also[:MAX_ALSO]:
        # The time alone when the copy ran the same day as the item; the date otherwise.
        same_day = copy.published is not None and copy.published.astimezone(UTC).date() == day
        shown.append(f"{clean_line(copy.feed)} ({format_time(copy.published, date=not same_day)})")
    more = len(also) - MAX_ALSO
    suffix = f", and {more} more" if more > 0 else ""
    return "Also reported by: " + ", ".join(shown) + suffix


def render(delivery: Delivery) -> tuple[str, str]:
    """Return ``(title, body)`` of the alert for ``delivery``, both plain text.

    The title is the item's title on one line. The body holds the link, the source (feed
    name), the publication time in UTC, the rule, the matching passage with highlighted
    words between « and », and the other outlets that carried the story.
    """
    item = delivery.item
    title = clean_line(item.title) or "(untitled)"
    lines = [
        clean_line(item.url or "") or "(no link)",
        "",
        f"Source: {clean_line(item.feed)}",
        f"Published: {format_time(item.published)}",
        f"Rule: {clean_line(delivery.rule)}",
    ]
    if delivery.match is not None and delivery.match.snippet.strip():
        lines.append(f"Passage: {mark_highlights(delivery.match)}")
    if delivery.also:
        lines += ["", _also_line(delivery.also, item.published)]
    return title, "\n".join(lines)
