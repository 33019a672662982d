"""The rule parser: what queries mean, where errors point, and that printing round-trips."""

from __future__ import annotations

import inspect
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import Item, Rule
from monitor.rules import compile_rules, format_explanation
from monitor.rules.syntax import (
    MAX_DEPTH,
    And,
    Near,
    Not,
    Or,
    Phrase,
    RuleSyntaxError,
    Term,
    dump,
    parse_query,
    to_query,
)

PARSES = [
    ("iran", "iran"),
    ("ratif*", "ratif*"),
    ('"Evin Prison"', '"Evin Prison"'),
    ("a b", "(AND a b)"),
    ("a AND b", "(AND a b)"),
    ("a OR b OR c", "(OR a b c)"),
    ("a OR b c", "(OR a (AND b c))"),  # AND binds tighter than OR
    ("a b OR c", "(OR (AND a b) c)"),
    ("(a OR b) c", "(AND (OR a b) c)"),
    ("NOT a b", "(AND (NOT a) b)"),  # NOT binds tightest
    ("b NOT a", "(AND b (NOT a))"),
    ("a NOT (b OR c)", "(AND a (NOT (OR b c)))"),
    ("a AND (b AND c)", "(AND a (AND b c))"),  # parentheses are kept
    ("and or not", "(AND and or not)"),  # lower-case keywords are words
    ("ANDROID ORACLE NOTABLE", "(AND ANDROID ORACLE NOTABLE)"),
    ('"AND" x', '(AND "AND" x)'),
    ("a AND(b OR c)", "(AND a (OR b c))"),
    ("@IRAN treaty", "(AND @IRAN treaty)"),
    (
        "@IRAN AND (Russia OR Moscow OR Kremlin) AND (treaty OR pact) AND ratif*",
        "(AND @IRAN (OR Russia Moscow Kremlin) (OR treaty pact) ratif*)",
    ),
    ("U.S. Iran's", "(AND U.S. Iran's)"),
    ('"islamic rep*"', '"islamic rep*"'),
    ('"evin\n   prison"', '"evin prison"'),
    ("a NEAR b", "(NEAR/5 a b)"),
    ("a NEAR/3 b", "(NEAR/3 a b)"),
    ("a ONEAR/2 b", "(ONEAR/2 a b)"),
    ("a NEAR b c", "(AND (NEAR/5 a b) c)"),  # NEAR binds tighter than AND
    ("a NEAR b NEAR c", "(NEAR/5 (NEAR/5 a b) c)"),
    ("(a OR b) NEAR c", "(NEAR/5 (OR a b) c)"),
    ("title:iran x", "(AND (title: iran) x)"),
    ("title:(a OR b)", "(title: (OR a b))"),
    ("source:tag:middle-east iran", "(AND (source: tag:middle-east) iran)"),
    ("/ratif(y|ies)/ iran", "(AND /ratif(y|ies)/ iran)"),
    ("/a\\/b/ x", "(AND /a/b/ x)"),
    ("ایران روسیه", "(AND ایران روسیه)"),
]


@pytest.mark.parametrize(("query", "expected"), PARSES)
def test_parses(query: str, expected: str) -> None:
    assert dump(parse_query(query)) == expected


def test_nodes_are_plain_values() -> None:
    node = parse_query('x NOT "evin prison" OR y*')
    assert node == Or(
        (And((Term("x"), Not(Phrase(("evin", "prison"))))), Term("y", prefix=True)),
    )


def test_positions_are_recorded() -> None:
    node = parse_query("a\n  NEAR/2 bb")
    assert isinstance(node, Near)
    assert node.right.pos == (2, 10)


