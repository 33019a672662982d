"""explain(): every clause of a rule, satisfied or not, with the evidence a CLI prints."""

from __future__ import annotations

import pytest

from monitor.model import Item, Rule
from monitor.rules import compile_rules, format_explanation
from monitor.rules.explain import Evidence

ALIASES = {"IRAN": ["Iran", "Tehran", "Islamic Republic"]}
TREATY = "@IRAN AND (Russia OR Moscow) AND ratif* NOT title:football"


def item(title: str, summary: str = "", feed: str = "wire") -> Item:
    return Item(feed=feed, guid="g", url=None, title=title, summary=summary)


def test_a_matching_item_shows_the_evidence_of_each_clause() -> None:
    rs = compile_rules([Rule("treaty", TREATY)], ALIASES)
    it = item("Iran's parliament ratifies the Russia treaty", "Tehran and Moscow agree")
    expl = rs.explain(it, "treaty")
    assert expl.matched and expl.enabled and expl.admitted
    iran = expl.tree.children[0]
    assert iran.label == "@IRAN" and iran.satisfied
    assert iran.evidence == (
        Evidence("title", ((0, 4),), ("Iran",)),
        Evidence("summary", ((0, 6),), ("Tehran",)),
    )
    assert format_explanation(expl) == "\n".join(
        [
            "rule treaty: matches",
            "✓ AND",
            '  ✓ @IRAN  (title: "Iran"; summary: "Tehran")',
            "  ✓ OR",
            '    ✓ Russia  (title: "Russia")',
            '    ✓ Moscow  (summary: "Moscow")',
            '  ✓ ratif*  (title: "ratifies")',
            "  ✓ NOT",
            "    ✗ title:",
            '      ✗ football  (no word "football" in title)',
        ]
    )


def test_a_non_matching_item_says_what_is_missing() -> None:
    rs = compile_rules(
        [Rule("treaty", TREATY), Rule("near", '"evin prison" NEAR/2 moved')], ALIASES
    )
    expl = rs.explain(item("Iran and Russia sign a treaty"), "treaty")
    assert not expl.matched
    text = format_explanation(expl)
    assert text.splitlines()[0] == "rule treaty: no match"
    assert '  ✗ ratif*  (no word starting with "ratif")' in text.splitlines()
    assert '    ✗ Moscow  (no word "moscow")' in text.splitlines()

    excluded = rs.explain(item("Iran football: Russia ratified"), "treaty")
    assert not excluded.matched
    assert format_explanation(excluded).splitlines()[-3:] == [
        "  ✗ NOT  (found: the item is excluded)",
        "    ✓ title:",
        '      ✓ football  (title: "football")',
    ]

    near = rs.explain(item("Evin prison: inmates were later moved"), "near")
    assert format_explanation(near).splitlines() == [
        "rule near: no match",
        "✗ NEAR/2  (both found, never within 2 words)",
        '  ✓ "evin prison"  (title: "Evin prison")',
        '  ✓ moved  (title: "moved")',
    ]


def test_feeds_filter_and_disabled_rule_are_reported() -> None:
    rs = compile_rules(
        [
            Rule("by-tag", "evin", feeds=("tag:middle-east", "bbc")),
            Rule("off", "evin", enabled=False),
        ],
        {},
    )
    it = item("Evin prison", feed="wire")
    expl = rs.explain(it, "by-tag", feed_tags=["europe"])
    assert not expl.admitted and not expl.matched and expl.tree.satisfied
    assert format_explanation(expl).splitlines()[0] == (
        'rule by-tag: no match: its feeds filter (tag:middle-east, bbc) excludes feed "wire" '
        "(its query matches)"
    )
    assert rs.explain(it, "by-tag", feed_tags=["middle-east"]).matched

    off = rs.explain(it, "off")
    assert not off.enabled and not off.matched and off.tree.satisfied
    assert format_explanation(off).splitlines()[0] == (
        "rule off: no match: the rule is disabled (its query matches)"
    )
    assert rs.match(it) == []


def test_source_regex_and_unknown_rule() -> None:
    rs = compile_rules([Rule("s", "source:tag:mideast /ratif(y|ies)/")], {})
    expl = rs.explain(item("They RATIFY it"), "s", feed_tags=["mideast"])
    assert expl.matched
    assert format_explanation(expl).splitlines()[1:] == [
        "✓ AND",
        "  ✓ source:",
        '    ✓ tag:mideast  (source: "tag:mideast")',
        '  ✓ /ratif(y|ies)/  (title: "RATIFY")',
    ]
    with pytest.raises(KeyError):
        rs.explain(item("x"), "nope")
