"""Feeds with `full_text: true`: rules see the article's main text, never its sidebar.

A real in-process Daemon polls a real local HTTP server serving a one-sentence feed and the
article pages it links to. The news ("Evin prison") is in the ninth paragraph; the page also
carries unrelated sidebar stories about Taiwan, a related-posts list and comments. A page that
fails leaves its item with the feed's text, marked, and matching goes on; a re-poll never
fetches a page again.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from monitor.config import Settings, load_config_text
from monitor.scheduler import Daemon
from tests.support.feedserver import FeedServer

FILLER = (
    "The parliament session on Sunday discussed the budget for the coming year, and several "
    "deputies asked the government for figures on inflation, housing and the price of bread."
)


def page(title: str, news: str) -> bytes:
    paragraphs = [f"<p>{FILLER} ({n})</p>" for n in range(8)] + [f"<p>{news}</p>"]
    return f"""<!doctype html><html><head><title>{title}</title>
<meta name="author" content="Sara Example">
<meta property="article:published_time" content="2024-03-01T08:30:00+00:00"></head><body>
<nav><a href="/">Home</a> <a href="/world">World</a> <a href="/asia">Asia</a></nav>
<article><h1>{title}</h1>{"".join(paragraphs)}</article>
<aside><h2>Most read</h2><ul>
<li><a href="/t1">Taiwan Strait tensions rise as drills continue near the island</a></li>
<li><a href="/t2">Taiwan election: opposition leads in new poll of voters</a></li></ul></aside>
<section class="related"><h3>Related Posts</h3><a href="/r">Taiwan chip exports hit record</a>
</section><section id="comments"><h3>Leave a Reply</h3><p>Taiwan should be next, one
reader wrote.</p></section><footer>© The Daily Example</footer></body></html>""".encode()


def feed(
    now: datetime, base: str, items: list[tuple[str, str]], pages: dict[str, str] | None = None
) -> bytes:
    """An RSS document; each item links to `{base}/{page}.html`, its page named as its guid
    unless `pages` says otherwise."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<link>{base}/{(pages or {}).get(guid, guid)}.html</link>"
        f"<description>Parliament met on Sunday.</description>"
        f"<pubDate>{format_datetime(now)}</pubDate></item>"
        for guid, title in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Daily</title>{body}'
        "</channel></rss>"
    ).encode()


def daily_settings(
    tmp_path: Path, server: FeedServer, *, rules: dict[str, str], http: str = ""
) -> Settings:
    """The `daily` feed with `full_text: true`, a console channel and `rules` (name: query);
    `http` adds settings to the `http:` section."""
    queries = "".join(f"  - name: {name}\n    query: '{q}'\n" for name, q in rules.items())
    return load_config_text(
        f"database: sqlite:///{tmp_path / 'db.sqlite'}\n"
        f"http: {{allow_private_networks: true, {http}}}\n"
        f"feeds:\n  - name: daily\n    url: {server.url('/daily.xml')}\n    full_text: true\n"
        "channels:\n  console: {url: 'console://'}\n"
        f"rules:\n{queries}"
    )


