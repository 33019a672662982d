"""The shared normaliser: spellings that must fold together, and ones that must not."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.rules.text import Token, fold, spans, tokenize, words


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Mélanie", "melanie"),
        ("MELANIE", "melanie"),
        ("Me\u0301lanie", "melanie"),  # decomposed accent
        ("Ｅｖｉｎ", "evin"),  # fullwidth (NFKC)
        ("ﬁnal", "final"),  # ligature
        ("Straße", "strasse"),
        ("علي", "علی"),  # Arabic yeh -> Persian yeh
        ("مصطفى", "مصطفی"),  # alef maksura
        ("كتاب", "کتاب"),  # Arabic kaf -> keheh
        ("ایــــران", "ایران"),  # tatweel
        ("كَتَبَ", "کتب"),  # harakat
        ("قرآن", "قران"),  # alef with madda
        ("إيران", "ایران"),  # alef with hamza below
        ("می\u200cخواهد", "میخواهد"),  # ZWNJ joins inside a word
        ("مدرسة", "مدرسه"),  # teh marbuta folded into heh
        ("۱۴۰۳", "1403"),  # Persian digits
    ],
)
def test_spellings_fold_together(a: str, b: str) -> None:
    assert fold(a) == fold(b)
    assert len(words(a)) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Эвин", "Evin"),  # Cyrillic is never transliterated
        ("ایران", "iran"),
        ("evin", "evinn"),
    ],
)
def test_distinct_words_stay_distinct(a: str, b: str) -> None:
    assert fold(a) != fold(b)


def test_cyrillic_stays_cyrillic() -> None:
    assert fold("Эвин") == "эвин"


def test_persian_letters_survive() -> None:
    assert fold("زندان اوین") == "زندان اوین"


def test_apostrophe_splits_words() -> None:
    assert words("Iran's parliament") == ["iran", "s", "parliament"]


def test_punctuation_and_line_breaks_separate() -> None:
    assert words("Evin\nprison, Tehran—(2024)") == ["evin", "prison", "tehran", "2024"]


def test_spans_point_into_original_text() -> None:
    text = "Mélanie  met ایــران’s «ZWNJ» می\u200cخواهد"
    toks = tokenize(text)
    assert [text[t.start : t.end] for t in toks] == [
        "Mélanie",
        "met",
        "ایــران",
        "s",
        "ZWNJ",
        "می\u200cخواهد",
    ]
    assert toks[0] == Token("melanie", 0, 7)


def test_trailing_combining_mark_stays_in_span() -> None:
    text = "cafe\u0301 noir"
    assert tokenize(text)[0] == Token("cafe", 0, 5)


@given(st.text())
def test_tokens_are_ordered_nonempty_and_refold_to_themselves(text: str) -> None:
    toks = tokenize(text)
    prev_start = prev_end = 0
    for tok in toks:
        assert tok.norm
        assert 0 <= tok.start < tok.end <= len(text)
        # "0¼" folds to "01⁄4": two tokens may share one original character, never more
        assert tok.start >= prev_start and tok.end >= prev_end
        assert tok.start >= prev_end - 1
        prev_start, prev_end = tok.start, tok.end
        # folding is idempotent: a folded word is its own folded form
        assert words(tok.norm) == [tok.norm]


def _reference_tokens(text: str) -> list[Token]:
    """Character by character, no chunks and no memo: what tokenize() must equal."""
    from monitor.rules.text import _fold_char, _is_word_char

    out: list[Token] = []
    buf: list[str] = []
    start = end = 0
    for i, ch in enumerate(text):
        folded = _fold_char(ch)
        if not folded:
            end = i + 1 if buf else end
            continue
        for c in folded:
            if _is_word_char(c):
                start = i if not buf else start
                buf.append(c)
                end = i + 1
            elif buf:
                out.append(Token("".join(buf), start, end))
                buf = []
    if buf:
        out.append(Token("".join(buf), start, end))
    return out


def test_white_space_always_separates_words() -> None:
    # tokenize() and words() cut text at white space before folding: that must never split or
    # join a word differently from folding character by character.
    from monitor.rules.text import _fold_char, _is_word_char

    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if ch.isspace():
            folded = _fold_char(ch)
            assert folded and not any(_is_word_char(c) for c in folded), hex(cp)


@given(
    st.one_of(
        st.text(),
        st.lists(
            st.sampled_from(["Iran's", "e\u0301", "\u200c", "ﬁ", "0¼", " ", "\n", "x" * 70, "ی"]),
        ).map("".join),
    )
)
def test_chunked_tokenizer_equals_character_by_character(text: str) -> None:
    assert tokenize(text) == _reference_tokens(text)
    assert words(text) == [t.norm for t in _reference_tokens(text)]
    assert spans(text) == [(t.start, t.end) for t in _reference_tokens(text)]
