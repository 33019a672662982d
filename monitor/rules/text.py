"""The one text normaliser and tokenizer that rules and items share.

A rule word and an item word match when they fold to the same string, so both sides must go
through exactly this code. Folding, character by character:

* Unicode NFKD (compatibility forms: fullwidth ``Ｅｖｉｎ`` -> ``evin``, ligatures, Arabic
  presentation forms -> base letters), then ``str.casefold``.
* Diacritics dropped: combining marks of the Latin/Greek/Cyrillic diacritic blocks, Hebrew points
  and Arabic harakat (U+064B–U+065F, U+0670, Quranic marks). Marks of other scripts (Devanagari
  vowel signs, …) are kept, because there they are part of the spelling, not an accent.
  Consequence: ``Mélanie == melanie``, ``ё == е`` and also ``й == и`` (Cyrillic breve is a
  diacritic to Unicode; a small over-match we accept for one uniform rule).
* Arabic/Persian variants unified: ``ي ى ئ -> ی``, ``ك -> ک``, ``أ إ آ ٱ -> ا``, ``ؤ -> و``,
  ``ة ۀ ە -> ه`` (teh marbuta folded into heh, as Lucene's Persian and Arabic normalisers do: the
  two are used interchangeably in loanwords and careless typing), Arabic-Indic and Persian digits
  -> ASCII digits.
* Invisible joiners removed *inside* a word: ZWNJ, ZWJ, soft hyphen, word joiner, BOM and tatweel,
  so ``می‌خواهد == میخواهد`` and ``ایــران == ایران``.
* Scripts are never transliterated: Cyrillic ``Эвин`` stays Cyrillic and does not match ``Evin``.

Words are maximal runs of letters, digits and kept marks. Everything else separates words, so
``Iran's`` is the two tokens ``iran`` and ``s`` (a rule ``Iran`` then finds ``Iran's``) and
``Russia-Iran`` is ``russia``, ``iran``. Each token carries its [start, end) span in the
*original* string, so evidence is highlighted in the text the user wrote.

Pure functions, no state beyond a per-character memo; safe to call from any thread.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Token", "fold", "tokenize", "words"]


@dataclass(frozen=True, slots=True)
class Token:
    """One word: its folded form and where it stands in the original text."""

    norm: str  # folded form; equal for any case/accent/letter-variant spelling
    start: int  # [start, end) character offsets in the original string
    end: int


# Combining marks that are accents or vowel points rather than letters (see module docstring).
_DROPPED_MARK_RANGES: tuple[tuple[int, int], ...] = (
    (0x0300, 0x036F),  # Combining Diacritical Marks
    (0x0483, 0x0489),  # Cyrillic combining titlo and friends
    (0x0591, 0x05C7),  # Hebrew cantillation and points
    (0x0610, 0x061A),  # Arabic honorific marks
    (0x064B, 0x065F),  # Arabic harakat: fathatan … wavy hamza below
    (0x0670, 0x0670),  # superscript alef
    (0x06D6, 0x06ED),  # Quranic annotation marks
    (0x1AB0, 0x1AFF),  # Combining Diacritical Marks Extended
    (0x1DC0, 0x1DFF),  # Combining Diacritical Marks Supplement
    (0x20D0, 0x20FF),  # Combining Diacritical Marks for Symbols
    (0xFE20, 0xFE2F),  # Combining Half Marks
)

# Characters that vanish without separating words: they shape or join letters, never split them.
_JOINERS = frozenset("\u200c\u200d\u00ad\u2060\ufeff\u0640")

_LETTER_MAP: dict[str, str] = {
    "\u064a": "\u06cc",  # ي Arabic yeh -> ی Persian yeh
    "\u0649": "\u06cc",  # ى alef maksura -> ی
    "\u0643": "\u06a9",  # ك Arabic kaf -> ک keheh
    "\u0622": "\u0627",  # آ (in case a precomposed form survives) -> ا
    "\u0623": "\u0627",  # أ
    "\u0625": "\u0627",  # إ
    "\u0671": "\u0627",  # ٱ alef wasla
    "\u0624": "\u0648",  # ؤ -> و
    "\u0629": "\u0647",  # ة teh marbuta -> ه
    "\u06c0": "\u0647",  # ۀ heh with yeh above -> ه
    "\u06d5": "\u0647",  # ە ae (NFKD of ۀ leaves it) -> ه
    "\u06c1": "\u0647",  # ہ heh goal -> ه
}
for _i in range(10):
    _LETTER_MAP[chr(0x0660 + _i)] = str(_i)  # Arabic-Indic digits
    _LETTER_MAP[chr(0x06F0 + _i)] = str(_i)  # Extended Arabic-Indic (Persian) digits


def _is_dropped_mark(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _DROPPED_MARK_RANGES)


@lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    """Fold one original character; may return "" (accent, joiner) or several characters."""
    if ch in _JOINERS:
        return ""
    # NFKD twice: casefold can produce characters with a decomposition of their own.
    s = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", ch).casefold())
    out = []
    for c in s:
        if c in _JOINERS or _is_dropped_mark(c):
            continue
        out.append(_LETTER_MAP.get(c, c))
    return "".join(out)


@lru_cache(maxsize=65536)
def _is_word_char(ch: str) -> bool:
    # Letters, digits and the marks we keep (Indic vowel signs are marks, yet part of a word).
    return unicodedata.category(ch)[0] in "LNM"


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into folded words with their spans in ``text``.

    A joiner or dropped accent inside a word stays inside its span (``Me\\u0301lanie`` is one
    token covering all 8 characters); one original character that folds to several
    (``ﬁ`` -> ``fi``) gives its whole span to the token it lands in.
    """
    tokens: list[Token] = []
    buf: list[str] = []
    start = end = 0
    for i, ch in enumerate(text):
        folded = _fold_char(ch)
        if not folded:
            if buf:  # an accent or joiner continues the word it sits in
                end = i + 1
            continue
        for c in folded:
            if _is_word_char(c):
                if not buf:
                    start = i
                buf.append(c)
                end = i + 1
            elif buf:
                tokens.append(Token("".join(buf), start, end))
                buf = []
    if buf:
        tokens.append(Token("".join(buf), start, end))
    return tokens


def words(text: str) -> list[str]:
    """The folded words of ``text``: ``[t.norm for t in tokenize(text)]``."""
    return [t.norm for t in tokenize(text)]


def fold(text: str) -> str:
    """``text`` folded to its canonical form: its words joined by single spaces."""
    return " ".join(words(text))
