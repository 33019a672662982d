"""Compile every watch rule once; match items against all of them, with evidence; explain.

:func:`compile_rules` parses each query (:mod:`monitor.rules.syntax`), resolves ``@ALIAS``es and
folds every word with :mod:`monitor.rules.text` (:mod:`monitor.rules.compiled`), so matching
compares folded words only. It reports every broken rule at once in :class:`RuleErrors`, and
builds one :class:`~monitor.rules.prefilter.Prefilter` over all rules' literal words.

:meth:`RuleSet.match` folds each field of the item once, asks the prefilter which rules can
possibly match (a look-up per distinct word of the item, whatever the number of rules), and
evaluates only those, sharing every leaf result (word, prefix, phrase, regex) between them
(:mod:`monitor.rules.doc`). It returns one :class:`~monitor.model.Match` per matching rule; the
prefilter never changes the result, only the work. :meth:`RuleSet.explain` says why one rule
did or did not match (:mod:`monitor.rules.explain`). Pure: no I/O, no clock; a ``RuleSet`` is
immutable and safe to share between threads.

Fields and scopes: the default scope (``text:``) is the item's title, summary, content and article
text; ``title:``, ``summary:``, ``url:`` and ``author:`` are one field each; ``source:`` compares
whole values with the feed's name or, as ``source:tag:x``, with one of its tags. A phrase or a NEAR
never spans two fields. A regex runs case-insensitively over a field's original text and counts as
a hit on the words it overlaps.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from monitor.model import Item, Match, Rule
from monitor.rules.compiled import SCOPES, Compiled, Compiler, RuleError
from monitor.rules.doc import TEXT_FIELDS, Doc, Hit, evidence, truth
from monitor.rules.explain import Explanation, explain_rule
from monitor.rules.prefilter import Prefilter
from monitor.rules.syntax import Node, RuleSyntaxError, parse_query

__all__ = ["RuleError", "RuleErrors", "RuleSet", "RuleSource", "admits", "compile_rules"]

# About three lines of an alert: enough context to judge a hit without opening the article.
SNIPPET_CHARS: Final = 240
# How far a snippet edge may move to land on a word boundary before it cuts mid-word.
_BOUNDARY_SLACK: Final = 30

_FIELD_ORDER: Final = (*TEXT_FIELDS, "source")


# The arguments of `compile_rules`, in a form that pickles: rules, aliases, prefilter, parsed.
RuleSource = tuple[
    tuple[Rule, ...], tuple[tuple[str, tuple[str, ...]], ...], bool, tuple[Node, ...]
]


class RuleErrors(ValueError):
    """Every broken rule of one :func:`compile_rules` call, in rule order."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def compile_rules(
    rules: Sequence[Rule],
    aliases: Mapping[str, Sequence[str]],
    *,
    prefilter: bool = True,
    parsed: Sequence[Node] | None = None,
) -> RuleSet:
    """Compile ``rules`` once; raise :class:`RuleErrors` listing every broken rule.

    Alias names are case-insensitive. An alias term may hold several words (a phrase) and end
    with ``*`` (a prefix). Disabled rules are compiled too, so their errors show in ``check``.
    ``prefilter=False`` evaluates every rule on every item: the same results, slower; it exists
    for tests and benchmarks that compare the two. `parsed`: each rule's query as
    ``parse_query`` returned it, in order (``RuleSet.source`` holds them: a worker process
    compiles a set it is sent without parsing again, which is most of the cost).
    """
    folded_aliases = {name.casefold(): list(terms) for name, terms in aliases.items()}
    alias_names = ", ".join(sorted(aliases))
    compiled: list[Compiled] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for n, rule in enumerate(rules):
        if rule.name in seen:
            errors.append(RuleError(rule.name, "duplicate rule name", 1, 1, "names must be unique"))
            continue
        seen.add(rule.name)
        try:
            ast = parse_query(rule.query) if parsed is None else parsed[n]
            tree = Compiler(rule, folded_aliases, alias_names).node(ast, "text")
            compiled.append(Compiled(rule, ast, tree))
        except RuleSyntaxError as e:
            errors.append(RuleError(rule.name, e.message, e.line, e.column, e.hint))
        except RuleError as e:
            errors.append(e)
    if errors:
        raise RuleErrors(errors)
    index = Prefilter([c.tree if c.rule.enabled else None for c in compiled]) if prefilter else None
    terms = tuple((name, tuple(t)) for name, t in aliases.items())
    source = (tuple(rules), terms, prefilter, tuple(c.ast for c in compiled))
    return RuleSet(tuple(rules), tuple(compiled), index, source, uuid.uuid4().hex)