def nested(levels: int) -> str:
    """``w0 AND (x0 OR (w1 AND (x1 OR (… z …))))``: `levels` parentheses deep."""
    return "".join(f"w{i} AND (x{i} OR (" for i in range(levels // 2)) + "z" + "))" * (levels // 2)


def column_of(query: str, needle: str, nth: int) -> int:
    """The 1-based column of the `nth` (1-based) `needle` in one-line `query`."""
    at = -1
    for _ in range(nth):
        at = query.index(needle, at + 1)
    return at + 1


DEEP_PARENS = nested(300)
DEEP_NOTS = "a " + "NOT " * 500 + "b"
DEEP_NEARS = " NEAR ".join(["w"] * 200)

ERRORS = [
    ("a AND", "AND without a term after it", 1, 3, "AND needs a term on both sides"),
    ("OR b", "OR without a term before it", 1, 1, "OR needs a term on both sides"),
    ("a OR OR b", "OR without a term before it", 1, 6, "both sides"),
    ("(a OR b", "unclosed parenthesis", 1, 1, "opened at column 1"),
    ("x AND (a OR\n b", "unclosed parenthesis", 1, 7, "opened at line 1, column 7"),
    ('"unterminated', "unterminated phrase", 1, 1, '"'),
    ('a "b" "c', "unterminated phrase", 1, 7, '"'),
    ("NOT a", "nothing positive", 1, 1, "match almost every item"),
    ("NOT a NOT b", "nothing positive", 1, 1, "NOT"),
    ("x OR NOT a", "nothing positive", 1, 6, "NOT"),
    ("a ) b", "unmatched ')'", 1, 3, "no parenthesis is open"),
    ("@", "@ without an alias name", 1, 1, "@IRAN"),
    ("a @ b", "@ without an alias name", 1, 3, "@IRAN"),
    ("", "empty query", 1, 1, None),
    ("  \n ", "empty query", 1, 1, None),
    ("()", "empty parentheses", 1, 1, None),
    ("a (b OR)", "OR without a term after it", 1, 6, "both sides"),
    ("a NOT", "NOT without a term after it", 1, 3, "NOT needs a term after it"),
    ("title:", "title: without a term after it", 1, 1, None),
    ("iran AND\n  (russia OR\n   OR moscow)", "OR without a term before it", 3, 4, None),
    ("iran\nAND", "AND without a term after it", 2, 1, None),
    ("a\n  b )", "unmatched ')'", 2, 5, None),
    ("a NEAR/x b", "bad distance", 1, 3, "NEAR/5"),
    ("a NEAR/0 b", "bad distance", 1, 3, None),
    ("(a b) NEAR c", "cannot join", 1, 2, "NEAR joins"),
    ("a NEAR NOT b", "cannot join", 1, 8, None),
    ("titel:x", "unknown field 'titel'", 1, 1, "title:"),
    ("title:(url:x)", "cannot be nested", 1, 1, None),
    ("tag:x iran", "outside source:", 1, 1, "source:tag:"),
    ("-football evin", "starts with '-'", 1, 1, "NOT football"),
    ("a*b", "'*' inside", 1, 1, "end of a word"),
    ("evin !!", "no letters or digits", 1, 6, None),
    ('""', "empty phrase", 1, 1, None),
    ("/abc", "unterminated regular expression", 1, 1, None),
    # Too deep: the error points at the parenthesis, NOT or NEAR one level past the limit.
    (DEEP_PARENS, "nests more than 64 levels", 1, column_of(DEEP_PARENS, "(", 65), "a OR b"),
    (DEEP_NOTS, "nests more than 64 levels", 1, column_of(DEEP_NOTS, "NOT", 65), "NOT"),
    (DEEP_NEARS, "nests more than 64 levels", 1, column_of(DEEP_NEARS, "NEAR", 65), "NEAR"),
    ("(" * 100 + "a" + ")" * 100, "nests more than 64 levels", 1, 65, None),
    ("x AND\n" + nested(70), "nests more than 64 levels", 2, column_of(nested(70), "(", 65), None),
]


@pytest.mark.parametrize(("query", "fragment", "line", "column", "hint"), ERRORS)
def test_errors_point_at_the_culprit(
    query: str, fragment: str, line: int, column: int, hint: str | None
) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_query(query)
    err = info.value
    assert fragment in err.message
    assert (err.line, err.column) == (line, column)
    if hint is not None:
        assert err.hint is not None and hint in err.hint
    assert isinstance(err, ValueError)


def _near_nested(levels: int) -> str:
    return "".join(f"x{i} OR y{i} NEAR (" for i in range(levels // 2)) + "z" + ")" * (levels // 2)


def _scoped_nots(levels: int) -> str:
    pairs = (levels - 2) // 2
    return "a title:(" + "NOT (" * pairs + "b" + ")" * pairs + ")"


# Shapes at the limit: each takes the parser's, compiler's, matcher's and explainer's
# recursive walks as deep as a query may go. Beside each, the same one level deeper.
AT_THE_LIMIT = [
    (nested(MAX_DEPTH), f"({nested(MAX_DEPTH)})"),
    ("a " + "NOT " * MAX_DEPTH + "b", "a " + "NOT " * (MAX_DEPTH + 1) + "b"),
    (" NEAR ".join(["w0"] * (MAX_DEPTH + 1)), " NEAR ".join(["w0"] * (MAX_DEPTH + 2))),
    (_near_nested(MAX_DEPTH), f"({_near_nested(MAX_DEPTH)})"),
    (_scoped_nots(MAX_DEPTH), f"({_scoped_nots(MAX_DEPTH)})"),
]


@pytest.mark.parametrize(("query", "deeper"), AT_THE_LIMIT)
def test_queries_at_the_depth_limit_work_with_room_to_spare(query: str, deeper: str) -> None:
    words = " ".join(f"w{i} x{i} y{i} z{i}" for i in range(MAX_DEPTH)) + " a b"
    item = Item(feed="f", guid="g", url=None, title=words, summary=words)
    ruleset = compile_rules([Rule("deep", query)], {})
    limit = sys.getrecursionlimit()
    # syntax.py measured about 260 frames for the deepest shape; 400 leaves a margin and
    # still fails well before the default limit of 1000 would.
    sys.setrecursionlimit(len(inspect.stack()) + 400)
    try:
        node = parse_query(query)
        assert parse_query(to_query(node)) == node
        compile_rules([Rule("deep", query)], {})
        ruleset.match(item)
        format_explanation(ruleset.explain(item, "deep"))
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(RuleSyntaxError, match="nests more than"):
        parse_query(deeper)


QUERY_ALPHABET = st.sampled_from(
    [" ", "\n", "a", "b", "é", "ی", "*", "(", ")", '"', "@", "/", ":", "-", "!", "AND ", "OR ",
     "NOT ", "NEAR", "ONEAR/2 ", "/3", "title:", "source:", "tag:", "\\"]
)  # fmt: skip


# A prefix repeated up to 300 times around a few random tokens, closed or not: nesting on
# both sides of the depth limit.
DEEP = st.builds(
    lambda opener, times, middle, close: opener * times + "".join(middle) + close * times,
    st.sampled_from(["(", "NOT ", "a NEAR ", "x AND (y OR ", "NOT (", "title:(", "a OR ("]),
    st.integers(0, 300),
    st.lists(QUERY_ALPHABET, max_size=5),
    st.sampled_from([")", "", " b", ") NEAR c"]),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(QUERY_ALPHABET, max_size=25).map("".join), DEEP))
def test_arbitrary_text_raises_only_syntax_errors(query: str) -> None:
    try:
        parse_query(query)
    except RuleSyntaxError as e:
        assert e.line >= 1 and e.column >= 1


@settings(max_examples=400, deadline=None)
@given(st.lists(QUERY_ALPHABET, max_size=25).map("".join))
def test_printed_query_parses_to_the_same_tree(query: str) -> None:
    try:
        node = parse_query(query)
    except RuleSyntaxError:
        return
    assert parse_query(to_query(node)) == node


WORDS = st.sampled_from(["iran", "Évin", "ایران", "U.S.", "and", "AND", "x1", "tag:y"])


def _trees(leaf: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        many = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.one_of(
            many.map(lambda items: And(items)),  # type: ignore[arg-type]
            many.map(lambda items: Or(items)),  # type: ignore[arg-type]
        )

    return st.recursive(leaf, extend, max_leaves=8)


LEAVES = st.one_of(
    # A bare AND or tag:y is never a Term (the parser reads them as operator / source tag).
    st.builds(Term, WORDS.filter(lambda w: w not in {"AND", "tag:y"}), st.booleans()),
    st.builds(Phrase, st.lists(WORDS, min_size=1, max_size=3).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(_trees(LEAVES))
def test_generated_trees_round_trip(tree: object) -> None:
    text = to_query(tree)  # type: ignore[arg-type]
    assert parse_query(text) == tree
