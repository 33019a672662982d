"""One index over every rule's literal words: which rules can possibly match an item.

Internal to :mod:`monitor.rules`. Each rule is reduced to a conservative necessary condition in
conjunctive form: a list of *groups*, each a set of literals (a folded word, or a prefix), such
that the rule cannot match an item unless every group has a literal among the item's words. For
``@IRAN AND (treaty OR pact) AND ratif*`` the groups are ``{iran, iranian, tehran, islamic,
ایران}``, ``{treaty, pact}`` and ``{ratif*}``; a phrase requires each of its words. A regex or a
NOT adds no group (``source:`` words count: the item's feed name and tags are among its words);
a rule left with no group at all (a lone regex) is evaluated for every item.

:meth:`Prefilter.candidates` intersects the item's *distinct* words with the exact words of all
rules, and their first :data:`_KEY` letters with the keys of a table of prefix buckets (set
operations in C), then checks only the words that opened a bucket. It counts the
groups each rule has satisfied and returns the rules with all of
theirs: the cost grows with the item's vocabulary and the number of literal hits, not with the
number of rules. The rules returned are then evaluated in full, so results never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from operator import itemgetter
from typing import Final, TypeAlias

from monitor.rules.compiled import AllOf, AnyOf, CNode, Either, Near, Negated, Pattern, Scope, Seq

__all__ = ["Prefilter", "requirements"]

Literal: TypeAlias = tuple[str, bool]  # (folded word, is a prefix)
Group: TypeAlias = frozenset[Literal]

# Prefix buckets are keyed by a prefix's first characters. Three keeps buckets small (a bucket
# holds the prefixes sharing those letters) while one slice and one dict look-up per distinct
# word suffice; shorter prefixes (`un*`) get their own keys and one more look-up per word.
_KEY: Final = 3


def _cost(group: AbstractSet[Literal]) -> tuple[int, int]:
    """How often a group is likely to be satisfied by chance: lower is more selective."""
    loose = sum(1 for word, prefix in group if prefix and len(word) < 4)
    return (len(group) + loose, -min(len(word) for word, _ in group))


def requirements(node: CNode) -> list[Group]:
    """Groups of literals, each needed (one of its literals, at least) for ``node`` to hold.

    Field scopes are ignored (a word needed in the title is needed in the item), which keeps the
    condition necessary, if looser.
    """
    if isinstance(node, Seq):
        return [frozenset({part}) for part in node.parts]
    if isinstance(node, Pattern | Negated):
        return []
    if isinstance(node, AllOf):
        return [g for item in node.items for g in requirements(item)]
    if isinstance(node, Near):
        return requirements(node.left) + requirements(node.right)
    if isinstance(node, Scope):
        return requirements(node.item)
    assert isinstance(node, AnyOf | Either), node
    union: set[Literal] = set()
    for item in node.items:
        groups = requirements(item)
        if not groups:  # one alternative needs nothing: neither does the OR
            return []
        union |= min(groups, key=_cost)
    return [frozenset(union)]


def _reduced(groups: list[Group]) -> list[Group]:
    """Drop repeated groups and groups implied by a smaller one (a superset of another)."""
    unique = sorted(set(groups), key=len)
    kept: list[Group] = []
    for g in unique:
        if not any(k <= g for k in kept):
            kept.append(g)
    return kept


class Prefilter:
    """Built once per rule set; :meth:`candidates` is pure and safe to call from any thread."""

    def __init__(self, trees: Sequence[CNode | None]) -> None:
        """``trees[i]`` is rule i's compiled tree, or None for a rule that never matches."""
        always: list[int] = []
        self._need: dict[int, int] = {}  # rule -> number of groups it needs
        self._group_rule: list[int] = []  # group id -> rule
        self._exact: dict[str, list[int]] = {}  # word -> group ids
        self._prefix: dict[str, list[tuple[str, list[int]]]] = {}  # key -> [(prefix, ids)]
        key_lengths: set[int] = set()
        for rule, tree in enumerate(trees):
            if tree is None:
                continue
            groups = _reduced(requirements(tree))
            if not groups:
                always.append(rule)
                continue
            self._need[rule] = len(groups)
            for group in groups:
                gid = len(self._group_rule)
                self._group_rule.append(rule)
                for word, prefix in group:
                    if not prefix:
                        self._exact.setdefault(word, []).append(gid)
                        continue
                    key = word[:_KEY]
                    key_lengths.add(len(key))
                    bucket = self._prefix.setdefault(key, [])
                    for known, ids in bucket:
                        if known == word:
                            ids.append(gid)
                            break
                    else:
                        bucket.append((word, [gid]))
        self.always: Final = tuple(always)
        self._key_lengths = tuple(sorted(key_lengths))

    def candidates(self, vocabulary: AbstractSet[str]) -> list[int]:
        """The rules (indexes, ascending) that may match an item with these distinct words."""
        fired: set[int] = set()
        exact = self._exact
        for word in exact.keys() & vocabulary:
            fired.update(exact[word])
        prefix = self._prefix
        for n in self._key_lengths:
            # Set operations run in C: only words whose first n letters open a bucket are
            # looked at one by one.
            keys = set(map(itemgetter(slice(0, n)), vocabulary)) & prefix.keys()
            if not keys:
                continue
            for word in vocabulary:
                if word[:n] in keys:
                    for known, ids in prefix[word[:n]]:
                        if word.startswith(known):
                            fired.update(ids)
        counts: dict[int, int] = {}
        group_rule = self._group_rule
        for gid in fired:
            rule = group_rule[gid]
            counts[rule] = counts.get(rule, 0) + 1
        need = self._need
        found = [rule for rule, n in counts.items() if n == need[rule]]
        if self.always:
            found += self.always
        found.sort()
        return found
