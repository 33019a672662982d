"""Fuzzing with Hypothesis: the rule compiler and matcher, and the feed parse path.

Bounded in `make test` (the whole file in a few seconds); `HYPOTHESIS_PROFILE=fuzz` runs each
property far longer (`make fuzz`). The profiles apply to this file only, so other Hypothesis
tests keep their own settings.

Properties:
- any query either compiles or is refused with RuleErrors (file:line:column), never another
  exception; a compiled rule set matches any item without raising, in bounded time;
- parse_feed never raises on any bytes, on mutations of real feeds, or on generated RSS, Atom
  and JSON Feed documents with hostile text; what it returns keeps its promises (plain one-line
  titles without control characters, http(s) links, UTC dates, unique guids, max_items).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.model import Item, Rule
from monitor.parse import ParsedFeed, parse_feed
from monitor.rules import RuleErrors, compile_rules

settings.register_profile(
    "newsmon-bounded", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "newsmon-fuzz",
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
PROFILE = settings.get_profile("newsmon-fuzz" if FUZZ else "newsmon-bounded")

REAL_FEEDS = (
    Path(os.environ.get("NEWSMON_CORPORA", Path(__file__).resolve().parents[2] / "shared/corpora"))
    / "real-feeds"
)
SEEDS = sorted(p for p in REAL_FEEDS.rglob("*") if p.is_file() and p.suffix in (".xml", ".rss"))[
    :12
]

# Text that has broken feed readers: markup, entities, control characters, bidi overrides,
# format strings, terminal escapes, line breaks that forge log lines, huge words.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            "&lt;b&gt;bold&lt;/b&gt;",
            "&amp;amp;",
            "%s%n%x",
            "{0}{__class__}",
            "\x1b[2J\x1b]0;title\x07",
            "\r\nFAKE LOG LINE",
            "\u202eevil\u202c",
            "\x00\x01\x7f\x85\x9b",
            "<![CDATA[x]]>",
            "]]>",
            "A" * 5000,
            "ایران\u200cی",
        ]
    ),
)
WORDS = st.sampled_from(["iran", "Evin", "prison", "ratif*", "ایران", "a", "é", "x1"])
REGEXES = st.sampled_from(
    ["(a+)+$", "(a|aa)+b", "(?i)tehran", "\\bevin\\b", "(a)\\1", "(?<=x)y", "[", "a{1000}{1000}"]
)


def query_strategy() -> st.SearchStrategy[str]:
    atom = st.one_of(
        WORDS,
        WORDS.map(lambda w: f'"{w} prison"'),
        REGEXES.map(lambda r: "/" + r.replace("/", "\\/") + "/"),
        st.just("@IRAN"),
        st.text(max_size=12),
    )
    ops = st.sampled_from([" ", " AND ", " OR ", " NOT ", " NEAR/3 ", " ONEAR/2 ", " title:"])
    return st.lists(st.tuples(atom, ops), min_size=1, max_size=6).map(
        lambda parts: "".join(a + o for a, o in parts).strip()
    )


@settings(PROFILE)
@given(query_strategy(), HOSTILE_TEXT, HOSTILE_TEXT)
def test_rules_compile_or_are_refused_and_never_crash_the_matcher(
    query: str, title: str, summary: str
) -> None:
    try:
        rules = compile_rules([Rule("r", query)], {"IRAN": ["Iran", "ایران"]})
    except RuleErrors as errors:
        assert str(errors)
        return
    item = Item(feed="f", guid="g", url=None, title=title * 20, summary=summary * 20)
    started = time.perf_counter()
    rules.match(item)
    assert time.perf_counter() - started < 2.0  # RE2 and the NEAR join are linear


# --- the feed parse path --------------------------------------------------------------------


def check_promises(parsed: ParsedFeed, max_items: int) -> None:
    assert len(parsed.items) <= max_items
    guids = [i.guid for i in parsed.items]
    assert len(guids) == len(set(guids))
    for one in parsed.items:
        assert "\n" not in one.title and "\r" not in one.title
        for text in (one.title, one.summary, one.content, one.author):
            assert not any(ord(c) < 32 and c != "\n" for c in text), repr(text)
            assert "\x1b" not in text and "\x7f" not in text
        if one.url is not None:
            assert one.url.startswith(("http://", "https://"))
            assert not any(ord(c) <= 32 or 0x7F <= ord(c) <= 0x9F for c in one.url), one.url
        for when in (one.published, one.updated):
            assert when is None or when.tzinfo == UTC
    if parsed.problem is not None:
        assert "\n" not in parsed.problem and "\x1b" not in parsed.problem


@settings(PROFILE)
@given(st.binary(max_size=4096))
def test_any_bytes_parse_without_raising(body: bytes) -> None:
    check_promises(parse_feed(body, feed="f", url="https://f.example/feed"), 1000)


@settings(PROFILE)
@given(
    st.sampled_from(SEEDS or [Path(__file__)]),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 64), st.binary(max_size=32)),
        min_size=1,
        max_size=8,
    ),
)
def test_mutated_real_feeds_parse_without_raising(
    seed: Path, edits: list[tuple[int, int, bytes]]
) -> None:
    body = bytearray(seed.read_bytes())
    for at, cut, insert in edits:
        at %= max(1, len(body))
        body[at : at + cut] = insert
    check_promises(parse_feed(bytes(body), feed="f", url="https://f.example/feed"), 1000)


ENTRY = st.fixed_dictionaries(
    {
        "id": st.one_of(st.none(), HOSTILE_TEXT),
        "title": HOSTILE_TEXT,
        "link": st.one_of(
            st.none(),
            HOSTILE_TEXT,
            st.sampled_from(
                [
                    "javascript:alert(1)",
                    "/relative/path",
                    "https://e.example/a b\x1b[2J",
                    "http://[::1",
                    "data:text/html,x",
                ]
            ),
        ),
        "date": st.one_of(
            st.none(),
            HOSTILE_TEXT,
            st.sampled_from(
                [
                    "Fri, 01 Jan 2099 00:00:00 GMT",
                    "0001-01-01T00:00:00+14:00",
                    "9999-12-31T23:59:59-12:00",
                    "2024-02-30T10:00:00Z",
                    "Mon, 99 Foo 2024 99:99:99 XYZ",
                ]
            ),
        ),
    }
)


def as_rss(entries: list[dict[str, str | None]]) -> bytes:
    def tag(name: str, value: str | None) -> str:
        return "" if value is None else f"<{name}>{escape(value)}</{name}>"

    items = "".join(
        "<item>"
        + tag("guid", e["id"])
        + tag("title", e["title"])
        + tag("link", e["link"])
        + tag("pubDate", e["date"])
        + "</item>"
        for e in entries
    )
    doc = (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{items}</channel></rss>'
    )
    return doc.encode("utf-8", "surrogatepass")


def as_atom(entries: list[dict[str, str | None]]) -> bytes:
    items = "".join(
        "<entry>"
        + (f"<id>{escape(e['id'])}</id>" if e["id"] is not None else "")
        + f'<title type="html">{escape(e["title"] or "")}</title>'
        + (f"<link href={quoteattr(e['link'])}/>" if e["link"] is not None else "")
        + (f"<updated>{escape(e['date'])}</updated>" if e["date"] is not None else "")
        + "</entry>"
        for e in entries
    )
    doc = f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">{items}</feed>'
    return doc.encode("utf-8", "surrogatepass")


def as_json(entries: list[dict[str, str | None]]) -> bytes:
    items = [
        {"id": e["id"], "title": e["title"], "url": e["link"], "date_published": e["date"]}
        for e in entries
    ]
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": items}
    return json.dumps(doc).encode()


@settings(PROFILE)
@given(
    st.sampled_from([as_rss, as_atom, as_json]),
    st.lists(ENTRY, max_size=12),
    st.integers(min_value=1, max_value=5),
)
def test_generated_feeds_keep_the_parse_promises(
    render: object, entries: list[dict[str, str | None]], max_items: int
) -> None:
    assert callable(render)
    body = render(entries)
    parsed = parse_feed(body, feed="f", url="https://f.example/feed", max_items=max_items)
    check_promises(parsed, max_items)
