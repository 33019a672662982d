"""Near-duplicate signatures: MinHash over word shingles, LSH band keys, a compact band index.

The same wire story reaches us through many outlets with a new headline, a byline, a footer
("Read more", "© AFP"), a few words edited or only the first part of the text. Exact keys
(`dedupe.content_hash`) miss all of these; this module recognises them:

- :func:`signature` folds title and body (the folding of ``monitor.rules.text``, replicated:
  this room may import only ``model``), cuts them into word ``SHINGLE_K``-grams and keeps, for
  each of ``NUM_PERM`` hash functions, the smallest hash of any shingle: ``NUM_PERM`` uint32,
  little-endian, ``SIGNATURE_BYTES`` bytes. Texts below ``MIN_WORDS_FOR_NEAR_DUP`` words get
  ``None``: they join stories by exact keys only.
- :func:`similarity` estimates the Jaccard similarity of the two shingle sets: the share of
  equal positions. Two items are the same report when it is ``>= NEAR_DUP_THRESHOLD``.
- :func:`band_keys` cuts a signature into ``BANDS`` bands of ``ROWS`` values and hashes each
  (band index included) to a non-negative signed 63-bit int, so they fit a BIGINT column. Items
  sharing any band key are candidates; a candidate joins only when :func:`similarity` confirms.
- The index of band keys lives in the store (table ``item_bands``), so every replica shares
  it and a process holds none of it in memory.

Everything is deterministic across processes, machines and numpy versions: words are hashed
with blake2b, the hash family's constants are derived from blake2b of fixed labels, and the
rest is fixed-width integer arithmetic. Changing any constant here (``SHINGLE_K``,
``NUM_PERM``, ``ROWS``, ``_SEED``, the folding) changes every signature and band key: stored
ones must then be recomputed. Pure functions, safe to call from any thread or process.

Figures behind every constant: docs/benchmarks.md, "Stories (near-duplicates)";
``bench/dedupe_eval.py`` and ``bench/dedupe_cost.py`` reproduce them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BANDS",
    "MIN_WORDS_FOR_NEAR_DUP",
    "NEAR_DUP_THRESHOLD",
    "NUM_PERM",
    "ROWS",
    "SHINGLE_K",
    "SIGNATURE_BYTES",
    "band_keys",
    "band_keys_matrix",
    "repeated_lines",
    "shingle_words",
    "signature",
    "signature_words",
    "similarity",
    "strip_boilerplate",
]

# --- the constants (measurements in docs/benchmarks.md) ----------------------------------

# Word 3-grams. Syndication set (bench/dedupe_eval.py), >= 40 words, threshold 0.3: k=2 gives
# precision 0.992 / recall 0.992, k=3 0.997 / 0.977, k=4 0.997 / 0.958, k=5 0.998 / 0.937.
# k=3 is the most precise that keeps recall above the 0.95 target at every MIN_WORDS >= 40.
SHINGLE_K: Final = 3
# 32 hash functions: a 128-byte signature and 16 band keys per item. The bound of 300
# bytes per indexed item is on process memory, and the index costs none there (0 B/item: it
# lives in the database, table item_bands, shared by the replicas); on disk an item with its
# signature and band rows takes ~2.7 KB (items + index, bench/dedupe_cost.py at 1M items).
# Measured error of the estimate on copies: mean -0.001, sd 0.059; 60%-truncated copies score
# median 0.62, p5 0.47.
NUM_PERM: Final = 32
# 16 bands of 2 rows: a pair at Jaccard 0.3 shares a band with probability 0.78, at 0.4 with
# 0.94, at 0.5 with 0.99; an unrelated pair (Jaccard ~0.01) with 0.002. On the syndication set
# 8 of ~1,600 copies above the threshold were missed by banding.
BANDS: Final = 16
ROWS: Final = 2
SIGNATURE_BYTES: Final = NUM_PERM * 4
# Below this many words (title + body, boilerplate removed) a new headline or an edit is a
# large share of the shingles: copies of shorter items that were re-headlined, edited and
# truncated together scored median 0.09 (found: 11%), and recall over all copies falls from
# 0.977 (>= 40) to 0.946 (>= 30) and 0.916 (>= 20). Headlines (median 9 words, max 19 in the
# news-stories set) never reach it: titles alone join stories by exact keys only.
MIN_WORDS_FOR_NEAR_DUP: Final = 40
# Estimated Jaccard at or above which two items are the same report: at k=3 and 40 words,
# 0.3 gives precision 0.997 / recall 0.977; 0.25 gives 0.994 / 0.986, 0.4 gives 0.998 / 0.945.
NEAR_DUP_THRESHOLD: Final = 0.3

assert BANDS * ROWS == NUM_PERM

_U64 = np.uint64
_MASK63: Final = (1 << 63) - 1
_SEED: Final = b"newsmon-minhash-v1"


def _derive(label: str, count: int) -> npt.NDArray[np.uint64]:
    """``count`` fixed 64-bit constants, the same on every machine (no RNG, no hash())."""
    raw = b"".join(
        hashlib.blake2b(f"{label}:{i}".encode(), digest_size=8, key=_SEED).digest()
        for i in range(count)
    )
    return np.frombuffer(raw, dtype="<u8").astype(_U64)


# Multiply-add-shift hashing (Dietzfelbinger): h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32 with
# a_i odd; the mod is free in uint64 arithmetic, so one (shingles x NUM_PERM) product does it.
_PERM_A: Final = _derive("a", NUM_PERM) | _U64(1)
_PERM_B: Final = _derive("b", NUM_PERM)
_BAND_SALT: Final = _derive("band", BANDS)
_SHINGLE_MUL: Final = _U64(0x9E3779B97F4A7C15)


# --- folding (replicates monitor/rules/text.py: NFKD, casefold, accents, Arabic/Persian) ---

_DROPPED_MARK_RANGES: Final = (
    (0x0300, 0x036F),
    (0x0483, 0x0489),
    (0x0591, 0x05C7),
    (0x0610, 0x061A),
    (0x064B, 0x065F),
    (0x0670, 0x0670),
    (0x06D6, 0x06ED),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
_JOINERS: Final = "\u200c\u200d\u00ad\u2060\ufeff\u0640"
_LETTERS: Final = {
    "\u064a": "\u06cc",  # ي -> ی
    "\u0649": "\u06cc",  # ى -> ی
    "\u0643": "\u06a9",  # ك -> ک
    "\u0622": "\u0627",  # آ -> ا
    "\u0623": "\u0627",  # أ
    "\u0625": "\u0627",  # إ
    "\u0671": "\u0627",  # ٱ
    "\u0624": "\u0648",  # ؤ -> و
    "\u0629": "\u0647",  # ة -> ه
    "\u06c0": "\u0647",  # ۀ -> ه
    "\u06d5": "\u0647",  # ە -> ه
    "\u06c1": "\u0647",  # ہ -> ه
    **{chr(0x0660 + i): str(i) for i in range(10)},
    **{chr(0x06F0 + i): str(i) for i in range(10)},
}
# Every character that folding removes or replaces; "_" separates words, as in rules/text.py.
_FOLD_MAP: Final[dict[str, str]] = {
    **{chr(cp): "" for lo, hi in _DROPPED_MARK_RANGES for cp in range(lo, hi + 1)},
    **dict.fromkeys(_JOINERS, ""),
    **_LETTERS,
    "_": " ",
}
# A substitution of only the characters present is ~6x faster than str.translate with a dict.
_FOLD_CHARS: Final = re.compile("[" + "".join(map(re.escape, _FOLD_MAP)) + "]")


def _kept_marks() -> str:
    """A regex class of the combining marks kept inside words (Indic vowel signs, …): Python's
    ``\\w`` does not count marks, and splitting a word at each of them would shred it."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x0300, 0x10000):  # 5 ms at import
        if unicodedata.category(chr(cp))[0] != "M" or chr(cp) in _FOLD_MAP:
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "".join(f"\\u{lo:04x}-\\u{hi:04x}" if hi > lo else f"\\u{lo:04x}" for lo, hi in ranges)


