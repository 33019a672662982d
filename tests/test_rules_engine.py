"""Compiling rules and matching items, with the evidence an alert shows."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.model import Item, Match, Rule
from monitor.rules import RuleErrors, RuleSet, compile_rules, tokenize

ALIASES = {"IRAN": ["Iran", "Iranian", "Tehran", "Islamic Republic", "ایران"]}
TREATY = "@IRAN AND (Russia OR Moscow OR Kremlin) AND (treaty OR pact) AND ratif*"


def item(title: str = "", summary: str = "", **fields: Any) -> Item:
    return Item(
        feed=fields.pop("feed", "wire"),
        guid="g1",
        url=fields.pop("url", None),
        title=title,
        summary=summary,
        **fields,
    )


def rules(*queries: str, aliases: dict[str, list[str]] | None = None) -> RuleSet:
    return compile_rules(
        [Rule(name=f"r{i}", query=q) for i, q in enumerate(queries)],
        ALIASES if aliases is None else aliases,
    )


def matches(query: str, it: Item, **kw: list[str]) -> list[Match]:
    return rules(query).match(it, **kw)


def surfaces(m: Match) -> list[str]:
    return [m.snippet[s:e] for s, e in m.highlights]


@pytest.mark.parametrize(
    ("title", "hit"),
    [
        ("Iran's parliament ratifies strategic partnership treaty with Russia", True),
        ("Tehran and Moscow: Majlis ratified the pact on Tuesday", True),
        ("The Islamic Republic ratifies Kremlin treaty", True),
        ("Iran and Russia sign treaty", False),  # no ratif*
        ("Iraq's parliament ratifies treaty with Russia", False),
        ("Islamic parliament of the Republic ratifies Russia treaty", False),  # not a phrase
        ("ایران treaty with Russia ratified", True),
    ],
)
def test_design_example(title: str, hit: bool) -> None:
    assert bool(matches(TREATY, item(title))) is hit


def test_design_example_evidence() -> None:
    title = "Iran's parliament ratifies strategic partnership treaty with Russia"
    [m] = matches(TREATY, item(title, "Lawmakers in Tehran voted on Sunday."))
    assert m.rule == "r0"
    assert m.snippet == title  # the title is preferred for the passage
    assert surfaces(m) == ["Iran", "ratifies", "treaty", "Russia"]
    assert m.fields == ("title", "summary")


def test_persian_rule_matches_persian_title_with_variant_letters() -> None:
    # The rule is typed with Arabic yeh/kaf; the title with Persian ones, ZWNJ and tatweel.
    query = "@IRAN روسيه معاهده"
    title = "ایــران و روسیه معاهده همکاری را امضا می\u200cکنند"
    [m] = matches(query, item(title))
    assert surfaces(m) == ["ایــران", "روسیه", "معاهده"]
    assert not matches(query, item("ایران و چین معاهده"))


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("Activists held in Evin Prison, Tehran, were moved", True),
        ("held in EVIN\nprison", True),  # a line break is just a space
        ("held in Évin  prison", True),
        ("a prison in Evin", False),
        ("Evin's old prison", False),
        ("Эвин prison", False),  # Cyrillic is not Latin
    ],
)
def test_phrase(text: str, hit: bool) -> None:
    assert bool(matches('"evin prison"', item(summary=text))) is hit


def test_phrase_highlight_covers_the_original_words() -> None:
    [m] = matches('"evin prison"', item(summary="held in Evin\nPrison, Tehran"))
    assert m.snippet == "held in Evin Prison, Tehran"  # white space collapsed
    assert surfaces(m) == ["Evin Prison"]
    assert m.fields == ("summary",)


@pytest.mark.parametrize(
    ("query", "text", "hit"),
    [
        ("ratif*", "Ratification vote", True),
        ("ratif*", "rat if", False),
        ("melanie", "Mélanie Joly said", True),
        ("Mélanie", "MELANIE", True),
        ("iran", "Iran's envoy", True),
        ("iran", "Iranian envoy", False),
        ("evin NOT football", "Evin prison", True),
        ("evin NOT football", "Evin football club", False),
        ("evin NOT (football OR league)", "Evin league", False),
        ("evin OR tehran", "Tehran", True),
        ("a b", "b x a", True),
        ("and", "salt and pepper", True),  # lower-case and is a word
        ("treaty NEAR/2 ratif*", "treaty was ratified", True),
        ("treaty NEAR/2 ratif*", "treaty was finally ratified", False),
        ("treaty NEAR/2 ratif*", "ratified the treaty", True),
        ("treaty ONEAR/2 ratif*", "ratified the treaty", False),
        ("treaty NEAR ratif*", "treaty one two three four ratified", True),
        ("treaty NEAR ratif*", "treaty one two three four five ratified", False),
        ('"U.S." sanctions', "u s sanctions", True),
        ("/ratif(y|ies)/ treaty", "They RATIFY the treaty", True),
        ("/ratif(y|ies)/ treaty", "ratified treaty", False),
    ],
)
def test_default_scope_operators(query: str, text: str, hit: bool) -> None:
    assert bool(matches(query, item(text))) is hit


def test_near_does_not_cross_fields() -> None:
    assert not matches("treaty NEAR/3 ratif*", item("a treaty", "ratified"))


def test_phrase_does_not_cross_fields() -> None:
    assert not matches('"evin prison"', item("news from evin", "prison moves"))


def test_field_scopes() -> None:
    it = item(
        "Evin news",
        "prison report",
        url="https://example.org/iran/evin-prison",
        author="Mélanie Dupont",
        feed="aawsat-world",
    )
    assert matches("title:evin", it)
    assert not matches("title:prison", it)
    assert matches("summary:prison", it)
    assert matches("url:(iran evin)", it)
    assert not matches("url:news", it)
    assert matches("author:melanie", it)
    assert matches("source:aawsat-world evin", it)
    assert not matches("source:aawsat evin", it)  # a whole name, not a word of it
    assert matches("source:tag:middle-east evin", it, feed_tags=["middle-east"])
    assert not matches("source:tag:europe evin", it, feed_tags=["middle-east"])
    [m] = matches("source:aawsat-world evin", it)
    assert m.fields == ("title", "source")


def test_evidence_only_from_positive_hits() -> None:
    [m] = matches("evin NOT football AND (prison OR jail)", item("Evin prison, not jail"))
    assert surfaces(m) == ["Evin", "prison", "jail"]


def test_snippet_of_long_text_is_cut_at_words_around_the_first_hit() -> None:
    before = " ".join(f"word{i}" for i in range(100))
    after = " ".join(f"tail{i}" for i in range(100))
    text = f"{before} The Évin\nprison  was emptied. {after}"
    [m] = matches('"evin prison"', item("Unrelated title", text))
    assert m.snippet.startswith("…word") and m.snippet.endswith("…")
    assert 200 <= len(m.snippet) <= 245
    assert surfaces(m) == ["Évin prison"]
    body = m.snippet.strip("…")
    assert body in " ".join(text.split())  # a real passage, whole words, spaces collapsed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Evin", "évin", "prison", "x", "Iran's", "\n", " ", ", ", "ی"]),
        max_size=150,
    ).map(" ".join)
)
def test_highlights_always_land_on_matched_words(text: str) -> None:
    for m in matches("evin OR prison", item(summary=text)):
        assert m.highlights
        for s, e in m.highlights:
            assert [t.norm for t in tokenize(m.snippet[s:e])] in (["evin"], ["prison"])


def test_feeds_filter_by_name_and_tag() -> None:
    rs = compile_rules(
        [
            Rule("all", "evin"),
            Rule("by-name", "evin", feeds=("aawsat-world",)),
            Rule("by-tag", "evin", feeds=("tag:middle-east",)),
            Rule("other", "evin", feeds=("bbc", "tag:europe")),
        ],
        {},
    )
    got = rs.match(item("Evin", feed="aawsat-world"), feed_tags=["middle-east"])
    assert [m.rule for m in got] == ["all", "by-name", "by-tag"]
    got = rs.match(item("Evin", feed="iranwire"), feed_tags=["persian"])
    assert [m.rule for m in got] == ["all"]


def test_disabled_rules_never_match_but_are_checked() -> None:
    rs = compile_rules([Rule("off", "evin", enabled=False), Rule("on", "evin")], {})
    assert [m.rule for m in rs.match(item("Evin"))] == ["on"]
    with pytest.raises(RuleErrors):
        compile_rules([Rule("off", "evin AND", enabled=False)], {})


def test_every_broken_rule_is_reported_with_its_position() -> None:
    with pytest.raises(RuleErrors) as info:
        compile_rules(
            [
                Rule("ok", "evin"),
                Rule("dangling", "evin AND"),
                Rule("alias", "treaty AND\n  @NOPE"),
                Rule("regex", "x /a(/"),
                Rule("ok", "dup"),
            ],
            ALIASES,
        )
    errors = info.value.errors
    got = [(e.rule, e.line, e.column) for e in errors]
    assert got == [("dangling", 1, 6), ("alias", 2, 3), ("regex", 1, 3), ("ok", 1, 1)]
    assert "unknown alias @NOPE" in errors[1].message
    assert errors[1].hint is not None and "IRAN" in errors[1].hint
    assert "bad regular expression" in errors[2].message


def test_aliases_are_case_insensitive_and_may_hold_phrases_and_prefixes() -> None:
    rs = rules("@iran AND @gov", aliases={"IRAN": ["Islamic Republic"], "Gov": ["minist*"]})
    assert rs.match(item("Islamic Republic ministers meet"))
    assert not rs.match(item("Islamic ministers of the Republic meet"))
    assert [r.name for r in rs.rules] == ["r0"]


def test_many_rules_over_a_long_article() -> None:
    # Every rule reads the shared token index of one match() call; each must still get its hit.
    queries = [f"w{i} OR evin" for i in range(200)]
    rs = rules(*queries)
    long_text = " ".join(f"w{i}" for i in range(5000)) + " evin"
    got = rs.match(item("title", long_text))
    assert len(got) == 200


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6),
    st.data(),
)
def test_any_word_of_an_item_finds_it(parts: list[str], data: st.DataObject) -> None:
    text = " ".join(parts)
    toks = tokenize(text)
    # A character that folds to several words ("¼" -> "1⁄4") shares its span between tokens;
    # its surface is then not one word. Such text is outside this property.
    assume(toks and all(a.end <= b.start for a, b in itertools.pairwise(toks)))
    tok = data.draw(st.sampled_from(toks))
    surface = text[tok.start : tok.end]
    if '"' in surface:
        return
    # The original spelling, quoted, is a rule that finds the item, highlighting that word.
    [m] = matches(f'"{surface}"', item(summary=text))
    assert any(tokenize(m.snippet[s:e])[0].norm == tok.norm for s, e in m.highlights)


def test_a_match_carries_every_passage_that_satisfied_it_field_by_field() -> None:
    it = item(
        "Iran news today",
        "The Majlis ratified the TREATY.\nOn Sunday the treaty passed.",
        text="Deputies ratified it after the treaty debate, ایران said.",
    )
    (m,) = matches('title:iran AND summary:treaty AND ratif* AND text:"treaty debate"', it)
    assert m.fields == ("title", "summary", "text")
    found = [(f, getattr(it, f)[s:e]) for f, s, e in m.spans]
    assert found == [
        ("title", "Iran"),
        ("summary", "ratified"),
        ("summary", "TREATY"),
        ("summary", "treaty"),
        ("text", "ratified"),
        ("text", "treaty debate"),
    ]
    # The snippet still shows the first field with evidence, its hits marked.
    assert surfaces(m) == ["Iran"]
