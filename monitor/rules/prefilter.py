"""One index over every rule's literal words: which rules can possibly match an item.

Internal to :mod:`monitor.rules`. Each rule is reduced to a conservative necessary condition in
conjunctive form: a list of *groups*, each a set of literals (a folded word, or a prefix), such
that the rule cannot match an item unless every group has a literal among the item's words. For
``@IRAN AND (treaty OR pact) AND ratif*`` the groups are ``{iran, iranian, tehran, islamic,
ایران}``, ``{treaty, pact}`` and ``{ratif*}``; a phrase requires each of its words. A regex or a
NOT adds no group (``source:`` words count: the item's feed name and tags are among its words);
a rule left with no group at all (a lone regex) is evaluated for every item.

:meth:`Prefilter.candidates` works on the item's *distinct* words with set operations in C: one
intersection with a table of every word known to satisfy some group (a rule's exact words, and
the item words seen so far that start with one of its prefixes), one difference with the words
already checked against the prefixes. Only words never seen before are checked in Python, one
look-up in a table of prefix buckets keyed by their first :data:`_KEY` letters. It counts the
groups each rule has satisfied and returns the rules with all of theirs: the cost grows with the
item's vocabulary and the number of literal hits, not with the number of rules. The rules
returned are then evaluated in full, so results never change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from typing import Final, TypeAlias

from monitor.rules.compiled import AllOf, AnyOf, CNode, Either, Near, Negated, Pattern, Scope, Seq

__all__ = ["Prefilter", "requirements"]

Literal: TypeAlias = tuple[str, bool]  # (folded word, is a prefix)
Group: TypeAlias = frozenset[Literal]

# Prefix buckets are keyed by a prefix's first characters. Three keeps buckets small (a bucket
# holds the prefixes sharing those letters) while one slice and one dict look-up per distinct
# word suffice; shorter prefixes (`un*`) get their own keys and one more look-up per word.
_KEY: Final = 3
# Words remembered as checked against the prefixes, per rule set, before the memo starts over:
# a news stream's working vocabulary (tens of thousands of words) fits, a few MB at most.
_SEEN_WORDS: Final = 1 << 16


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


class _Seen:
    """The words checked so far against the prefixes, and the ones among them that fire."""

    def __init__(self, exact: dict[str, tuple[int, ...]]) -> None:
        self.words: set[str] = set()
        # word -> every group id it satisfies; starts as the exact words and grows (never
        # shrinks: a new _Seen replaces it) with checked words that fire a prefix.
        self.fires: dict[str, tuple[int, ...]] = dict(exact)


class Prefilter:
    """Built once per rule set; :meth:`candidates` is safe to call from any thread.

    Its answers depend on its arguments only. It remembers which words it has checked against
    the prefixes (bounded by :data:`_SEEN_WORDS`); threads share that memo, and a call keeps the
    memo object it started with, so a concurrent reset never hides a word from it.
    """

    def __init__(self, trees: Sequence[CNode | None]) -> None:
        """``trees[i]`` is rule i's compiled tree, or None for a rule that never matches."""
        always: list[int] = []
        self._need: dict[int, int] = {}  # rule -> number of groups it needs
        self._group_rule: list[int] = []  # group id -> rule
        exact: dict[str, list[int]] = {}  # word -> group ids
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
                        exact.setdefault(word, []).append(gid)
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
        self._exact = {word: tuple(ids) for word, ids in exact.items()}
        self._seen = _Seen(self._exact)

    def _prefix_groups(self, word: str) -> list[int]:
        found: list[int] = []
        prefix = self._prefix
        for n in self._key_lengths:
            for known, ids in prefix.get(word[:n], ()):
                if word.startswith(known):
                    found += ids
        return found

    def candidates(self, vocabulary: AbstractSet[str]) -> list[int]:
        """The rules (indexes, ascending) that may match an item with these distinct words."""
        seen = self._seen
        if self._prefix:
            if len(seen.words) > _SEEN_WORDS:
                seen = self._seen = _Seen(self._exact)
            new = vocabulary - seen.words
            for word in new:
                ids = self._prefix_groups(word)
                if ids:
                    seen.fires[word] = self._exact.get(word, ()) + tuple(ids)
            seen.words |= new  # after `fires`: a word in `words` has its entry there
        fires = seen.fires
        fired = set(chain.from_iterable(map(fires.__getitem__, fires.keys() & vocabulary)))
        counts = Counter(map(self._group_rule.__getitem__, fired))
        # (rule, groups satisfied) pairs equal to (rule, groups needed): a set operation in C.
        found = [rule for rule, _ in counts.items() & self._need.items()]
        if self.always:
            found += self.always
        found.sort()
        return found
