"""Compile every watch rule once; match items against all of them, with evidence.

:func:`compile_rules` parses each query (:mod:`monitor.rules.syntax`), resolves ``@ALIAS``es and
folds every word with :mod:`monitor.rules.text`, so matching compares folded words only. It
reports every broken rule at once in :class:`RuleErrors`.

:meth:`RuleSet.match` tokenizes each field of the item at most once per call, shares the tokens
and every leaf result (word, prefix, phrase, regex) across all rules, and returns one
:class:`~monitor.model.Match` per matching rule. Pure: no I/O, no clock; a ``RuleSet`` is
immutable and safe to share between threads.

Fields and scopes: the default scope (``text:``) is the item's title, summary, content and article
text; ``title:``, ``summary:``, ``url:`` and ``author:`` are one field each; ``source:`` compares
whole values with the feed's name or, as ``source:tag:x``, with one of its tags. A phrase or a NEAR
never spans two fields. A regex runs case-insensitively over a field's original text and counts as
a hit on the words it overlaps.

Where a later prefilter (Aho-Corasick over the rules' literal words) slots in: every rule's
leaves are :class:`_Seq` and :class:`_Regex` values; a rule whose required literals are absent
from the item can be skipped before :func:`_truth` runs, without changing its semantics.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import re2

from monitor.model import Item, Match, Rule
from monitor.rules import syntax
from monitor.rules.syntax import RuleSyntaxError, parse_query
from monitor.rules.text import Token, tokenize, words

__all__ = ["RuleError", "RuleErrors", "RuleSet", "compile_rules"]

# About three lines of an alert: enough context to judge a hit without opening the article.
SNIPPET_CHARS: Final = 240
# How far a snippet edge may move to land on a word boundary before it cuts mid-word.
_BOUNDARY_SLACK: Final = 30

# Item fields in the order evidence is preferred for the snippet (title first: it is what the
# reader sees first, and it is short).
_TEXT_FIELDS: Final = ("title", "summary", "content", "text", "author", "url")
_SCOPES: Final[Mapping[str, tuple[str, ...]]] = {
    "text": ("title", "summary", "content", "text"),
    "title": ("title",),
    "summary": ("summary",),
    "url": ("url",),
    "author": ("author",),
    "source": ("source",),
}
_FIELD_ORDER: Final = (*_TEXT_FIELDS, "source")


class RuleError(ValueError):
    """A compile-time problem in one rule; ``line``/``column`` are 1-based within its query."""

    def __init__(
        self, rule: str, message: str, line: int, column: int, hint: str | None = None
    ) -> None:
        self.rule = rule
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint
        text = f"rule {rule!r}, {line}:{column}: {message}"
        super().__init__(f"{text} ({hint})" if hint else text)


class RuleErrors(ValueError):
    """Every broken rule of one :func:`compile_rules` call, in rule order."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


# --- the compiled form ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seq:
    """Adjacent folded words; a word with ``True`` beside it is a prefix. One word: a term."""

    parts: tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class _Regex:
    pattern: str
    compiled: Any = field(compare=False, hash=False)  # re2 ships no types


@dataclass(frozen=True, slots=True)
class _Or:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _And:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    item: _Node


@dataclass(frozen=True, slots=True)
class _Near:
    left: _Node
    right: _Node
    distance: int
    ordered: bool


@dataclass(frozen=True, slots=True)
class _Scope:
    fields: tuple[str, ...]
    item: _Node


_Node: TypeAlias = _Seq | _Regex | _Or | _And | _Not | _Near | _Scope
_POSITIONAL = (_Seq, _Regex, _Or, _Near)  # nodes with hits at word positions

# A hit: [start, end) word indexes in one field, and the character spans that are evidence.
_Hit: TypeAlias = tuple[int, int, tuple[tuple[int, int], ...]]


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    tree: _Node


