"""The matcher's shortcuts against the plain computations they replace.

``Folded`` (words per white-space chunk, spans only on demand) against ``tokenize``; the snippet's
white-space collapsing against a character-by-character copy; the prefilter's word memo across
a reset.
"""

from __future__ import annotations

import bisect
import sys
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from monitor.rules.engine import _snippet, _window
from monitor.rules.prefilter import _SEEN_WORDS, Prefilter
from monitor.rules.text import Folded, tokenize
from tests.test_rules_prefilter import tree

PIECES = ["Iran's", "e\u0301", "\u200c", "ﬁ", "0¼", "ی", "ایــران", "Évin", "x" * 70, "_", "—"]
SPACES = [" ", " ", "  ", "\n", "\t \n", "\u00a0", "\u2003"]
TEXTS = st.one_of(
    st.text(),
    st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(SPACES))).map(
        lambda parts: "".join(p + s for p, s in parts)
    ),
    st.lists(st.sampled_from(PIECES + SPACES)).map("".join),
)


def test_a_word_character_is_never_white_space() -> None:
    # Folding a chunk with str.translate then str.split relies on it (text._words_of).
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.category(ch)[0] in "LNM":
            assert not ch.isspace(), hex(cp)


@given(TEXTS)
def test_folded_words_and_spans_equal_tokenize(text: str) -> None:
    tokens = tokenize(text)
    folded = Folded(text)
    assert folded.words == [t.norm for t in tokens]
    assert list(folded.iter_words()) == folded.words
    assert [folded.span(k) for k in range(len(tokens))] == [(t.start, t.end) for t in tokens]


@given(TEXTS, st.data())
def test_overlapping_equals_a_search_over_every_span(text: str, data: st.DataObject) -> None:
    tokens = tokenize(text)
    ends = [t.end for t in tokens]
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    first = bisect.bisect_right(ends, start)
    last = first
    while last < len(tokens) and tokens[last].start < end:
        last += 1
    assert Folded(text).overlapping(start, end) == (first, last)


def _reference_snippet(
    text: str, spans: list[tuple[int, int]]
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``_snippet`` as first written: the window collapsed one character at a time."""
    lo, hi = _window(text, spans)
    out: list[str] = []
    where: dict[int, int] = {}
    for i in range(lo, hi):
        ch = text[i]
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            where[i] = len(out) - 1
        else:
            where[i] = len(out)
            out.append(ch)
    body = "".join(out).rstrip()
    lead = "…" if lo > 0 else ""
    tail = "…" if hi < len(text) else ""
    marks = sorted(
        (where[s] + len(lead), where[e - 1] + 1 + len(lead)) for s, e in spans if lo <= s < e <= hi
    )
    merged: list[tuple[int, int]] = []
    for s, e in marks:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return lead + body + tail, tuple(merged)


@given(
    st.lists(
        st.sampled_from(["Evin", "prison", "x", "\n", " ", "  ", "\t", "Iran's", "ی"]),
        max_size=150,  # past the 240 characters of a snippet, so that windows start inside
    ).map("".join),
    st.data(),
)
def test_snippet_collapses_white_space_as_one_character_at_a_time_did(
    text: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    assert _snippet(text, spans) == _reference_snippet(text, spans)


def test_prefilter_answers_the_same_after_its_word_memo_starts_over() -> None:
    index = Prefilter([tree("ratif* AND treaty"), tree("evin NEAR prison*")])
    words = {f"w{i}" for i in range(_SEEN_WORDS + 10)}
    assert index.candidates({"ratified", "treaty"}) == [0]
    assert index.candidates(words | {"evin", "prisons"}) == [1]  # the memo overflows here
    assert index.candidates({"ratified", "treaty", "evin", "prison"}) == [0, 1]
    assert index.candidates({"ratified", "evin"}) == []
