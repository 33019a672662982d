"""The CPU work on a parsed document that runs in the worker processes, off the event loop.

    parse (worker) | stored hashes (store) | prepare (worker): fingerprints + rule matches
                   | ingest: known, decide (with the matches made here), apply

`prepare` computes the story keys of a document's items (`pipeline.fingerprints`) and
matches the rules against each item that may be new or rewritten: about 0.2 ms an item each
with 1,000 rules, which on the event loop would hold up every fetch and every other feed's
ingest. Items the feed stored already with the same text (their content hash is the stored
one) are neither signed nor matched: `decide` only counts them. Nor are baseline items (a
first poll's old or undated ones): they are stored, never alerted.

The compiled rules stay in each worker, by `RuleSet.key`. Every task carries the set's source
(`rules_blob`: rules, aliases and parsed queries, pickled and compressed once per rule set,
~40 KB for 1,000 rules), and a worker that does not hold that key yet compiles it from there
(about 0.05 s for 1,000 rules: the parsing is done). A task never waits for a separate load,
and the source is pickled once, not with each task.
"""

from __future__ import annotations

import gc
import pickle
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.model import DedupePolicy, Item, Match
from monitor.parse import ParsedFeed, parse_feed
from monitor.pipeline import Fingerprint, fingerprints, is_baseline
from monitor.rules import RuleSet, compile_rules
from monitor.rules.engine import RuleSource

# Rule sets a worker keeps compiled, newest last: the current one and the one before a
# reload, whose polls may still be in flight.
_KEEP = 2
_loaded: dict[str, RuleSet] = {}


@dataclass(frozen=True, slots=True)
class MatchJob:
    """Which rules to match a document's items with, and which items are baseline."""

    key: str  # RuleSet.key
    source: bytes  # rules_blob(): compiled by a worker that does not hold `key` yet
    tags: tuple[str, ...]  # the feed's tags, for rules' `feeds: [tag:x]`
    first_poll: bool
    now: datetime
    backlog_window: timedelta


@dataclass(frozen=True, slots=True)
class Prepared:
    """What `prepare` made of one document."""

    prints: tuple[Fingerprint, ...]
    matches: dict[str, list[Match]]  # by GUID, for each item that may be new or rewritten
    match_seconds: float  # CPU time of the rule matching


def prepare(
    items: Sequence[Item], policy: DedupePolicy, stored: Mapping[str, str], job: MatchJob
) -> Prepared:
    """Fingerprints of `items` and the rule matches of those not `stored` unchanged.

    `stored`: content hash by GUID of what the feed stored already.
    """
    rules = _rules(job)
    prints = fingerprints(items, policy, stored=stored)
    started = time.process_time()
    matches: dict[str, list[Match]] = {}
    done: set[str] = set()
    for item, fp in zip(items, prints, strict=True):
        if item.guid in done:
            continue  # a repeated GUID: `decide` keeps its first copy only
        done.add(item.guid)
        if stored.get(item.guid) == fp.content_hash:
            continue  # unchanged: `decide` only counts it
        if is_baseline(item, job.first_poll, job.now, job.backlog_window):
            continue
        matches[item.guid] = rules.match(item, feed_tags=job.tags)
    return Prepared(prints, matches, time.process_time() - started)


def parse_and_prepare(
    body: bytes,
    feed: str,
    url: str,
    headers: Mapping[str, str],
    policy: DedupePolicy,
    stored: Mapping[str, str],
    job: MatchJob,
) -> tuple[ParsedFeed, Prepared]:
    """`parse_feed`, then `prepare` of its items, in one task: a feed without `full_text`
    needs nothing between the two, and the items cross no process boundary in between.

    `stored`: a hint, the content hashes of the feed's latest listing (`Store.listed_hashes`);
    an item it lists with the item's own hash is left unsigned and unmatched, and the ingest
    signs it again if the store disagrees (`ParsedPoll.checked`)."""
    parsed = parse_feed(body, feed=feed, url=url, headers=headers)
    return parsed, prepare(parsed.items, policy, stored, job)


def rules_blob(rules: RuleSet) -> bytes:
    """What a task carries of `rules` (`MatchJob.source`); compute once per rule set."""
    return zlib.compress(pickle.dumps(rules.source, protocol=pickle.HIGHEST_PROTOCOL))


def load(key: str, blob: bytes) -> None:
    """Compile the rule set `key` from `blob` (`rules_blob`) in this worker now, ahead of the
    polls that name it (`newsmon run` sends it to each worker at start and after a reload)."""
    _compiled(key, blob)


def _rules(job: MatchJob) -> RuleSet:
    return _compiled(job.key, job.source)


def _compiled(key: str, blob: bytes) -> RuleSet:
    rules = _loaded.pop(key, None)
    if rules is not None:
        _loaded[key] = rules  # the most recently used last: the other one goes first
        return rules
    source: RuleSource = pickle.loads(zlib.decompress(blob))
    given, aliases, prefilter, parsed = source
    rules = compile_rules(given, dict(aliases), prefilter=prefilter, parsed=parsed)
    _loaded[key] = rules
    while len(_loaded) > _KEEP:
        del _loaded[next(iter(_loaded))]
    # The compiled rules live as long as the worker: out of the cyclic collector's sight, which
    # otherwise walks them at every collection of the oldest generation.
    gc.collect()
    gc.freeze()
    return rules