_KEPT_MARKS: Final = _kept_marks()
_KEPT_MARK: Final = re.compile(f"[{_KEPT_MARKS}]")
# A class with many ranges makes findall ~2x slower: used only for text that holds such marks.
_WORD_WITH_MARKS: Final = re.compile(f"[\\w{_KEPT_MARKS}]+")
_WORD: Final = re.compile(r"\w+")
_ASCII_WORD: Final = re.compile(r"[a-z0-9]+")


def _fold_one(m: re.Match[str]) -> str:
    return _FOLD_MAP[m.group()]


def shingle_words(text: str) -> list[str]:
    """The folded words of ``text``, as :func:`signature` sees them (those of rules/text.py)."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    # NFKD twice: casefold can produce characters with a decomposition of their own.
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    folded = _FOLD_CHARS.sub(_fold_one, folded)
    if _KEPT_MARK.search(folded):
        return _WORD_WITH_MARKS.findall(folded)
    return _WORD.findall(folded)


# --- boilerplate -----------------------------------------------------------------------------

# Lines outlets add around a wire story: credits, copyright, calls to read, subscribe or follow.
# On the syndication set an outlet's footer (30-40 words) on two different 60-word items made
# them score 0.3 alike; dropped, such pairs score ~0 (docs/benchmarks.md).
# Plain substrings of the lower-cased line: one regex alternation with word boundaries cost
# ~0.9 ms on a 4.8 KB page, these `in` tests a few µs.
_BOILERPLATE: Final = (
    "©",
    "copyright",
    "all rights reserved",
    "read more",
    "read the full",
    "continue reading",
    "sign up",
    "subscribe",
    "newsletter",
    "follow us",
    "click here",
    "originally published",
    "originally appeared",
    "reporting by",
    "writing by",
    "editing by",
    "may not be published",
    "may not be reproduced",
    "may not be redistributed",
)
# A line that long is prose that happens to mention a newsletter, not a footer.
_BOILERPLATE_MAX_WORDS: Final = 30
# Lines this short at either end of a body are bylines, credits and datelines ("By Staff
# Reporter", "Reuters", "Read more:"), never the story.
_EDGE_LINE_MAX_WORDS: Final = 5


def _is_boilerplate(line: str) -> bool:
    low = line.lower()
    return any(p in low for p in _BOILERPLATE) and len(line.split()) <= _BOILERPLATE_MAX_WORDS


def strip_boilerplate(body: str) -> str:
    """``body`` without the credit, copyright and call-to-action lines outlets add to a story.

    Works on lines (parse.py keeps paragraphs as lines): a line is dropped when it matches a
    boilerplate phrase and is short, or when it is a very short line at the start or end of a
    body of several lines. A body that is one line is kept whole.
    """
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) < 2:
        return body
    kept = [line for line in lines if not _is_boilerplate(line)]
    while len(kept) > 1 and len(kept[0].split()) <= _EDGE_LINE_MAX_WORDS:
        kept.pop(0)
    while len(kept) > 1 and len(kept[-1].split()) <= _EDGE_LINE_MAX_WORDS:
        kept.pop()
    return "\n".join(kept)


# --- MinHash --------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _word_digest(word: str) -> bytes:
    # A news stream's vocabulary repeats: the memo turns most blake2b calls into a dict hit.
    return hashlib.blake2b(word.encode(), digest_size=8, key=_SEED).digest()


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: spreads every input bit over all 64 output bits."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _shingle_hashes(words: list[str], k: int) -> npt.NDArray[np.uint64]:
    h = np.frombuffer(b"".join(map(_word_digest, words)), dtype="<u8").astype(_U64)
    n = len(h) - k + 1
    if n <= 0:
        n, k = 1, len(h)
    x = h[:n].copy()
    for j in range(1, k):  # ordered: "a b c" and "c b a" are different shingles
        x = x * _SHINGLE_MUL + h[j : j + n]
    return _mix(x)


def _line_key(line: str) -> str:
    return " ".join(shingle_words(line))


def repeated_lines(bodies: Iterable[str], min_count: int = 2) -> frozenset[str]:
    """The lines (folded) that occur in at least ``min_count`` of ``bodies``: an outlet's own
    byline, footer and calls to action, learnt from one document of its feed.

    Pass the bodies of one parsed feed document; give the result to :func:`signature` for
    each of its items. A wire story's lines recur across outlets, never within one outlet's
    feed, so this removes the outlet, not the story. Lines of fewer than 3 words are left to
    :func:`strip_boilerplate`.
    """
    counts: dict[str, int] = {}
    for body in bodies:
        for key in {_line_key(line) for line in body.splitlines()}:
            if key.count(" ") >= 2:
                counts[key] = counts.get(key, 0) + 1
    return frozenset(key for key, n in counts.items() if n >= min_count)


def signature_words(title: str, body: str, boilerplate: Collection[str] = frozenset()) -> list[str]:
    """The words :func:`signature` hashes: title and body, boilerplate lines dropped."""
    body = strip_boilerplate(body)
    if boilerplate:
        body = "\n".join(line for line in body.splitlines() if _line_key(line) not in boilerplate)
    return shingle_words(title) + shingle_words(body)


def signature(
    title: str,
    body: str,
    *,
    boilerplate: Collection[str] = frozenset(),
    min_words: int = MIN_WORDS_FOR_NEAR_DUP,
    k: int = SHINGLE_K,
) -> bytes | None:
    """The MinHash signature of title and body together, or None below ``min_words`` words.

    ``NUM_PERM`` uint32 little-endian (``SIGNATURE_BYTES`` bytes). Lines of ``boilerplate``
    (from :func:`repeated_lines`) and those :func:`strip_boilerplate` recognises are left out,
    and ``min_words`` counts what remains. ``min_words`` and ``k`` are there for configuration
    and evaluation; signatures are comparable only when made with the same ``k``.
    """
    words = signature_words(title, body, boilerplate)
    if not words or len(words) < min_words:
        return None
    x = _shingle_hashes(words, k)
    with np.errstate(over="ignore"):
        hashed = (x[:, None] * _PERM_A[None, :] + _PERM_B[None, :]) >> _U64(32)
    sig: bytes = hashed.min(axis=0).astype("<u4").tobytes()
    return sig


def _as_array(sig: bytes) -> npt.NDArray[np.uint32]:
    if len(sig) != SIGNATURE_BYTES:
        raise ValueError(f"a signature is {SIGNATURE_BYTES} bytes, got {len(sig)}")
    return np.frombuffer(sig, dtype="<u4")


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures, in [0, 1]."""
    return float(np.count_nonzero(_as_array(a) == _as_array(b))) / NUM_PERM