class _Compiler:
    def __init__(self, rule: Rule, aliases: Mapping[str, Sequence[str]], alias_names: str) -> None:
        self.rule = rule
        self.aliases = aliases  # keyed by casefolded name
        self.alias_names = alias_names  # as the user wrote them, for error hints

    def fail(self, message: str, pos: tuple[int, int], hint: str | None = None) -> RuleError:
        return RuleError(self.rule.name, message, pos[0], pos[1], hint)

    def seq(self, raw_words: Sequence[str], pos: tuple[int, int], what: str) -> _Seq:
        parts: list[tuple[str, bool]] = []
        for raw in raw_words:
            prefix = raw.endswith("*")
            body = raw[:-1] if prefix else raw
            folded = words(body)
            if not folded or "*" in body:
                raise self.fail(f"{what}: {raw!r} is not a word or a prefix", pos)
            parts += [(w, False) for w in folded[:-1]]
            parts.append((folded[-1], prefix))
        return _Seq(tuple(parts))

    def node(self, node: syntax.Node, scope: str) -> _Node:
        if isinstance(node, syntax.Term):
            return self.seq([node.word + ("*" if node.prefix else "")], node.pos, "word")
        if isinstance(node, syntax.Phrase):
            return self.seq(node.words, node.pos, "phrase")
        if isinstance(node, syntax.Alias):
            return self.alias(node)
        if isinstance(node, syntax.Regex):
            return self.regex(node, scope)
        if isinstance(node, syntax.And):
            return _And(tuple(self.node(i, scope) for i in node.items))
        if isinstance(node, syntax.Or):
            return _Or(tuple(self.node(i, scope) for i in node.items))
        if isinstance(node, syntax.Not):
            return _Not(self.node(node.item, scope))
        if isinstance(node, syntax.Near):
            if scope == "source":
                raise self.fail("NEAR inside source:", node.pos, "source: compares whole names")
            return _Near(
                self.node(node.left, scope),
                self.node(node.right, scope),
                node.distance,
                node.ordered,
            )
        return _Scope(_SCOPES[node.name], self.node(node.item, node.name))

    def alias(self, node: syntax.Alias) -> _Node:
        terms = self.aliases.get(node.name.casefold())
        if terms is None:
            raise self.fail(
                f"unknown alias @{node.name}",
                node.pos,
                f"known aliases (any case): {self.alias_names or 'none defined'}",
            )
        if not terms:
            raise self.fail(f"alias @{node.name} is empty", node.pos)
        seqs = [self.seq(t.split(), node.pos, f"alias @{node.name}") for t in terms]
        return seqs[0] if len(seqs) == 1 else _Or(tuple(seqs))

    def regex(self, node: syntax.Regex, scope: str) -> _Regex:
        if scope == "source":
            raise self.fail("regex inside source:", node.pos, "source: compares whole names")
        options = re2.Options()
        options.case_sensitive = False
        options.log_errors = False  # the error reaches the user through RuleError instead
        try:
            compiled = re2.compile(node.pattern, options)
        except re2.error as e:
            reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            raise self.fail(
                f"bad regular expression: {reason}",
                node.pos,
                "RE2 syntax: no look-around, no backreferences",
            ) from None
        return _Regex(node.pattern, compiled)


def compile_rules(rules: Sequence[Rule], aliases: Mapping[str, Sequence[str]]) -> RuleSet:
    """Compile ``rules`` once; raise :class:`RuleErrors` listing every broken rule.

    Alias names are case-insensitive. An alias term may hold several words (a phrase) and end
    with ``*`` (a prefix). Disabled rules are compiled too, so their errors show in ``check``.
    """
    folded_aliases = {name.casefold(): list(terms) for name, terms in aliases.items()}
    alias_names = ", ".join(sorted(aliases))
    compiled: list[_Compiled] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            errors.append(RuleError(rule.name, "duplicate rule name", 1, 1, "names must be unique"))
            continue
        seen.add(rule.name)
        try:
            tree = parse_query(rule.query)
            compiled.append(
                _Compiled(rule, _Compiler(rule, folded_aliases, alias_names).node(tree, "text"))
            )
        except RuleSyntaxError as e:
            errors.append(RuleError(rule.name, e.message, e.line, e.column, e.hint))
        except RuleError as e:
            errors.append(e)
    if errors:
        raise RuleErrors(errors)
    return RuleSet(tuple(rules), tuple(compiled))


