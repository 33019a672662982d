"""Why a rule did or did not match an item: every clause, satisfied or not, with its evidence.

:meth:`RuleSet.explain <monitor.rules.engine.RuleSet.explain>` builds an :class:`Explanation`;
:func:`format_explanation` prints it as indented lines for the command line::

    rule iran-treaty: no match
    ✗ AND
      ✓ @IRAN  (title: "Iran")
      ✓ OR
        ✓ Russia  (title: "Russia")
        ✗ Moscow  (no word "moscow")
      ✗ ratif*  (no word starting with "ratif")

The tree follows the query as written (aliases by name, phrases quoted) and is evaluated with the
same code as matching, so ``explanation.matched`` is exactly whether ``match()`` reports the
rule. Pure; the values are immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from monitor.rules import syntax
from monitor.rules.compiled import (
    SCOPES,
    AllOf,
    AnyOf,
    CNode,
    Compiled,
    Either,
    Near,
    Negated,
    Pattern,
    Scope,
    Seq,
)
from monitor.rules.doc import Doc, Hit, hits, truth, whole

__all__ = ["Clause", "Evidence", "Explanation", "explain_rule", "format_explanation"]

# Surfaces shown per field on one line; the rest are counted. Three keep a line readable.
_SHOWN: Final = 3
_SURFACE_CHARS: Final = 60


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a clause held in one field."""

    field: str  # item field: title, summary, content, text, author, url; or source
    spans: tuple[tuple[int, int], ...]  # [start, end) characters in the field; () for source
    surfaces: tuple[str, ...]  # the text of each span; for source, the feed name or tag:x