async def test_rules_match_the_article_text_not_its_sidebar(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    async with FeedServer() as server:
        base = server.url("/a")
        server.add(
            "/a/one.html",
            page(
                "Budget session",
                "Relatives gathered outside Evin prison on Sunday evening asking for news.",
            ),
            content_type="text/html; charset=utf-8",
        )
        server.add("/a/two.html", b"not here", status=404, content_type="text/html")
        items = [("one", "Budget session in parliament"), ("two", "Evin prison visits halted")]
        server.add("/daily.xml", feed(now, base, items))
        settings = daily_settings(
            tmp_path,
            server,
            rules={"evin-in-text": 'text:"evin prison"', "taiwan": "taiwan"},
        )
        out = io.StringIO()
        async with Daemon(settings, stdout=out) as daemon:
            # Items of the feed's first poll are new (dated now): both are alertable.
            outcomes = await daemon.poll_once()
            assert [o.error for o in outcomes] == [None]
            await daemon.deliver()
            stored = {i.guid: i for i in await daemon.store.items_since(now.replace(year=2000))}
            page_hits = server.hits("/a/one.html"), server.hits("/a/two.html")

            alerted = out.getvalue()

            # A re-poll with a new ETag parses the feed again but fetches no page, and the
            # stored article text stays: the item is unchanged, not rewritten to its summary.
            server.add("/daily.xml", feed(now, base, items), etag='"v2"')
            (again,) = await daemon.poll_once()
            assert (again.new_items, again.alerts, again.error) == (0, 0, None)
            assert (server.hits("/a/one.html"), server.hits("/a/two.html")) == page_hits == (1, 1)
            # A feed that rotates its GUIDs: the same pages under new ones are not fetched
            # again either; the copies carry the stored text and join their stories.
            rotated = [("one-b", items[0][1]), ("two-b", items[1][1])]
            pages = {"one-b": "one", "two-b": "two"}
            server.add("/daily.xml", feed(now, base, rotated, pages), etag='"v3"')
            (third,) = await daemon.poll_once()
            assert (third.new_items, third.alerts, third.error) == (2, 0, None)
            await daemon.deliver()
            after = {i.guid: i for i in await daemon.store.items_since(now.replace(year=2000))}

    assert after["one"] == stored["one"] and after["two"] == stored["two"]
    assert out.getvalue() == alerted  # nothing alerted twice
    # the rotated copy of "one" links to one.html: its stored text came with it, and its
    # story is that of "one" (the same canonical URL)
    assert after["one-b"].text == stored["one"].text
    assert after["one-b"].page_title == stored["one"].page_title == "Budget session"

    # The article's ninth paragraph reached the rules; the sidebar, related posts and
    # comments did not, although every one of them says "Taiwan".
    one, two = stored["one"], stored["two"]
    assert "Evin prison" in one.text and "Taiwan" not in one.text and one.text_problem is None
    assert one.summary == "Parliament met on Sunday."  # the feed's own text stays as summary
    assert one.title == "Budget session in parliament"  # the feed's title stands
    assert one.author == "Sara Example"  # the page filled what the feed left empty
    # The page's own metadata is stored beside the feed's, and a re-poll keeps it.
    meta = (one.page_title, one.page_author, one.page_published)
    assert meta == ("Budget session", "Sara Example", datetime(2024, 3, 1, 8, 30, tzinfo=UTC))
    assert (after["one"].page_title, after["one"].page_author, after["one"].page_published) == meta
    assert (two.page_title, two.page_author, two.page_published) == ("", "", None)
    assert two.text == "" and two.text_problem == "HTTP 404 Not Found"
    alerts = out.getvalue()
    assert "Budget session in parliament" in alerts  # matched in its article text
    assert "Evin prison visits halted" in alerts  # its page failed; its title still matched
    assert "taiwan" not in alerts.lower()
    # The article's page was asked for as HTML.
    asked = [r for r in server.requests if r.path == "/a/one.html"]
    assert asked[0].headers["Accept"].startswith("text/html")


async def test_rules_test_full_text_shows_what_the_rules_see(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    async with FeedServer() as server:
        news = "Relatives gathered outside Evin prison on Sunday evening asking for news."
        server.add("/a/one.html", page("Budget session", news), content_type="text/html")
        server.add("/daily.xml", feed(now, server.url("/a"), [("one", "Budget session")]))
        config = tmp_path / "c.yaml"
        config.write_text(
            "http: {allow_private_networks: true}\nfeeds: []\n"
            "channels:\n  console: {url: 'console://'}\n"
            "rules:\n  - name: evin\n    query: 'text:\"evin prison\"'\n"
            "  - name: taiwan\n    query: taiwan\n"
        )

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "monitor", "--config", str(config), "rules", "test", *args],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
                timeout=60,
            )

        for source in (server.url("/daily.xml"), server.url("/a/one.html")):
            out = (await asyncio.to_thread(cli, "--full-text", source)).stdout
            assert "--- text the rules see for" in out and news in out, out
            assert "Taiwan" not in out.split("--- text")[1]  # the sidebar never reaches rules
            assert "matches: evin: 1, taiwan: 0" in out, out
        # Without --full-text, the feed's one sentence is all there is.
        out = (await asyncio.to_thread(cli, server.url("/daily.xml"))).stdout
        assert "matches: evin: 0, taiwan: 0" in out, out


async def test_a_page_that_never_answers_leaves_its_item_marked_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    async with FeedServer() as server:
        base = server.url("/a")
        news = "Relatives gathered outside Evin prison on Sunday evening asking for news."
        server.add("/a/one.html", page("Budget session", news), content_type="text/html")
        server.hang("/a/two.html")
        items = [("one", "Budget session"), ("two", "Evin prison visits halted")]
        server.add("/daily.xml", feed(now, base, items))
        settings = daily_settings(
            tmp_path, server, rules={"evin": '"evin prison"'}, http="timeout: 2s"
        )
        out = io.StringIO()
        async with Daemon(settings, stdout=out) as daemon:
            (outcome,) = await daemon.poll_once()
            await daemon.deliver()
            stored = {i.guid: i for i in await daemon.store.items_since(now.replace(year=2000))}
    # The hanging page cost its item the article text, within the request deadline; the
    # poll stored both items, and both alerted (one on its article, one on its title).
    assert (outcome.error, outcome.new_items, outcome.alerts) == (None, 2, 2)
    assert "Evin prison" in stored["one"].text and stored["one"].text_problem is None
    assert stored["two"].text == "" and "2s" in (stored["two"].text_problem or "")
    assert "Budget session" in out.getvalue() and "Evin prison visits halted" in out.getvalue()