def similarities(sig: bytes, others: Sequence[bytes]) -> list[float]:
    """``[similarity(sig, o) for o in others]``, the same floats, in one numpy operation: an
    item's candidates (~20 a new item in bench/speed.py) compared at once cost less than the
    array conversion of one comparison each did."""
    if not others:
        return []
    if any(len(o) != SIGNATURE_BYTES for o in others):
        raise ValueError(f"a signature is {SIGNATURE_BYTES} bytes")
    matrix = np.frombuffer(b"".join(others), dtype="<u4").reshape(len(others), NUM_PERM)
    counts = np.count_nonzero(matrix == _as_array(sig), axis=1)
    return [float(c) / NUM_PERM for c in counts.tolist()]


def band_keys_matrix(sigs: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """Band keys of many signatures at once: (n, NUM_PERM) uint32 -> (n, BANDS) int64."""
    if sigs.ndim != 2 or sigs.shape[1] != NUM_PERM:
        raise ValueError(f"expected shape (n, {NUM_PERM}), got {sigs.shape}")
    bands = sigs.astype(_U64).reshape(len(sigs), BANDS, ROWS)
    x = np.broadcast_to(_BAND_SALT, (len(sigs), BANDS)).copy()
    with np.errstate(over="ignore"):
        for r in range(ROWS):
            x = _mix(x * _SHINGLE_MUL + bands[:, :, r])
    return (x & _U64(_MASK63)).astype(np.int64)


def band_keys(sig: bytes) -> tuple[int, ...]:
    """``BANDS`` keys of a signature, each in [0, 2^63): items sharing one are candidates."""
    row = _as_array(sig).reshape(1, NUM_PERM)
    return tuple(int(v) for v in band_keys_matrix(row)[0])
