"""One item during one match: its fields' words, computed once and shared by every rule.

Internal to :mod:`monitor.rules`. A :class:`Doc` folds each field at most once (a
:class:`~monitor.rules.text.Folded`: words first; character spans only for the words that
evidence or a regex match needs), finds a word's positions only when a rule actually looks for
it (scanning the field's words in C, or indexing the field once many look-ups come), and
remembers every leaf result (word, prefix, phrase, regex) so that rules sharing a leaf pay for
it once. ``hits``/``truth`` evaluate a compiled tree against it.

A hit is ``(first, last, atoms)``: the [first, last) word indexes it covers in one field and its
evidence atoms, each ``(a, b, chars)``: words [a, b) when ``chars`` is false, characters [a, b)
of the field's text (a regex match) when true. Character spans are worked out only on demand.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable
from typing import Final, TypeAlias

from monitor.model import Item
from monitor.rules.compiled import (
    POSITIONAL,
    AllOf,
    AnyOf,
    CNode,
    Either,
    Near,
    Negated,
    Pattern,
    Scope,
    Seq,
)
from monitor.rules.text import Folded, words

__all__ = ["TEXT_FIELDS", "Doc", "Hit", "evidence", "hits", "truth"]

# Item fields in the order evidence is preferred for the snippet (title first: it is what the
# reader sees first, and it is short).
TEXT_FIELDS: Final = ("title", "summary", "content", "text", "author", "url")

# Word look-ups per field answered by scanning its word list before it is indexed instead: a scan
# of a 600-word field costs ~2 µs in C, indexing it ~30 µs in Python. With the prefilter a field
# sees a few look-ups per item; without it (every rule evaluated), hundreds.
_SCANS: Final = 16

Atom: TypeAlias = tuple[int, int, bool]
Hit: TypeAlias = tuple[int, int, tuple[Atom, ...]]


class Doc:
    """An item's fields, folded lazily and cached for the length of one match or explain."""

    def __init__(self, item: Item, feed_tags: Collection[str]) -> None:
        self.feed = item.feed
        self.texts: dict[str, str] = {
            "title": item.title,
            "summary": item.summary,
            "content": item.content,
            "text": item.text,
            "author": item.author,
            "url": item.url or "",
        }
        self.source_values: list[str] = [item.feed, *(f"tag:{tag}" for tag in feed_tags)]
        self.sources: list[list[str]] = [words(item.feed)]
        self.sources += [["tag", *words(tag)] for tag in feed_tags]
        self._fields: dict[str, Folded] = {}
        self._scans: dict[str, int] = {}  # field -> look-ups answered by scanning its words
        self._index: dict[str, dict[str, list[int]]] = {}  # field -> word -> positions
        self._vocab: dict[str, list[str]] = {}  # field -> its distinct words, sorted
        self._encoded: dict[str, bytes] = {}
        self._leaves: dict[tuple[Seq | str, str], list[Hit]] = {}

    def field(self, name: str) -> Folded:
        found = self._fields.get(name)
        if found is None:
            found = self._fields[name] = Folded(self.texts[name])
        return found

    def words(self, name: str) -> list[str]:
        return self.field(name).words

    def vocabulary(self) -> set[str]:
        """Every distinct word of every field, the source words included (for the prefilter)."""
        vocab: set[str] = set()
        for name in TEXT_FIELDS:
            vocab.update(self.field(name).iter_words())
        for value in self.sources:
            vocab.update(value)
        return vocab

    def encoded(self, name: str) -> bytes:
        """Field ``name`` in UTF-8, encoded once for every regex. Searching these bytes is the
        first step of searching the text (the wrapper encodes it each time), so a pattern that
        finds nothing here has no match at all; most do not, and stop there."""
        found = self._encoded.get(name)
        if found is None:
            found = self._encoded[name] = self.texts[name].encode()
        return found

    def char_spans(self, name: str, atoms: Iterable[Atom]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for a, b, chars in atoms:
            if chars:
                out.append((a, b))
            else:
                folded = self.field(name)
                out.append((folded.span(a)[0], folded.span(b - 1)[1]))
        return out

    def starts(self, name: str, word: str, prefix: bool) -> list[int]:
        """Positions in field ``name`` of words equal to ``word`` (or starting with it)."""
        index = self._index.get(name)
        if index is None:
            scans = self._scans[name] = self._scans.get(name, 0) + 1
            if scans <= _SCANS:
                return self._scan(name, word, prefix)
            index = self._index[name] = {}
            for i, w in enumerate(self.words(name)):
                at = index.get(w)
                if at is None:
                    index[w] = [i]
                else:
                    at.append(i)
            self._vocab[name] = sorted(index)
        if not prefix:
            return index.get(word, [])
        vocab = self._vocab[name]
        found: list[int] = []
        i = bisect_left(vocab, word)
        while i < len(vocab) and vocab[i].startswith(word):
            found += index[vocab[i]]
            i += 1
        return sorted(found)

    def _scan(self, name: str, word: str, prefix: bool) -> list[int]:
        ws = self.words(name)
        if not prefix:
            return _positions(ws, word)
        found: list[int] = []
        for w in set(ws):
            if w.startswith(word):
                found += _positions(ws, w)
        return sorted(found)

    def seq_hits(self, seq: Seq, name: str) -> list[Hit]:
        key = (seq, name)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        hits: list[Hit] = []
        if name == "source":
            if any(whole(seq, v) for v in self.sources):
                hits.append((0, 0, ()))
        else:
            ws = self.words(name)
            n = len(seq.parts)
            word, prefix = seq.parts[0]
            for i in self.starts(name, word, prefix):
                if i + n <= len(ws) and all(fits(ws[i + k], *seq.parts[k]) for k in range(1, n)):
                    hits.append((i, i + n, ((i, i + n, False),)))
        self._leaves[key] = hits
        return hits

    def regex_hits(self, regex: Pattern, name: str) -> list[Hit]:
        key = (regex.pattern, name)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        hits: list[Hit] = []
        text = self.texts[name]
        if text and regex.compiled.search(self.encoded(name)) is not None:
            for m in regex.compiled.finditer(text):
                start, end = m.start(), m.end()
                first, last = self.field(name).overlapping(start, end)
                if last > first:  # the match overlaps at least one word
                    hits.append((first, last, ((start, end, True),)))
        self._leaves[key] = hits
        return hits


def _positions(ws: list[str], word: str) -> list[int]:
    """Indexes of ``word`` in ``ws``, found by ``list.index`` (a scan in C)."""
    found: list[int] = []
    i = -1
    try:
        while True:
            i = ws.index(word, i + 1)
            found.append(i)
    except ValueError:
        return found


def fits(token: str, word: str, prefix: bool) -> bool:
    return token.startswith(word) if prefix else token == word


def whole(seq: Seq, value: list[str]) -> bool:
    """A ``source:`` value equals the sequence as a whole."""
    return len(value) == len(seq.parts) and all(
        fits(v, *part) for v, part in zip(value, seq.parts, strict=True)
    )


def hits(node: CNode, name: str, doc: Doc) -> list[Hit]:
    """Where a positional node holds in field ``name``."""
    if isinstance(node, Seq):
        return doc.seq_hits(node, name)
    if isinstance(node, Pattern):
        return doc.regex_hits(node, name)
    if isinstance(node, AnyOf):
        merged: list[Hit] = []
        for item in node.items:
            merged += hits(item, name, doc)
        return merged
    assert isinstance(node, Near), node  # the parser admits nothing else under NEAR
    found: list[Hit] = []
    rights = hits(node.right, name, doc)
    for a in hits(node.left, name, doc) if rights else ():
        for b in rights:
            if b[0] >= a[1]:
                # Adjacent words are 1 apart: "at most n words apart" counts that way.
                gap = b[0] - a[1] + 1
            elif a[0] >= b[1] and not node.ordered:
                gap = a[0] - b[1] + 1
            else:
                continue
            if gap <= node.distance:
                found.append((min(a[0], b[0]), max(a[1], b[1]), a[2] + b[2]))
    return found


def truth(node: CNode, scope: tuple[str, ...], doc: Doc) -> bool:
    """Whether ``node`` holds for the item when searched in the fields of ``scope``."""
    if isinstance(node, POSITIONAL):
        return any(hits(node, name, doc) for name in scope)
    if isinstance(node, AllOf):
        return all(truth(item, scope, doc) for item in node.items)
    if isinstance(node, Either):
        return any(truth(item, scope, doc) for item in node.items)
    if isinstance(node, Negated):
        return not truth(node.item, scope, doc)
    assert isinstance(node, Scope), node
    return truth(node.item, node.fields, doc)


def evidence(node: CNode, scope: tuple[str, ...], doc: Doc, out: dict[str, list[Hit]]) -> None:
    """Collect every positive hit of a matching ``node`` into ``out``, by field."""
    if isinstance(node, POSITIONAL):
        for name in scope:
            found = hits(node, name, doc)
            if found:
                out.setdefault(name, []).extend(found)
    elif isinstance(node, AllOf):
        for item in node.items:
            evidence(item, scope, doc, out)
    elif isinstance(node, Either):
        for item in node.items:
            if truth(item, scope, doc):
                evidence(item, scope, doc, out)
    elif isinstance(node, Scope):
        evidence(node.item, node.fields, doc, out)
    # Negated: what is absent is no evidence.