# --- matching ------------------------------------------------------------------------------


class _Doc:
    """One item during one :meth:`RuleSet.match` call: lazily tokenized fields, shared caches."""

    def __init__(self, item: Item, feed_tags: Collection[str]) -> None:
        self.texts: dict[str, str] = {
            "title": item.title,
            "summary": item.summary,
            "content": item.content,
            "text": item.text,
            "author": item.author,
            "url": item.url or "",
        }
        self.sources: list[list[str]] = [words(item.feed)]
        self.sources += [["tag", *words(tag)] for tag in feed_tags]
        self._tokens: dict[str, list[Token]] = {}
        self._index: dict[str, dict[str, list[int]]] = {}
        self._vocab: dict[str, list[str]] = {}
        self._leaves: dict[tuple[_Seq | str, str], list[_Hit]] = {}

    def tokens(self, name: str) -> list[Token]:
        toks = self._tokens.get(name)
        if toks is None:
            toks = self._tokens[name] = tokenize(self.texts[name])
            index: dict[str, list[int]] = {}
            for i, tok in enumerate(toks):
                index.setdefault(tok.norm, []).append(i)
            self._index[name] = index
            self._vocab[name] = sorted(index)
        return toks

    def starts(self, name: str, word: str, prefix: bool) -> list[int]:
        """Positions in field ``name`` of tokens equal to ``word`` (or starting with it)."""
        self.tokens(name)
        index = self._index[name]
        if not prefix:
            return index.get(word, [])
        vocab = self._vocab[name]
        found: list[int] = []
        i = bisect.bisect_left(vocab, word)
        while i < len(vocab) and vocab[i].startswith(word):
            found += index[vocab[i]]
            i += 1
        return sorted(found)

    def seq_hits(self, seq: _Seq, name: str) -> list[_Hit]:
        key = (seq, name)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        if name == "source":
            hits: list[_Hit] = [(0, 0, ())] if any(_whole(seq, v) for v in self.sources) else []
        else:
            toks = self.tokens(name)
            n = len(seq.parts)
            hits = []
            word, prefix = seq.parts[0]
            for i in self.starts(name, word, prefix):
                if i + n <= len(toks) and all(
                    _fits(toks[i + k].norm, *seq.parts[k]) for k in range(1, n)
                ):
                    hits.append((i, i + n, ((toks[i].start, toks[i + n - 1].end),)))
        self._leaves[key] = hits
        return hits

    def regex_hits(self, regex: _Regex, name: str) -> list[_Hit]:
        key = (regex.pattern, name)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        toks = self.tokens(name)
        ends = [t.end for t in toks]
        hits: list[_Hit] = []
        for m in regex.compiled.finditer(self.texts[name]):
            start, end = m.start(), m.end()
            first = bisect.bisect_right(ends, start)  # first token ending after the match start
            last = first
            while last < len(toks) and toks[last].start < end:
                last += 1
            if last > first:  # the match overlaps at least one word
                hits.append((first, last, ((start, end),)))
        self._leaves[key] = hits
        return hits


def _fits(token: str, word: str, prefix: bool) -> bool:
    return token.startswith(word) if prefix else token == word


def _whole(seq: _Seq, value: list[str]) -> bool:
    return len(value) == len(seq.parts) and all(
        _fits(v, *part) for v, part in zip(value, seq.parts, strict=True)
    )


def _hits(node: _Node, name: str, doc: _Doc) -> list[_Hit]:
    if isinstance(node, _Seq):
        return doc.seq_hits(node, name)
    if isinstance(node, _Regex):
        return doc.regex_hits(node, name)
    if isinstance(node, _Or):
        merged: list[_Hit] = []
        for item in node.items:
            merged += _hits(item, name, doc)
        return merged
    assert isinstance(node, _Near), node  # the parser admits nothing else under NEAR
    found: list[_Hit] = []
    rights = _hits(node.right, name, doc)
    for a in _hits(node.left, name, doc) if rights else ():
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