# --- matching ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleSet:
    """All rules, compiled. Build it with :func:`compile_rules`."""

    rules: tuple[Rule, ...]
    _compiled: tuple[Compiled, ...] = field(repr=False)
    _prefilter: Prefilter | None = field(default=None, repr=False, compare=False)
    # What `compile_rules` was given (rules, aliases, prefilter), and a key unique to this
    # compilation: a worker process compiles the same set once and keeps it by that key
    # (monitor.prepare), instead of receiving the compiled set with every task.
    source: RuleSource = field(default=((), (), True, ()), repr=False, compare=False)
    key: str = field(default="", repr=False, compare=False)

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]:
        """One :class:`Match` per enabled rule that admits the item's feed and matches it.

        A rule's ``feeds`` admits the item when empty, when it names ``item.feed``, or when it
        holds ``tag:x`` with ``x`` in ``feed_tags``. Matches come in rule order.
        """
        doc = Doc(item, feed_tags)
        if self._prefilter is None:
            todo: Sequence[int] = range(len(self._compiled))
        else:
            todo = self._prefilter.candidates(doc.vocabulary())
        matches: list[Match] = []
        for i in todo:
            c = self._compiled[i]
            if not c.rule.enabled or not admits(c.rule, item.feed, feed_tags):
                continue
            if truth(c.tree, SCOPES["text"], doc):
                matches.append(_match(c, doc))
        return matches

    def explain(
        self, item: Item, rule_name: str, *, feed_tags: Collection[str] = ()
    ) -> Explanation:
        """Every clause of rule ``rule_name`` evaluated against ``item``, with its evidence.

        Also says whether the rule is disabled and whether its feeds filter admits the item.
        Raises ``KeyError`` for a rule name the set does not hold.
        """
        for c in self._compiled:
            if c.rule.name == rule_name:
                doc = Doc(item, feed_tags)
                return explain_rule(c, doc, admits(c.rule, item.feed, feed_tags))
        raise KeyError(rule_name)


def _match(c: Compiled, doc: Doc) -> Match:
    found: dict[str, list[Hit]] = {}
    evidence(c.tree, SCOPES["text"], doc, found)
    spans = {
        f: _merged(doc.char_spans(f, (a for hit in found[f] for a in hit[2])))
        for f in TEXT_FIELDS
        if found.get(f)
    }
    shown = next(iter(spans), None)  # the first text field with evidence (TEXT_FIELDS order)
    if shown is None:  # only source: evidence; show the title for context
        snippet, highlights = _snippet(doc.texts["title"], [])
    else:
        snippet, highlights = _snippet(doc.texts[shown], spans[shown])
    fields = tuple(f for f in _FIELD_ORDER if f in found)
    evidence_spans = tuple((f, s, e) for f in fields for s, e in spans.get(f, ()))
    return Match(c.rule.name, snippet, highlights, fields, evidence_spans)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` sorted, overlapping and touching ones joined."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def admits(rule: Rule, feed: str, feed_tags: Collection[str]) -> bool:
    """Whether ``rule``'s ``feeds`` lets it see items of ``feed`` (tagged ``feed_tags``)."""
    if not rule.feeds:
        return True
    return any(f == feed or (f.startswith("tag:") and f[4:] in feed_tags) for f in rule.feeds)


def _window(text: str, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The [lo, hi) passage of ``text`` a snippet shows: the first span, with context."""
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
    return lo, hi


def _snippet(text: str, spans: list[tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A passage of ``text`` around the first span, white space collapsed, and the spans in it."""
    lo, hi = _window(text, spans)
    window = text[lo:hi]
    body = " ".join(window.split())  # white space collapsed, none at either end
    lead = "…" if lo > 0 else ""
    tail = "…" if hi < len(text) else ""
    where = _Collapsed(window)
    marks = [
        (where.index(s - lo) + len(lead), where.index(e - 1 - lo) + 1 + len(lead))
        for s, e in spans
        if lo <= s < e <= hi
    ]
    return lead + body + tail, tuple(_merged(marks))


class _Collapsed:
    """Where each character of ``window`` lands once its white space is collapsed, as
    ``" ".join(window.split())`` does: a run inside the text becomes one space, and a run at
    the start vanishes (its characters land at -1). Only runs that lose characters are kept,
    so for ordinary text this is no work at all."""

    def __init__(self, window: str) -> None:
        self.runs = [(m.start(), m.end()) for m in _LOSSY_SPACE.finditer(window)]

    def index(self, i: int) -> int:
        removed = 0
        for start, end in self.runs:
            if i < start:
                break
            kept = 1 if start else 0
            if i < end:  # white space inside the run: where its one space landed
                return start - removed if kept else -1
            removed += end - start - kept
        return i - removed


# White space that collapsing shortens: a run of two or more, or any run at the start.
_LOSSY_SPACE: Final = re.compile(r"\A\s+|\s{2,}")


def _find_space(text: str, lo: int, hi: int, *, forward: bool) -> int | None:
    """An index in [lo, hi] next to white space: after it going forward, at it going back."""
    steps = range(lo, hi + 1) if forward else range(hi, lo - 1, -1)
    for i in steps:
        if 0 < i <= len(text) and text[i - 1].isspace():
            return i if forward else i - 1
    return None
