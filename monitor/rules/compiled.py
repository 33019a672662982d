"""The compiled form of a rule: folded words, resolved aliases, compiled regexes.

Internal to :mod:`monitor.rules`. The tree mirrors the query's AST node for node (a term or a
phrase becomes a :class:`Seq`, an alias a :class:`Seq` or an :class:`AnyOf` of them, a field
scope a :class:`Scope` naming the item fields it searches), so the matcher, the prefilter and
``explain`` can walk the two side by side. Every value is immutable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import re2

from monitor.model import Rule
from monitor.rules import syntax
from monitor.rules.text import words

__all__ = [
    "POSITIONAL",
    "SCOPES",
    "AllOf",
    "AnyOf",
    "CNode",
    "Compiled",
    "Compiler",
    "Either",
    "Near",
    "Negated",
    "Pattern",
    "RuleError",
    "Scope",
    "Seq",
]

# The item fields each query scope searches; `text` (title, summary, content, article text) is
# the default scope.
SCOPES: Final[Mapping[str, tuple[str, ...]]] = {
    "text": ("title", "summary", "content", "text"),
    "title": ("title",),
    "summary": ("summary",),
    "url": ("url",),
    "author": ("author",),
    "source": ("source",),
}


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


@dataclass(frozen=True, slots=True)
class Seq:
    """Adjacent folded words; a word with ``True`` beside it is a prefix. One word: a term."""

    parts: tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A regular expression (RE2: linear time whatever the pattern and the text)."""

    pattern: str
    compiled: Any = field(compare=False, hash=False)  # re2 ships no types


@dataclass(frozen=True, slots=True)
class AnyOf:
    """An OR of positional nodes (words, phrases, regexes, NEARs): it has hits, NEAR can use it."""

    items: tuple[CNode, ...]


@dataclass(frozen=True, slots=True)
class Either:
    """An OR with an AND, a NOT or a field scope among its items: only true or false."""

    items: tuple[CNode, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[CNode, ...]


@dataclass(frozen=True, slots=True)
class Negated:
    item: CNode


@dataclass(frozen=True, slots=True)
class Near:
    left: CNode
    right: CNode
    distance: int
    ordered: bool


@dataclass(frozen=True, slots=True)
class Scope:
    fields: tuple[str, ...]
    item: CNode


CNode: TypeAlias = Seq | Pattern | AnyOf | Either | AllOf | Negated | Near | Scope
POSITIONAL: Final = (Seq, Pattern, AnyOf, Near)  # nodes with hits at word positions


@dataclass(frozen=True, slots=True)
class Compiled:
    """One rule: as configured, as parsed (for ``explain``), and compiled."""

    rule: Rule
    ast: syntax.Node
    tree: CNode


class Compiler:
    """Compiles one rule's AST; raises :class:`RuleError` at the first problem."""

    def __init__(self, rule: Rule, aliases: Mapping[str, Sequence[str]], alias_names: str) -> None:
        self.rule = rule
        self.aliases = aliases  # keyed by casefolded name
        self.alias_names = alias_names  # as the user wrote them, for error hints

    def fail(self, message: str, pos: tuple[int, int], hint: str | None = None) -> RuleError:
        return RuleError(self.rule.name, message, pos[0], pos[1], hint)

    def seq(self, raw_words: Sequence[str], pos: tuple[int, int], what: str) -> Seq:
        parts: list[tuple[str, bool]] = []
        for raw in raw_words:
            prefix = raw.endswith("*")
            body = raw[:-1] if prefix else raw
            folded = words(body)
            if not folded or "*" in body:
                raise self.fail(f"{what}: {raw!r} is not a word or a prefix", pos)
            parts += [(w, False) for w in folded[:-1]]
            parts.append((folded[-1], prefix))
        return Seq(tuple(parts))

    def node(self, node: syntax.Node, scope: str) -> CNode:
        if isinstance(node, syntax.Term):
            return self.seq([node.word + ("*" if node.prefix else "")], node.pos, "word")
        if isinstance(node, syntax.Phrase):
            return self.seq(node.words, node.pos, "phrase")
        if isinstance(node, syntax.Alias):
            return self.alias(node)
        if isinstance(node, syntax.Regex):
            return self.regex(node, scope)
        if isinstance(node, syntax.And):
            return AllOf(tuple(self.node(i, scope) for i in node.items))
        if isinstance(node, syntax.Or):
            items = tuple(self.node(i, scope) for i in node.items)
            if all(isinstance(i, POSITIONAL) for i in items):
                return AnyOf(items)
            return Either(items)
        if isinstance(node, syntax.Not):
            return Negated(self.node(node.item, scope))
        if isinstance(node, syntax.Near):
            if scope == "source":
                raise self.fail("NEAR inside source:", node.pos, "source: compares whole names")
            return Near(
                self.node(node.left, scope),
                self.node(node.right, scope),
                node.distance,
                node.ordered,
            )
        return Scope(SCOPES[node.name], self.node(node.item, node.name))

    def alias(self, node: syntax.Alias) -> CNode:
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
        return seqs[0] if len(seqs) == 1 else AnyOf(tuple(seqs))

    def regex(self, node: syntax.Regex, scope: str) -> Pattern:
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
        return Pattern(node.pattern, compiled)
