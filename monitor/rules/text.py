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

Speed: white space always separates words (a test checks every such character), so the text is
cut at white space first and each chunk (``"Iran's,"``) is folded once and remembered; news text
repeats its chunks, so a 4 KB article costs one ``str.split`` and one C-level pass of dict
look-ups (``map``), with Python code only for the chunks not seen before. :class:`Folded`
keeps a text's chunks and works out character spans only for the words asked for (a snippet's
hits), never for the whole text; :func:`words` needs no spans at all.

Pure functions, no state beyond bounded memos; safe to call from any thread.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, chain
from operator import add
from sys import intern
from typing import Final, cast

__all__ = ["Folded", "Token", "fold", "spans", "tokenize", "words"]


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


# A chunk longer than this is folded without the memo: such chunks (base64, minified junk) rarely
# repeat, and memoizing them would let hostile input grow the memo to chunk size x entries.
_MEMO_CHUNK: Final = 64
_CHUNK = re.compile(r"\S+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"(\s+)")

_Spans = tuple[tuple[str, int, int], ...]


def _scan(text: str) -> _Spans:
    """The tokenizer proper, character by character: (norm, start, end) for each word."""
    tokens: list[tuple[str, int, int]] = []
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
                tokens.append(("".join(buf), start, end))
                buf = []
    if buf:
        tokens.append(("".join(buf), start, end))
    return tuple(tokens)


def _scan_chunk(chunk: str) -> _Spans:
    """:func:`_scan`, with a shortcut for ASCII: there folding is lower-casing and the words are
    the runs of letters and digits (every other ASCII character separates, ``_`` included)."""
    if chunk.isascii():
        return tuple((m.group(), m.start(), m.end()) for m in _ASCII_WORD.finditer(chunk.lower()))
    return _scan(chunk)


class _Separated(dict[int, str]):
    """``str.translate`` table: each character as it folds, with the characters that end a word
    turned into spaces, so that ``text.translate(table).split()`` are the words of ``text``.

    Filled on first use of a character; bounded (emptied when full), since hostile text could
    bring every code point.
    """

    def __missing__(self, cp: int) -> str:
        if len(self) >= _SEPARATED_SIZE:
            self.clear()
        out = "".join(c if _is_word_char(c) else " " for c in _fold_char(chr(cp)))
        self[cp] = out
        return out


_SEPARATED_SIZE: Final = 1 << 16
_SEPARATED = _Separated()


def _words_of(chunk: str) -> tuple[str, ...]:
    """The words of ``chunk``, as :func:`_scan_chunk` has them, without the spans: a character
    that folds to nothing joins its neighbours, as in :func:`_scan` (a word character is never
    white space, so ``split`` cuts only where a separator was)."""
    if chunk.isascii():
        return tuple(map(intern, _ASCII_WORD.findall(chunk.lower())))
    return tuple(map(intern, chunk.translate(_SEPARATED).split()))


# Spans are needed only around the hits an alert shows (and by `tokenize`, for tests and tools).
_chunk_spans = lru_cache(maxsize=1 << 12)(_scan_chunk)


def _spans_of(chunk: str) -> _Spans:
    return _chunk_spans(chunk) if len(chunk) <= _MEMO_CHUNK else _scan_chunk(chunk)


# 65,536 chunks per generation hold the working vocabulary of a news stream in several languages
# (the benchmark's 4 KB items, over a 20,000-word tail, miss on ~2% of their chunks); a miss
# costs a few microseconds.
_GENERATION: Final = 1 << 16


class _ChunkMemo:
    """chunk -> its folded words, in two generations: a cheap, bounded stand-in for an LRU.

    Look-ups hit the young generation through one ``map(dict.get)`` in C; a miss is looked up
    in the old one (and promoted) or folded. When the young generation is full it becomes the
    old one, and the previous old one is dropped. Chunks longer than :data:`_MEMO_CHUNK` are
    folded every time and never stored. Thread-safe: the dicts are only read whole, added to
    or replaced, and every caller keeps the references it started with.
    """

    def __init__(self) -> None:
        self.young: dict[str, tuple[str, ...]] = {}
        self.old: dict[str, tuple[str, ...]] = {}

    def fold(self, chunks: list[str]) -> list[tuple[str, ...]]:
        young = self.young
        found: list[tuple[str, ...] | None] = list(map(young.get, chunks))
        try:
            i = found.index(None)  # a scan in C; misses are a few per article
        except ValueError:
            return cast(list[tuple[str, ...]], found)
        old = self.old
        while True:
            chunk = chunks[i]
            folded = young.get(chunk)  # stored by an earlier miss of this call
            if folded is None:
                folded = old.get(chunk)
                if folded is None:
                    folded = _words_of(chunk)
                if len(chunk) <= _MEMO_CHUNK:
                    young[chunk] = folded
            found[i] = folded
            try:
                i = found.index(None, i + 1)
            except ValueError:
                break
        if len(young) > _GENERATION:
            self.old, self.young = young, {}
        return cast(list[tuple[str, ...]], found)  # every None filled in


_MEMO = _ChunkMemo()


class Folded:
    """One text, cut at white space with each chunk folded: its words, and their spans on demand.

    ``words`` is ``[t.norm for t in tokenize(text)]``; ``span(k)`` is word k's
    ``(start, end)`` in ``text``; ``overlapping(a, b)`` the words a character range touches.
    Built per field of an item and used by one thread.
    """

    __slots__ = ("_cum", "_offsets", "_words", "chunks", "per_chunk", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.chunks = text.split()
        self.per_chunk = _MEMO.fold(self.chunks)  # the folded words of each chunk
        self._words: list[str] | None = None
        self._offsets: list[int] = []  # where each chunk starts in `text`
        self._cum: list[int] = []  # how many words come before each chunk (and after the last)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = list(chain.from_iterable(self.per_chunk))
        return self._words

    def iter_words(self) -> Iterator[str]:
        """The words in order, without building the list (for set updates)."""
        return chain.from_iterable(self.per_chunk)

    def _layout(self) -> tuple[list[int], list[int]]:
        if not self._cum:
            chunks = self.chunks
            lengths = list(accumulate(map(len, chunks), initial=0))
            if chunks and lengths[-1] + len(chunks) - 1 == len(self.text):
                # n chunks and n - 1 other characters: single separators, nothing around them.
                self._offsets = list(map(add, lengths, range(len(chunks))))
            else:
                self._offsets = [m.start() for m in _CHUNK.finditer(self.text)]
            self._cum = list(accumulate(map(len, self.per_chunk), initial=0))
        return self._offsets, self._cum

    def span(self, k: int) -> tuple[int, int]:
        """The [start, end) characters of word ``k`` in ``text``."""
        offsets, cum = self._layout()
        j = bisect_right(cum, k) - 1  # the chunk holding word k (one with no words is skipped)
        _, start, end = _spans_of(self.chunks[j])[k - cum[j]]
        return offsets[j] + start, offsets[j] + end

    def _spans_from(self, j: int) -> Iterator[tuple[int, int]]:
        offsets, _ = self._layout()
        for chunk, base in zip(self.chunks[j:], offsets[j:], strict=True):
            for _, start, end in _spans_of(chunk):
                yield base + start, base + end

    def overlapping(self, start: int, end: int) -> tuple[int, int]:
        """[first, last): ``first`` is the first word ending after ``start``; the words from it
        on that begin before ``end`` run to ``last`` (``first == last``: none overlaps)."""
        offsets, cum = self._layout()
        # Words of the chunks before the one where `start` lies all end before it.
        j = max(0, bisect_right(offsets, start) - 1)
        spans = self._spans_from(j)
        first = cum[j]
        span = next(spans, None)
        while span is not None and span[1] <= start:
            first += 1
            span = next(spans, None)
        last = first
        while span is not None and span[0] < end:
            last += 1
            span = next(spans, None)
        return first, last


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into folded words with their spans in ``text``.

    A joiner or dropped accent inside a word stays inside its span (``Me\\u0301lanie`` is one
    token covering all 8 characters); one original character that folds to several
    (``ﬁ`` -> ``fi``) gives its whole span to the token it lands in.
    """
    tokens: list[Token] = []
    for m in _CHUNK.finditer(text):
        chunk = m.group()
        base = m.start()
        spans = _chunk_spans(chunk) if len(chunk) <= _MEMO_CHUNK else _scan_chunk(chunk)
        tokens += [Token(norm, base + s, base + e) for norm, s, e in spans]
    return tokens


def spans(text: str) -> list[tuple[int, int]]:
    """The [start, end) span of each word of ``text``: ``tokenize`` without the objects."""
    parts = _SPACE.split(text)  # chunks at even indexes, the white space between at odd ones
    chunks = parts[0::2]
    if chunks and max(map(len, chunks)) > _MEMO_CHUNK:
        return [(s, e) for _, s, e in _scan(text)]
    bases = list(accumulate(map(len, parts), initial=0))[0 : len(parts) : 2]
    found = map(_chunk_spans, chunks)
    return [
        (base + s, base + e) for base, spans in zip(bases, found, strict=True) for _, s, e in spans
    ]


def words(text: str) -> list[str]:
    """The folded words of ``text``: ``[t.norm for t in tokenize(text)]``, without the spans."""
    return list(chain.from_iterable(_MEMO.fold(text.split())))


def fold(text: str) -> str:
    """``text`` folded to its canonical form: its words joined by single spaces."""
    return " ".join(words(text))
