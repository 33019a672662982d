"""The text of an alert: a pure function of the claimed delivery, its channel and a format.

    render(delivery)                         -> (title, body), plain text, times in UTC
    render_for(channel, delivery[, fmt])     -> Rendered(title, body, body_format)

Bodies come from Jinja2 templates: ``templates/{text,markdown,html}.j2`` in this package, or
the channel's own ``template:`` (an absolute path), rendered in the channel's format.
Everything that came from a feed is data. The title is one plain line (email puts it in
the Subject header, so no CR/LF survives) and the caller escapes it where a service blends
it into the body. In the body every value a template prints is escaped for the format
(``formats.py``): HTML through Jinja2's autoescape, Markdown through a ``finalize`` hook
that backslash-escapes and defuses mentions, text by dropping control characters. Values
already in the format (the marked passage, a Markdown link) are ``Markup`` and pass as is.

What a template sees (all strings unless said):

    title      the item's title, one line          url       its http(s) link, or None
    link       the link to show: text as is, Markdown <autolink>; None without one
    source     the feed's name                     published its time in the channel's zone
    rule       the rule that matched               priority  "low" | "normal" | "high"
    passage    the matching passage, highlighted words marked «x» / **x** / <b>x</b>; or None
    also       up to MAX_ALSO other outlets: .feed, .url (http(s) or None), .when
    also_more  how many more outlets there were (int)
    updated    on a follow-up (a rule with ``realert_on_update``, the item's text changed
               materially): when newsmon saw that version, in the channel's zone; None on a
               first alert                    revision  that version's id; "" on a first alert
    channel, story, alert_id                       item, match: the model values themselves

Templates are strict: an unknown name is an error, found by ``validate_template`` (which
renders a sample alert) before any alert is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import Markup

from monitor.model import Channel, Copy, Delivery, Item, Match

from .formats import FORMATS, HTML, MARKDOWN, TEXT, auto_format, clean_line, clean_text, mark
from .formats import escape as escape_for
from .formats import escape_markdown as _escape_markdown

__all__ = [
    "MARK_CLOSE",
    "MARK_OPEN",
    "MAX_ALSO",
    "UPDATED",
    "Rendered",
    "TemplateProblem",
    "channel_zone",
    "clean_line",
    "escape_title",
    "format_time",
    "load_template",
    "mark_highlights",
    "render",
    "render_for",
    "resolve_format",
    "validate_template",
]

# The marks around highlighted words in plain text (see formats.py for the others).
MARK_OPEN, MARK_CLOSE = "«", "»"
# "Also reported by" stops here: a wire story can run in fifty outlets, and the alert
# is about the story, not the list.
MAX_ALSO = 10
# What marks a follow-up alert (a material update of the item) in its title and body.
UPDATED = "Updated:"
_WEB_LINK = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rendered:
    """An alert ready for one service: ``body`` is in ``body_format``, ``title`` plain."""

    title: str  # one line, plain text, never escaped: the service (or the caller) escapes it
    body: str
    body_format: str  # "text" | "markdown" | "html"


class TemplateProblem(ValueError):
    """A channel's template cannot be read, compiled or rendered; the message says why."""


# --- times and highlights ------------------------------------------------------------------


