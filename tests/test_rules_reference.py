"""The engine against a naive matcher written here, on generated queries and items.

The reference walks the parsed query recursively over ``tokenize()`` output: no index, no
prefilter, no caches. Vocabularies are small so that generated rules match often.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from monitor.model import Item, Rule
from monitor.rules import RuleErrors, compile_rules, parse_query, tokenize
from monitor.rules import syntax as s

ALIASES = {"IRAN": ["Iran", "Tehran", "islamic rep*"], "JAIL": ["prison", "zendan"]}
DEFAULT = ("title", "summary", "content", "text")
SCOPES = {
    "text": DEFAULT,
    "title": ("title",),
    "summary": ("summary",),
    "url": ("url",),
    "author": ("author",),
    "source": ("source",),
}

# --- the reference ------------------------------------------------------------------------

Pattern = list[tuple[str, bool]]  # folded words, each maybe a prefix


def pattern(raw_words: list[str]) -> Pattern:
    out: Pattern = []
    for raw in raw_words:
        star = raw.endswith("*")
        folded = [t.norm for t in tokenize(raw.rstrip("*"))]
        out += [(w, False) for w in folded[:-1]] + [(folded[-1], star)]
    return out


def word_fits(token: str, word: str, prefix: bool) -> bool:
    return token.startswith(word) if prefix else token == word


def patterns(node: s.Node) -> list[Pattern]:
    if isinstance(node, s.Term):
        return [pattern([node.word + ("*" if node.prefix else "")])]
    if isinstance(node, s.Phrase):
        return [pattern(list(node.words))]
    assert isinstance(node, s.Alias)
    return [pattern(term.split()) for term in ALIASES[node.name.upper()]]


@dataclass
class Fields:
    texts: dict[str, str]
    sources: list[list[str]]


def occurrences(node: s.Node, field: str, doc: Fields) -> list[tuple[int, int]]:
    """[first, last) word ranges where a positional node holds in one field."""
    text = doc.texts[field]
    toks = tokenize(text)
    norms = [t.norm for t in toks]
    if isinstance(node, s.Term | s.Phrase | s.Alias):
        found = []
        for pat in patterns(node):
            for i in range(len(norms) - len(pat) + 1):
                if all(word_fits(norms[i + k], *pat[k]) for k in range(len(pat))):
                    found.append((i, i + len(pat)))
        return found
    if isinstance(node, s.Regex):
        found = []
        for m in re.finditer(node.pattern, text, re.IGNORECASE):
            covered = [i for i, t in enumerate(toks) if t.start < m.end() and t.end > m.start()]
            if covered:
                found.append((covered[0], covered[-1] + 1))
        return found
    if isinstance(node, s.Or):
        return [o for item in node.items for o in occurrences(item, field, doc)]
    assert isinstance(node, s.Near)
    found = []
    for a in occurrences(node.left, field, doc):
        for b in occurrences(node.right, field, doc):
            # "Within n words": the last word of the first side and the first word of the second
            # are at most n positions apart.
            if b[0] >= a[1] and b[0] - (a[1] - 1) <= node.distance:
                found.append((a[0], b[1]))
            elif not node.ordered and a[0] >= b[1] and a[0] - (b[1] - 1) <= node.distance:
                found.append((b[0], a[1]))
    return found


def holds(node: s.Node, fields: tuple[str, ...], doc: Fields) -> bool:
    if isinstance(node, s.And):
        return all(holds(i, fields, doc) for i in node.items)
    if isinstance(node, s.Or):
        return any(holds(i, fields, doc) for i in node.items)
    if isinstance(node, s.Not):
        return not holds(node.item, fields, doc)
    if isinstance(node, s.Field):
        return holds(node.item, SCOPES[node.name], doc)
    if fields == ("source",):
        assert isinstance(node, s.Term | s.Phrase | s.Alias)
        return any(
            len(value) == len(pat)
            and all(word_fits(v, *p) for v, p in zip(value, pat, strict=True))
            for pat in patterns(node)
            for value in doc.sources
        )
    return any(occurrences(node, f, doc) for f in fields)


def reference(query: str, item: Item, tags: list[str]) -> bool:
    doc = Fields(
        {
            "title": item.title,
            "summary": item.summary,
            "content": item.content,
            "text": item.text,
            "author": item.author,
            "url": item.url or "",
        },
        [[t.norm for t in tokenize(item.feed)]]
        + [["tag", *(t.norm for t in tokenize(tag))] for tag in tags],
    )
    return holds(parse_query(query), DEFAULT, doc)


# --- generated queries and items ----------------------------------------------------------

WORDS = ["evin", "Évin", "prison", "iran", "ایران", "москва", "pact", "rep", "a"]
LEAVES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(["ev*", "pri*", "ира*", "москв*", "rep*", "ای*"]),
    st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(lambda w: '"' + " ".join(w) + '"'),
    st.sampled_from(["@IRAN", "@jail", '"U.S."', "Iran's"]),
    st.sampled_from(["/ev.n/", "/pris/", "/a p/"]),
)


def _near(t: tuple[str, str, str]) -> str:
    return f"({t[0]} {t[1]} {t[2]})"


POSITIONAL = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"({t[0]} OR {t[1]})"),
        st.tuples(
            inner, st.sampled_from(["NEAR/1", "NEAR/2", "NEAR", "ONEAR/1", "ONEAR/3"]), inner
        ).map(_near),
    ),
    max_leaves=4,
)
BOOLEAN = st.recursive(
    st.one_of(POSITIONAL, st.sampled_from(["source:wire", "source:tag:mideast", "source:bbc"])),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " AND ".join(xs) + ")"),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " OR ".join(xs) + ")"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} NOT {t[1]})"),
    ),
    max_leaves=6,
)
QUERIES = st.one_of(
    BOOLEAN,
    st.tuples(st.sampled_from(["title", "summary", "url", "author"]), BOOLEAN).map(
        lambda t: f"{t[0]}:({t[1]})"
    ),
    st.tuples(BOOLEAN, st.sampled_from(["title", "summary"]), POSITIONAL).map(
        lambda t: f"{t[0]} AND {t[1]}:({t[2]})"
    ),
)

TEXT_WORDS = [*WORDS, "EVIN", "ایــران", "Iran's", "U.S.", "republic", "islamic", "Tehran"]
TEXTS = st.lists(
    st.tuples(st.sampled_from(TEXT_WORDS), st.sampled_from([" ", " ", ", ", "\n", "-"])),
    max_size=14,
).map(lambda parts: "".join(w + sep for w, sep in parts))
ITEMS = st.builds(
    lambda feed, title, summary, content, url, author: Item(
        feed=feed,
        guid="g",
        url=url,
        title=title,
        summary=summary,
        content=content,
        author=author,
    ),
    st.sampled_from(["wire", "bbc"]),
    TEXTS,
    TEXTS,
    TEXTS,
    st.sampled_from([None, "https://x.org/iran/evin-prison", "https://x.org/a"]),
    st.sampled_from(["", "Évin Pact", "a"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES, st.lists(ITEMS, min_size=1, max_size=4), st.sampled_from([[], ["mideast"]]))
def test_engine_agrees_with_the_naive_reference(
    query: str, items: list[Item], tags: list[str]
) -> None:
    try:
        with_index = compile_rules([Rule("r", query)], ALIASES)
    except RuleErrors:
        assume(False)
        return
    without = compile_rules([Rule("r", query)], ALIASES, prefilter=False)
    for item in items:
        expected = reference(query, item, tags)
        event(f"matches: {expected}")
        got = with_index.match(item, feed_tags=tags)
        assert bool(got) is expected, (query, item)
        assert without.match(item, feed_tags=tags) == got
        assert with_index.explain(item, "r", feed_tags=tags).matched is expected
