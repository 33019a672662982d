"""notify: formats, escaping of hostile feed text, templates and channel validation.

Pure: no network. Markdown bodies are run through a real Markdown renderer (Python-Markdown)
and HTML bodies through the standard library's HTML parser, so "shown as text, never
interpreted" is checked the way a client would read the body, not by string search alone.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest

from monitor.model import Channel, Copy, Match
from monitor.notify import Notifier, message_id, render, render_for, validate_channel
from monitor.notify.formats import auto_format, escape, escape_markdown, mark
from tests.test_notify import delivery

HOSTILE = [
    "<script>alert(1)</script>",
    "<!channel> <!here> <@U024BE7LH>",
    "@here @everyone @channel",
    "**bold** _it_ `code` ~~gone~~ [link](https://evil.example) ![img](x.png)",
    "# heading",
    "- a list item",
    "1. numbered",
    "Breaking\r\nBcc: x@evil.example",
    "<a href='javascript:alert(1)'>click</a> &amp; &lt;",
    "pipe | table | row",
]


class _Tags(HTMLParser):
    """Collects the tags and the text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def _hostile(text: str) -> object:
    match = Match(rule="r", snippet=text, highlights=())
    also = (Copy(text, None, None),)
    return delivery(title=text, match=match, also=also)


@pytest.mark.parametrize(
    ("scheme", "fmt"),
    [
        ("slack", "markdown"),
        ("discord", "markdown"),
        ("mmost", "markdown"),
        ("mailto", "html"),
        ("mailtos", "html"),
        ("tgram", "html"),
        ("json", "text"),
        ("console", "text"),
        ("ntfy", "text"),
    ],
)
def test_auto_format_per_scheme(scheme: str, fmt: str) -> None:
    assert auto_format(scheme) == fmt


# --- hostile feed text, per format --------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_html_body_shows_feed_text_as_text(text: str) -> None:
    body = render_for(Channel("c", ()), _hostile(text), "html").body  # type: ignore[arg-type]
    parsed = _parse(body)
    # Only the template's own tags; the feed's text comes back out as text.
    assert set(parsed.tags) <= {"p", "a", "b", "i", "br"}
    assert parsed.tags.count("a") == 1  # the item's link, nothing from the feed
    shown = "".join(parsed.text)
    assert " ".join(text.split()) in shown


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_body_shows_feed_text_as_text(text: str) -> None:
    body = render_for(Channel("c", ()), _hostile(text), "markdown").body  # type: ignore[arg-type]
    html = markdown.markdown(body)
    parsed = _parse(html)
    # Markup from the template only: paragraphs, its bold labels, the quote, the link.
    assert set(parsed.tags) <= {"p", "strong", "blockquote", "a"}
    assert parsed.tags.count("a") == 1
    assert "<!" not in body.replace("\\<!", "") and "<@" not in body.replace("\\<@", "")
    # Python-Markdown predates CommonMark and leaves a backslash before < > | ~ (which a
    # CommonMark renderer drops); either way the character is text. Entities are decoded
    # by both, as the spec says.
    shown = "".join(parsed.text).replace("\u200b", "").replace("\\", "")
    assert unescape(" ".join(text.split())) in shown


@pytest.mark.parametrize("text", HOSTILE)
def test_text_body_keeps_feed_text_on_one_line(text: str) -> None:
    body = render_for(Channel("c", ()), _hostile(text), "text").body  # type: ignore[arg-type]
    assert "\r" not in body
    assert f"Passage: {' '.join(text.split())}" in body.splitlines()


def test_markdown_escape_defuses_mentions_and_markers() -> None:
    assert escape_markdown("<!channel> @here") == "\\<\\!channel\\> @\u200bhere"
    assert escape_markdown("- x") == "\\- x"
    assert escape_markdown("12. x") == "12\\. x"
    assert escape_markdown("a.b-c, 5 & 6") == "a.b-c, 5 & 6"  # plain punctuation stays


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "x <b> «y»"),
        ("markdown", "x \\<b\\> **y**"),
        ("html", "x &lt;b&gt; <b>y</b>"),
    ],
)
def test_mark_escapes_around_the_marks(fmt: str, expected: str) -> None:
    assert mark(fmt, "x\u00a0<b>\n y", ((7, 8), (8, 8))) == expected


def test_escape_flattens_to_one_line() -> None:
    assert escape("html", "a\r\nBcc: <x>") == "a Bcc: &lt;x&gt;"
    assert escape("text", "a\x1b[31m\nb") == "a [31m b"


# --- defaults ------------------------------------------------------------------------------


def test_render_is_the_text_template() -> None:
    title, body = render(delivery())
    assert (title, body) == (
        render_for(Channel("desk", ()), delivery(), "text").title,
        render_for(Channel("desk", ()), delivery(), "text").body,
    )


def test_times_are_in_the_channel_zone() -> None:
    also = (Copy("reuters", None, datetime(2026, 11, 23, 21, 0, tzinfo=UTC)),)
    channel = Channel("c", (), timezone="Asia/Tehran")
    body = render_for(channel, delivery(also=also), "text").body
    assert "Published: 2026-11-23 10:40 +0330" in body
    # 21:00 UTC is the next day in Tehran: the copy shows its date.
    assert "reuters (2026-11-24 00:30 +0330)" in body