def channel_zone(name: str) -> tzinfo:
    """The zone called ``name``; UTC for an unknown one (``validate_template`` reports it)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def format_time(when: datetime | None, *, date: bool = True, zone: tzinfo = UTC) -> str:
    """``2026-11-23 07:10 UTC`` (or ``07:10 UTC`` without the date) in ``zone``, which names
    itself by its abbreviation or offset (``10:40 +0330``); ``undated`` for None."""
    if when is None:
        return "undated"
    if when.tzinfo is None:  # the model promises aware datetimes; a naive one is UTC
        when = when.replace(tzinfo=UTC)
    local = when.astimezone(zone)
    label = "UTC" if zone is UTC else (local.strftime("%Z") or local.strftime("%z"))
    return local.strftime("%Y-%m-%d %H:%M" if date else "%H:%M") + f" {label}"


def mark_highlights(match: Match) -> str:
    """The match's snippet with each highlighted span between « and », on one line.

    Spans are clipped to the snippet and overlapping or touching spans merged, so a
    sloppy span list still yields balanced marks.
    """
    return mark(TEXT, match.snippet, match.highlights)


# --- formats and templates -----------------------------------------------------------------


def resolve_format(channel_format: str, scheme: str) -> str:
    """The body format for one URL of a channel: the channel's, or the scheme's for "auto"."""
    return auto_format(scheme) if channel_format == "auto" else channel_format


def _finalize_markdown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return _escape_markdown(clean_line(str(value)))


def _finalize_text(value: Any) -> Any:
    return "" if value is None else clean_text(str(value))


def _finalize_html(value: Any) -> Any:
    return "" if value is None else value  # autoescape does the rest


def _environment(fmt: str) -> jinja2.Environment:
    finalize = {MARKDOWN: _finalize_markdown, HTML: _finalize_html}.get(fmt, _finalize_text)
    return jinja2.Environment(
        autoescape=fmt == HTML,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


_ENVIRONMENTS = {fmt: _environment(fmt) for fmt in FORMATS}
_DEFAULTS: dict[str, jinja2.Template] = {}


def load_template(path: str | None, fmt: str) -> jinja2.Template:
    """The compiled template for ``fmt``: the file at ``path``, or the default one.

    Raises ``TemplateProblem`` when the file cannot be read or does not compile.
    """
    if fmt not in _ENVIRONMENTS:
        raise TemplateProblem(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    env = _ENVIRONMENTS[fmt]
    if path is None:
        if fmt not in _DEFAULTS:
            source = resources.files(__package__).joinpath(f"templates/{fmt}.j2").read_text("utf-8")
            _DEFAULTS[fmt] = env.from_string(source)
        return _DEFAULTS[fmt]
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TemplateProblem(f"template {path}: cannot read: {reason}") from None
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template {path}:{exc.lineno}: {exc.message}") from None


def _web_link(url: str | None) -> str | None:
    """``url`` when it is an http(s) link; a ``javascript:`` link must never be clickable."""
    url = clean_line(url or "")
    return url if _WEB_LINK.match(url) else None


def _link(fmt: str, item: Item) -> str | None:
    shown = clean_line(item.url or "")
    if not shown:
        return None
    web = _web_link(shown)
    if fmt == MARKDOWN:
        if web is None:
            return Markup(_escape_markdown(shown))
        # An autolink: nothing inside <...> is Markdown, and < > space cannot occur in it.
        return Markup("<" + quote(web, safe=":/?#[]@!$&'()*+,;=%~-._") + ">")
    return shown


def _context(fmt: str, delivery: Delivery, zone: tzinfo) -> dict[str, Any]:
    item = delivery.item
    day = item.published.astimezone(zone).date() if item.published is not None else None
    also = []
    for copy in delivery.also[:MAX_ALSO]:
        also.append(_copy_view(copy, day, zone))
    passage = None
    if delivery.match is not None and delivery.match.snippet.strip():
        marked = mark(fmt, delivery.match.snippet, delivery.match.highlights)
        passage = marked if fmt == TEXT else Markup(marked)
    return {
        "title": clean_line(item.title) or "(untitled)",
        "url": _web_link(item.url),
        "link": _link(fmt, item),
        "source": clean_line(item.feed),
        "published": format_time(item.published, zone=zone),
        "rule": clean_line(delivery.rule),
        "priority": delivery.priority,
        "passage": passage,
        "also": also,
        "also_more": max(0, len(delivery.also) - MAX_ALSO),
        # A follow-up is queued by the poll that saw the new text: its creation is that moment.
        "updated": format_time(delivery.created, zone=zone) if delivery.revision else None,
        "revision": delivery.revision,
        "channel": delivery.channel,
        "story": delivery.story,
        "alert_id": delivery.alert_id,
        "item": item,
        "match": delivery.match,
    }


def _copy_view(copy: Copy, day: Any, zone: tzinfo) -> dict[str, Any]:
    # The time alone when the copy ran the same day as the item; the date otherwise.
    same_day = copy.published is not None and copy.published.astimezone(zone).date() == day
    return {
        "feed": clean_line(copy.feed),
        "url": _web_link(copy.url),
        "when": format_time(copy.published, date=not same_day, zone=zone),
    }


def _run(template: jinja2.Template, origin: str, fmt: str, delivery: Delivery, zone: tzinfo) -> str:
    try:
        body = template.render(_context(fmt, delivery, zone))
    except Exception as exc:  # a template may call anything on the values it is given
        raise TemplateProblem(f"{origin}: {type(exc).__name__}: {exc}") from None
    # Blank lines that conditional blocks left behind are folded into one.
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def render_for(
    channel: Channel,
    delivery: Delivery,
    fmt: str | None = None,
    *,
    template: jinja2.Template | None = None,
) -> Rendered:
    """Render ``delivery`` for ``channel`` in ``fmt`` (default: the channel's format; for
    "auto", the one its first URL's scheme calls for), with times in the channel's zone.

    ``template``: an already compiled template for ``fmt`` (the ``Notifier`` compiles each
    once); default: ``channel.template`` or the package's default. Raises
    ``TemplateProblem`` when the template cannot be loaded or fails on this delivery.
    """
    if fmt is None:
        scheme = channel.urls[0].partition("://")[0] if channel.urls else ""
        fmt = resolve_format(channel.format, scheme)
    if template is None:
        template = load_template(channel.template, fmt)
    origin = f"template {channel.template or fmt + '.j2'} ({fmt})"
    body = _run(template, origin, fmt, delivery, channel_zone(channel.timezone))
    return Rendered(title=_title(delivery), body=body, body_format=fmt)


def _title(delivery: Delivery) -> str:
    title = clean_line(delivery.item.title) or "(untitled)"
    # A follow-up must not read as the first alert again where only the title shows
    # (a subject line, a notification): it says it is an update.
    return f"{UPDATED} {title}" if delivery.revision else title


def render(delivery: Delivery) -> tuple[str, str]:
    """Return ``(title, body)`` of the alert for ``delivery``, both plain text, in UTC.

    The title is the item's title on one line (``Updated: `` before it on a follow-up for a
    material update, whose body then starts with an ``Updated:`` line). The body (the default
    text template) holds the link, the source (feed name), the publication time, the rule, the
    matching passage with highlighted words between « and », and the other outlets that
    carried the story.
    """
    rendered = render_for(Channel(delivery.channel, (), format=TEXT), delivery, TEXT)
    return rendered.title, rendered.body


# A delivery to try templates on: every field set, so a template's use of any of them is
# exercised before a real alert depends on it.
_SAMPLE = Delivery(
    id=0,
    alert_id=0,
    channel="sample",
    rule="sample-rule",
    priority="normal",
    item=Item(
        feed="sample-feed",
        guid="sample",
        url="https://example.org/news/1",
        title="Sample <alert> & *title*",
        summary="A sample passage with a highlighted word.",
        published=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    ),
    match=Match(
        rule="sample-rule",
        snippet="A sample passage with a highlighted word.",
        highlights=((21, 32),),
    ),
    story="sample-story",
    attempts=0,
    created=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    also=(Copy("other-feed", "https://example.com/2", datetime(2026, 1, 1, 12, 5, tzinfo=UTC)),),
    revision="sample-rev",
)


def validate_template(channel: Channel, formats: tuple[str, ...] = ()) -> str | None:
    """None when ``channel``'s format, time zone and template work, else the reason.

    The template is compiled for each of ``formats`` (default: the channel's format, or all
    three for "auto") and rendered with a sample alert. Nothing is sent.
    """
    if channel.format != "auto" and channel.format not in FORMATS:
        return f"unknown format {channel.format!r} (expected auto, {', '.join(FORMATS)})"
    try:
        ZoneInfo(channel.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {channel.timezone!r}"
    if channel.template is not None and not Path(channel.template).is_absolute():
        return f"template {channel.template}: not an absolute path"
    if not formats:
        formats = FORMATS if channel.format == "auto" else (channel.format,)
    try:
        for fmt in formats:
            render_for(channel, _SAMPLE, fmt)
    except TemplateProblem as exc:
        return str(exc)
    return None


def escape_title(fmt: str, title: str) -> str:
    """``title`` escaped for ``fmt``, for a service that puts the title into the body."""
    return escape_for(fmt, title)