def _truth(node: _Node, scope: tuple[str, ...], doc: _Doc) -> bool:
    if isinstance(node, _POSITIONAL):
        return any(_hits(node, name, doc) for name in scope)
    if isinstance(node, _And):
        return all(_truth(item, scope, doc) for item in node.items)
    if isinstance(node, _Not):
        return not _truth(node.item, scope, doc)
    assert isinstance(node, _Scope), node
    return _truth(node.item, node.fields, doc)


def _evidence(
    node: _Node, scope: tuple[str, ...], doc: _Doc, out: dict[str, list[tuple[int, int]]]
) -> None:
    """Collect the character spans of every positive hit of a matching ``node`` into ``out``."""
    if isinstance(node, _POSITIONAL):
        for name in scope:
            hits = _hits(node, name, doc)
            if hits:
                spans = out.setdefault(name, [])
                for hit in hits:
                    spans += hit[2]
    elif isinstance(node, _And):
        for item in node.items:
            _evidence(item, scope, doc, out)
    elif isinstance(node, _Scope):
        _evidence(node.item, node.fields, doc, out)
    # _Not: what is absent is no evidence.


def _snippet(text: str, spans: list[tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A passage of ``text`` around the first span, white space collapsed, and the spans in it."""
    first = min(s for s, _ in spans) if spans else 0
    lo, hi = 0, len(text)
    if len(text) > SNIPPET_CHARS:
        # A third of the window before the hit: the sentence start usually lies there.
        lo = max(0, first - SNIPPET_CHARS // 3)
        hi = min(len(text), lo + SNIPPET_CHARS)
        lo = max(0, hi - SNIPPET_CHARS)
        if lo > 0:
            cut = _find_space(text, lo, min(first, lo + _BOUNDARY_SLACK), forward=True)
            lo = cut if cut is not None else lo
        if hi < len(text):
            floor = max(first + 1, hi - _BOUNDARY_SLACK)
            cut = _find_space(text, floor, hi, forward=False)
            hi = cut if cut is not None else hi
    out: list[str] = []
    where: dict[int, int] = {}  # original index -> index in `out`
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


def _find_space(text: str, lo: int, hi: int, *, forward: bool) -> int | None:
    """An index in [lo, hi] next to white space: after it going forward, at it going back."""
    steps = range(lo, hi + 1) if forward else range(hi, lo - 1, -1)
    for i in steps:
        if 0 < i <= len(text) and text[i - 1].isspace():
            return i if forward else i - 1
    return None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """All rules, compiled. Build it with :func:`compile_rules`."""

    rules: tuple[Rule, ...]
    _compiled: tuple[_Compiled, ...] = field(repr=False)

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]:
        """One :class:`Match` per enabled rule that admits the item's feed and matches it.

        A rule's ``feeds`` admits the item when empty, when it names ``item.feed``, or when it
        holds ``tag:x`` with ``x`` in ``feed_tags``. Matches come in rule order.
        """
        doc = _Doc(item, feed_tags)
        matches: list[Match] = []
        for c in self._compiled:
            if not c.rule.enabled or not _admits(c.rule, item.feed, feed_tags):
                continue
            if not _truth(c.tree, _SCOPES["text"], doc):
                continue
            found: dict[str, list[tuple[int, int]]] = {}
            _evidence(c.tree, _SCOPES["text"], doc, found)
            shown = next((f for f in _TEXT_FIELDS if found.get(f)), None)
            if shown is None:  # only source: evidence; show the title for context
                snippet, highlights = _snippet(item.title, [])
            else:
                snippet, highlights = _snippet(doc.texts[shown], found[shown])
            fields = tuple(f for f in _FIELD_ORDER if f in found)
            matches.append(Match(c.rule.name, snippet, highlights, fields))
        return matches


def _admits(rule: Rule, feed: str, feed_tags: Collection[str]) -> bool:
    if not rule.feeds:
        return True
    return any(f == feed or (f.startswith("tag:") and f[4:] in feed_tags) for f in rule.feeds)