@dataclass(frozen=True, slots=True)
class Clause:
    """One node of the query, evaluated against the item."""

    label: str  # the node as query text: AND, OR, NOT, NEAR/5, title:, ratif*, "a b", @IRAN
    satisfied: bool
    evidence: tuple[Evidence, ...] = ()  # positive hits (words, phrases, regexes, NEARs)
    note: str = ""  # why it failed; for a NOT that failed, what it found
    children: tuple[Clause, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """A rule against one item: its switches, its feeds filter, and its clause tree."""

    rule: str
    query: str
    feed: str  # the item's feed
    enabled: bool
    admitted: bool  # the rule's feeds filter lets the item's feed through
    feeds: tuple[str, ...]  # the rule's feeds filter; empty: every feed
    tree: Clause

    @property
    def matched(self) -> bool:
        """Exactly whether :meth:`RuleSet.match` reports this rule for the item."""
        return self.enabled and self.admitted and self.tree.satisfied


def explain_rule(compiled: Compiled, doc: Doc, admitted: bool) -> Explanation:
    rule = compiled.rule
    tree = _Explainer(doc).clause(compiled.ast, compiled.tree, SCOPES["text"], "text")
    return Explanation(
        rule.name, rule.query, doc.feed, rule.enabled, admitted, tuple(rule.feeds), tree
    )


class _Explainer:
    def __init__(self, doc: Doc) -> None:
        self.doc = doc

    def clause(self, ast: syntax.Node, node: CNode, fields: tuple[str, ...], scope: str) -> Clause:
        if isinstance(ast, syntax.Term | syntax.Phrase | syntax.Alias | syntax.Regex):
            return self.leaf(ast, node, fields, scope)
        if isinstance(ast, syntax.And | syntax.Or):
            assert isinstance(node, AllOf | AnyOf | Either), node
            kids = tuple(
                self.clause(a, n, fields, scope) for a, n in zip(ast.items, node.items, strict=True)
            )
            if isinstance(ast, syntax.And):
                return Clause("AND", all(k.satisfied for k in kids), children=kids)
            return Clause("OR", any(k.satisfied for k in kids), children=kids)
        if isinstance(ast, syntax.Not):
            assert isinstance(node, Negated), node
            kid = self.clause(ast.item, node.item, fields, scope)
            note = "found: the item is excluded" if kid.satisfied else ""
            return Clause("NOT", not kid.satisfied, note=note, children=(kid,))
        if isinstance(ast, syntax.Near):
            assert isinstance(node, Near), node
            return self.near(ast, node, fields, scope)
        assert isinstance(node, Scope), node
        kid = self.clause(ast.item, node.item, node.fields, ast.name)
        return Clause(f"{ast.name}:", kid.satisfied, children=(kid,))

    def near(self, ast: syntax.Near, node: Near, fields: tuple[str, ...], scope: str) -> Clause:
        sides = (
            self.clause(ast.left, node.left, fields, scope),
            self.clause(ast.right, node.right, fields, scope),
        )
        found = self.evidence(node, fields)
        label = ("ONEAR" if ast.ordered else "NEAR") + f"/{ast.distance}"
        note = ""
        if not found:
            if all(s.satisfied for s in sides):
                order = " and after it" if ast.ordered else ""
                note = f"both found, never within {ast.distance} words{order}{_where(scope)}"
            else:
                note = "a side is missing"
        return Clause(label, bool(found), found, note, sides)

    def leaf(self, ast: syntax.Node, node: CNode, fields: tuple[str, ...], scope: str) -> Clause:
        label = syntax.to_query(ast)
        ok = truth(node, fields, self.doc)
        found = self.evidence(node, fields) if ok else ()
        if ok:
            return Clause(label, True, found)
        if isinstance(ast, syntax.Term) and isinstance(node, Seq) and len(node.parts) == 1:
            word, prefix = node.parts[0]
            what = f'no word starting with "{word}"' if prefix else f'no word "{word}"'
        elif isinstance(ast, syntax.Alias):
            what = f"no term of @{ast.name}"
        elif isinstance(ast, syntax.Regex):
            what = "no match"
        else:
            assert isinstance(node, Seq), node
            shown = " ".join(w + ("*" if p else "") for w, p in node.parts)
            what = f'no phrase "{shown}"'
        return Clause(label, False, note=what + _where(scope))

    def evidence(self, node: CNode, fields: tuple[str, ...]) -> tuple[Evidence, ...]:
        doc = self.doc
        out: list[Evidence] = []
        for name in fields:
            if name == "source":
                values = tuple(
                    value
                    for value, value_words in zip(doc.source_values, doc.sources, strict=True)
                    if any(whole(seq, value_words) for seq in _seqs(node))
                )
                if values:
                    out.append(Evidence("source", (), values))
                continue
            found: list[Hit] = hits(node, name, doc)
            if not found:
                continue
            spans = sorted(set(doc.char_spans(name, (a for h in found for a in h[2]))))
            text = doc.texts[name]
            out.append(Evidence(name, tuple(spans), tuple(text[s:e] for s, e in spans)))
        return tuple(out)


def _seqs(node: CNode) -> list[Seq]:
    if isinstance(node, Seq):
        return [node]
    if isinstance(node, AnyOf):
        return [s for item in node.items for s in _seqs(item)]
    assert not isinstance(node, Pattern), node  # the compiler refuses regexes under source:
    return []


def _where(scope: str) -> str:
    return "" if scope == "text" else f" in {scope}"


def _surface(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _SURFACE_CHARS:
        text = text[: _SURFACE_CHARS - 1] + "…"
    return '"' + text + '"'


def _describe(evidence: tuple[Evidence, ...]) -> str:
    parts = []
    for ev in evidence:
        shown = ", ".join(_surface(s) for s in ev.surfaces[:_SHOWN])
        more = len(ev.surfaces) - _SHOWN
        parts.append(f"{ev.field}: {shown}" + (f" +{more} more" if more > 0 else ""))
    return "; ".join(parts)


def _lines(clause: Clause, depth: int, out: list[str]) -> None:
    mark = "✓" if clause.satisfied else "✗"
    detail = _describe(clause.evidence) if clause.evidence else clause.note
    out.append("  " * depth + f"{mark} {clause.label}" + (f"  ({detail})" if detail else ""))
    for child in clause.children:
        _lines(child, depth + 1, out)


def format_explanation(expl: Explanation) -> str:
    """Plain text: a header line, then one line per clause, two spaces per level."""
    if expl.matched:
        verdict = "matches"
    elif not expl.enabled:
        verdict = "no match: the rule is disabled"
        if expl.tree.satisfied:
            verdict += " (its query matches)"
    elif not expl.admitted:
        verdict = (
            f'no match: its feeds filter ({", ".join(expl.feeds)}) excludes feed "{expl.feed}"'
        )
        if expl.tree.satisfied:
            verdict += " (its query matches)"
    else:
        verdict = "no match"
    out = [f"rule {expl.rule}: {verdict}"]
    _lines(expl.tree, 0, out)
    return "\n".join(out)