def test_a_follow_up_says_updated_in_title_and_every_format() -> None:
    first = delivery()
    follow_up = replace(
        first, revision="3f2a9c0d1e2b", created=datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    )
    channel = Channel("c", (), timezone="Asia/Tehran")
    text = render_for(channel, follow_up, "text")
    assert text.title == "Updated: Iran and Russia ratify treaty"
    assert text.body.splitlines()[0] == (
        "Updated: 2026-11-23 13:00 +0330 (the item's text changed since the first alert)"
    )
    md = render_for(channel, follow_up, "markdown").body
    assert md.splitlines()[0].startswith("**Updated:** 2026")
    assert "".join(_parse(markdown.markdown(md)).text).startswith("Updated: 2026-11-23 13:00")
    html = _parse(render_for(channel, follow_up, "html").body)
    assert html.tags[:2] == ["p", "b"] and "".join(html.text).startswith("Updated: 2026-11-23")
    for fmt in ("text", "markdown", "html"):
        shown = render_for(channel, first, fmt)
        assert "Updated" not in shown.title + shown.body


def test_auto_picks_the_first_urls_format() -> None:
    slack = Channel("c", ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/",))
    assert render_for(slack, delivery()).body_format == "markdown"
    assert render_for(Channel("c", ("console://",)), delivery()).body_format == "text"
    assert render_for(Channel("c", ("json://h",), format="html"), delivery()).body_format == "html"


def test_a_javascript_link_is_never_a_link() -> None:
    base = delivery()
    evil = replace(base, item=replace(base.item, url="javascript:alert(1)"))
    html = render_for(Channel("c", ()), evil, "html").body
    assert "href" not in html and "(no link)" in html
    md = render_for(Channel("c", ()), evil, "markdown").body
    assert "<javascript" not in md and "javascript:alert\\(1\\)" in md


def test_message_id_is_stable_and_tells_alerts_apart() -> None:
    assert message_id(delivery(id=3)) == message_id(delivery(id=3))
    assert message_id(delivery(id=3)) != message_id(delivery(id=4))
    assert message_id(delivery(channel="a")) != message_id(delivery(channel="b"))


# --- custom templates and validation --------------------------------------------------------


def test_custom_template_is_used_and_escaped(tmp_path: Path) -> None:
    path = tmp_path / "alert.j2"
    path.write_text("NEWS {{ title }} via {{ source }}{% if passage %}: {{ passage }}{% endif %}")
    channel = Channel("c", ("console://",), format="html", template=str(path))
    assert validate_channel(channel) is None
    body = render_for(channel, _hostile("<script>x</script>")).body  # type: ignore[arg-type]
    assert body.startswith("NEWS &lt;script&gt;x&lt;/script&gt; via aawsat-world: ")


async def test_custom_template_reaches_the_console(tmp_path: Path) -> None:
    path = tmp_path / "alert.j2"
    path.write_text("{{ rule }} | {{ published }} | {{ also_more }}")
    stream = io.StringIO()
    channel = Channel("c", ("console://",), template=str(path), timezone="Europe/Berlin")
    notifier = Notifier({"c": channel}, stdout=stream)
    assert (await notifier.send(delivery(channel="c"))).ok
    assert "iran-russia-treaty | 2026-11-23 08:10 CET | 0" in stream.getvalue()


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (None, "cannot read"),
        ("{% if title %}never closed", "alert.j2:1"),
        ("{{ no_such_value }}", "no_such_value"),
        ("{{ title.nope() }}", "nope"),
    ],
)
async def test_a_broken_template_is_a_clear_permanent_error(
    tmp_path: Path, source: str | None, says: str
) -> None:
    path = tmp_path / "alert.j2"
    if source is not None:
        path.write_text(source)
    channel = Channel("c", ("console://",), template=str(path))
    reason = validate_channel(channel)
    assert reason is not None and says in reason
    stream = io.StringIO()
    outcome = await Notifier({"c": channel}, stdout=stream).send(delivery(channel="c"))
    assert not outcome.ok and outcome.permanent
    assert outcome.error is not None and says in outcome.error
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("channel", "says"),
    [
        (Channel("c", ("console://",), format="rtf"), "unknown format 'rtf'"),
        (Channel("c", ("console://",), timezone="Mars/Olympus"), "unknown time zone"),
        (Channel("c", ("console://",), template="relative.j2"), "not an absolute path"),
        (Channel("c", ("nosuch://user:hunter2pw@h/x",)), "unknown scheme nosuch://"),
        (Channel("c", ()), "no URL"),
    ],
)
def test_validate_channel_names_the_problem(channel: Channel, says: str) -> None:
    reason = validate_channel(channel)
    assert reason is not None and says in reason
    assert "hunter2pw" not in reason


def test_validate_channel_accepts_a_good_channel() -> None:
    channel = Channel(
        "c",
        ("console://", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/"),
        timezone="Asia/Tehran",
    )
    assert validate_channel(channel) is None
