"""The shared prefilter: it only saves work, never changes a result; and regexes stay linear."""

from __future__ import annotations

import random
import time

from monitor.model import Item, Rule
from monitor.rules import compile_rules
from monitor.rules.compiled import CNode, Compiler
from monitor.rules.prefilter import Prefilter, requirements
from monitor.rules.syntax import parse_query

ALIASES = {"IRAN": ["Iran", "Iranian", "Tehran", "Islamic Republic", "ایران"], "RU": ["Russia*"]}
VOCAB = (
    "iran tehran russia moscow kremlin treaty pact ratified ratification parliament evin prison "
    "sanctions oil nuclear islamic republic ایران روسیه زندان اوین москва договор санкции "
    "the a of and news"
).split()


def tree(query: str) -> CNode:
    rule = Rule("r", query)
    return Compiler(rule, {k.casefold(): v for k, v in ALIASES.items()}, "").node(
        parse_query(query), "text"
    )


def test_requirements_are_conjunctive_groups_of_literals() -> None:
    groups = requirements(tree("@IRAN AND (treaty OR pact) AND ratif* NOT football"))
    assert groups == [
        frozenset({("iran", False), ("iranian", False), ("tehran", False), ("republic", False),
                   ("ایران", False)}),
        frozenset({("treaty", False), ("pact", False)}),
        frozenset({("ratif", True)}),
    ]  # fmt: skip
    # A phrase needs each of its words; a NOT and a regex need nothing.
    assert requirements(tree('"evin prison" /x+/')) == [
        frozenset({("evin", False)}),
        frozenset({("prison", False)}),
    ]
    assert requirements(tree("/ratif(y|ies)/")) == []
    assert requirements(tree("/ratif/ OR treaty")) == []  # one side needs nothing


def test_candidates_depend_on_the_item_words_not_the_rule_count() -> None:
    trees = [tree(f"w{i} AND (x OR y*)") for i in range(1000)] + [tree("/z+/")]
    index = Prefilter([*trees, None])
    assert index.always == (1000,)
    assert index.candidates({"w5", "yes"}) == [5, 1000]
    assert index.candidates({"w5", "w7", "x"}) == [5, 7, 1000]
    assert index.candidates({"w5"}) == [1000]  # x OR y* missing
    assert index.candidates(set()) == [1000]


def random_query(rng: random.Random) -> str:
    def leaf() -> str:
        kind = rng.random()
        if kind < 0.5:
            return rng.choice(VOCAB)
        if kind < 0.65:
            return rng.choice(VOCAB)[:3] + "*"
        if kind < 0.8:
            return '"' + " ".join(rng.choices(VOCAB, k=2)) + '"'
        if kind < 0.92:
            return rng.choice(["@IRAN", "@RU"])
        return rng.choice(["/ev.n/", "/санкц/", "/\\d{4}/"])

    def positional(depth: int) -> str:
        if depth <= 0 or rng.random() < 0.6:
            return leaf()
        op = rng.choice(["OR", "NEAR/2", "NEAR", "ONEAR/4"])
        return f"({positional(depth - 1)} {op} {positional(depth - 1)})"

    def boolean(depth: int) -> str:
        r = rng.random()
        if depth <= 0 or r < 0.35:
            return positional(2)
        if r < 0.6:
            return f"({boolean(depth - 1)} AND {boolean(depth - 1)})"
        if r < 0.75:
            return f"({boolean(depth - 1)} OR {boolean(depth - 1)})"
        if r < 0.9:
            return f"({boolean(depth - 1)} NOT {positional(1)})"
        field = rng.choice(["title", "summary", "url"])
        return f"({boolean(depth - 1)} {field}:{positional(1)})"

    return boolean(3)


def random_item(rng: random.Random, n: int) -> Item:
    def text(k: int) -> str:
        return " ".join(
            rng.choice(VOCAB).capitalize() + rng.choice(["", ",", ".", "'s"]) for _ in range(k)
        )

    return Item(
        feed=rng.choice(["wire", "bbc"]),
        guid=f"g{n}",
        url=f"https://example.org/{rng.choice(VOCAB)}-{rng.choice(VOCAB)}",
        title=text(rng.randint(0, 10)),
        summary=text(rng.randint(0, 40)),
        content=text(rng.randint(0, 120)),
        author=rng.choice(["", "Mélanie Evin"]),
    )


def test_300_random_rules_over_300_random_items_give_the_same_matches() -> None:
    rng = random.Random(20240603)
    rules = [
        Rule(
            f"r{i}",
            random_query(rng),
            feeds=rng.choice([(), (), ("wire",), ("tag:mideast",)]),
            enabled=rng.random() > 0.05,
        )
        for i in range(300)
    ]
    items = [random_item(rng, n) for n in range(300)]
    indexed = compile_rules(rules, ALIASES)
    plain = compile_rules(rules, ALIASES, prefilter=False)
    total = 0
    for n, it in enumerate(items):
        tags = ["mideast"] if n % 2 else []
        got = indexed.match(it, feed_tags=tags)
        assert got == plain.match(it, feed_tags=tags)
        total += len(got)
    assert total > 300  # the rules do match: the comparison is not of empty lists


def test_a_regex_that_backtracks_exponentially_in_re_finishes_at_once() -> None:
    rs = compile_rules([Rule("evil", "/(a+)+$/"), Rule("nested", "/(x+x+)+y/ AND b")], {})
    it = Item(feed="f", guid="g", url=None, title="a" * 50 + "b", summary="x" * 5000 + " b")
    start = time.perf_counter()
    assert [m.rule for m in rs.match(it)] == []
    assert time.perf_counter() - start < 0.5
