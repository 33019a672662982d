"""The CPU work done ahead of `decide`: monitor.prepare in a real worker process,
`pipeline.fingerprints` skipping unchanged items, `pipeline.Prematched`, and the per-band cap
of the near-duplicate lookup on a real store (SQLite, and PostgreSQL where it runs).

Real rules (`compile_rules`), real items and real fingerprints; the worker tests start a real
`WorkerPool`, which imports monitor.prepare in its worker as the daemon does.
"""

from __future__ import annotations

import random
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from monitor.dedupe import content_hash
from monitor.model import (
    Decision,
    DedupePolicy,
    Feed,
    FeedUpdate,
    Item,
    ItemRecord,
    Match,
    Rule,
)
from monitor.parse import parse_feed
from monitor.pipeline import Prematched, fingerprints
from monitor.prepare import MatchJob, Prepared, load, parse_and_prepare, prepare, rules_blob
from monitor.rules import RuleSet, compile_rules
from monitor.store import Store
from monitor.store.corpus import MAX_PER_BAND
from monitor.workers import WorkerPool
from tests.test_ingest_batch import EVIN  # the same wire story

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
BACKLOG = timedelta(days=1)
POLICY = DedupePolicy()
RULES = compile_rules(
    [
        Rule("evin", '"evin prison"'),
        Rule("treaty", "treaty AND ratif*"),
        Rule("harbour", "harbour", feeds=("tag:maritime",)),
    ],
    {},
)

TREATY = (
    "Parliament ratified the border treaty on Tuesday by a wide margin after three days of "
    "debate, ending a dispute over fishing rights and river crossings that had lasted more "
    "than a decade. The opposition abstained, saying the text gave away too much, while the "
    "foreign minister called the vote a turning point for trade in the whole region."
)
HARBOUR = (
    "Dock workers at the city harbour walked out at dawn over a new shift system, leaving "
    "container ships waiting at anchor in the bay and trucks queued along the coast road. "
    "The port authority said talks would resume on Thursday and that perishable cargo was "
    "being moved to a second terminal, while the union warned of a longer strike next month."
)
WORDS = (
    "parliament minister court market river border council harvest strike bridge "
    "election budget railway drought hospital school festival museum factory port"
).split()


def filler(seed: int, words: int = 60) -> str:
    """A text of `words` words that no rule of RULES matches."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(words)) + "."


def item(guid: str, title: str, body: str, *, published: datetime | None = NOW) -> Item:
    return Item("wire", guid, f"https://wire.example/{guid}", title, body, published=published)


def job(rules: RuleSet, *, tags: tuple[str, ...] = (), first_poll: bool = False) -> MatchJob:
    return MatchJob(rules.key, rules_blob(rules), tags, first_poll, NOW, BACKLOG)


def stored_hash(it: Item) -> str:
    """The content hash the store holds for `it` (of its title and body: text, content or
    summary, the first that is not empty)."""
    return content_hash(it.title, it.text or it.content or it.summary)


def a_day() -> list[Item]:
    """Four items of one document: each body in a different field, one tagged-only match."""
    return [
        item("evin", "Fire at Evin prison", EVIN),
        Item("wire", "treaty", None, "Treaty vote", "Parliament votes.", content=TREATY),
        Item("wire", "harbour", None, "Strike", "Port strike.", text=HARBOUR),
        item("calendar", "Today", filler(1)),
    ]


# --- prepare, in process --------------------------------------------------------------------


def test_new_items_are_signed_and_matched_as_the_rule_set_matches_them() -> None:
    items = a_day()
    done = prepare(items, POLICY, {}, job(RULES, tags=("maritime",)))
    assert isinstance(done, Prepared)
    assert done.prints == fingerprints(items, POLICY)
    assert all(p.signature is not None and p.bands for p in done.prints)
    assert done.matches == {i.guid: RULES.match(i, feed_tags=("maritime",)) for i in items}
    assert [m.rule for m in done.matches["evin"]] == ["evin"]
    assert [m.rule for m in done.matches["harbour"]] == ["harbour"]
    assert done.matches["calendar"] == []  # matched, and nothing matched
    assert done.match_seconds >= 0


def test_an_item_stored_with_the_same_text_is_neither_signed_nor_matched() -> None:
    items = a_day()
    stored = {i.guid: stored_hash(i) for i in items[:3]}  # summary, content and text bodies
    done = prepare(items, POLICY, stored, job(RULES))
    for fp in done.prints[:3]:
        assert fp.signature is None and fp.bands == ()
    assert [fp.content_hash for fp in done.prints[:3]] == list(stored.values())
    assert done.prints[3] == fingerprints(items, POLICY)[3]
    assert done.matches == {"calendar": []}


def test_a_stored_guid_with_a_new_text_is_signed_and_matched() -> None:
    rewritten = item("evin", "Fire at Evin prison", EVIN)
    stored = {"evin": content_hash("Fire at Evin prison", "A fire was reported in Tehran.")}
    done = prepare([rewritten], POLICY, stored, job(RULES))
    assert done.prints == fingerprints([rewritten], POLICY)
    assert done.prints[0].signature is not None
    assert done.matches == {"evin": RULES.match(rewritten)}
    assert done.matches["evin"]


def test_a_first_polls_old_undated_and_far_future_items_are_not_matched() -> None:
    dates = {
        "old": NOW - BACKLOG - timedelta(hours=1),
        "undated": None,
        "future": NOW + timedelta(days=2),
        "recent": NOW - timedelta(hours=1),
    }
    # Each body its own line: a line every item repeats would be left out as boilerplate.
    items = [
        item(guid, "Evin", f"{EVIN} {filler(n)}", published=published)
        for n, (guid, published) in enumerate(dates.items())
    ]
    first = prepare(items, POLICY, {}, job(RULES, first_poll=True))
    assert first.matches == {"recent": RULES.match(items[3])}
    assert all(p.signature is not None for p in first.prints)  # baseline items are stored

    later = prepare(items, POLICY, {}, job(RULES, first_poll=False))
    assert later.matches == {i.guid: RULES.match(i) for i in items}


def test_a_guid_repeated_in_one_document_is_matched_once_as_its_first_copy() -> None:
    items = [item("dup", "Evin", EVIN), item("dup", "Treaty", TREATY)]
    done = prepare(items, POLICY, {}, job(RULES))
    assert len(done.prints) == 2
    assert done.matches == {"dup": RULES.match(items[0])}
    assert [m.rule for m in done.matches["dup"]] == ["evin"]


# --- prepare, in a worker process -----------------------------------------------------------


async def test_a_worker_matches_as_the_rules_do_here_with_the_feeds_tags() -> None:
    items = a_day()
    async with WorkerPool(workers=1) as pool:
        tagged = await pool.run(prepare, items, POLICY, {}, job(RULES, tags=("maritime",)))
        untagged = await pool.run(prepare, items, POLICY, {}, job(RULES))
    assert tagged.prints == fingerprints(items, POLICY)
    assert tagged.matches == {i.guid: RULES.match(i, feed_tags=("maritime",)) for i in items}
    assert untagged.matches == {i.guid: RULES.match(i) for i in items}
    assert [m.rule for m in tagged.matches["harbour"]] == ["harbour"]
    assert untagged.matches["harbour"] == []  # `feeds: [tag:maritime]` needs the tag


async def test_a_worker_keeps_each_rule_set_it_compiled_by_its_key() -> None:
    items = a_day()
    other = compile_rules([Rule("fire", "fire"), Rule("strike", "strike OR walked")], {})
    assert other.key != RULES.key
    async with WorkerPool(workers=1) as pool:
        first = await pool.run(prepare, items, POLICY, {}, job(RULES))
        second = await pool.run(prepare, items, POLICY, {}, job(other))
        # RULES.key sent with another set's source: the worker holds that key already and
        # matches with what it compiled for it, not with the source.
        by_key = MatchJob(RULES.key, rules_blob(other), (), False, NOW, BACKLOG)
        third = await pool.run(prepare, items, POLICY, {}, by_key)
        assert pool.started == 1
    assert first.matches == {i.guid: RULES.match(i) for i in items}
    assert second.matches == {i.guid: other.match(i) for i in items}
    assert [m.rule for m in second.matches["evin"]] == ["fire"]
    assert [m.rule for m in second.matches["harbour"]] == ["strike"]
    assert third.matches == first.matches


async def test_rules_loaded_ahead_serve_a_task_that_carries_no_usable_source() -> None:
    items = a_day()
    async with WorkerPool(workers=1) as pool:
        await pool.run(load, RULES.key, rules_blob(RULES))  # what `newsmon run` does at start
        ahead = MatchJob(RULES.key, b"not a blob", (), False, NOW, BACKLOG)
        prepared = await pool.run(prepare, items, POLICY, {}, ahead)
        unknown = MatchJob("another key", b"not a blob", (), False, NOW, BACKLOG)
        with pytest.raises(zlib.error):  # a set never loaded needs its source
            await pool.run(prepare, items, POLICY, {}, unknown)
    assert prepared.matches == {i.guid: RULES.match(i) for i in items}


# --- Prematched -----------------------------------------------------------------------------


def test_prematched_answers_from_the_matches_made_for_a_guid_it_holds() -> None:
    evin, treaty = item("evin", "Evin", EVIN), item("treaty", "Treaty", TREATY)
    made = Match("evin", "… Evin prison …", ((2, 13),), ("summary",))
    pre = Prematched(RULES, {"evin": [made], "treaty": []})
    assert pre.match(evin) == [made]
    assert pre.match(treaty) == []  # matched ahead, nothing matched: the rules are not asked
    assert RULES.match(treaty) != []


def test_prematched_matches_an_item_it_does_not_hold_with_the_wrapped_rules() -> None:
    harbour = item("harbour", "Strike", HARBOUR)
    pre = Prematched(RULES, {"evin": []})
    assert pre.match(harbour, feed_tags=("maritime",)) == RULES.match(
        harbour, feed_tags=("maritime",)
    )
    assert [m.rule for m in pre.match(harbour, feed_tags=("maritime",))] == ["harbour"]
    assert pre.match(harbour) == []
    assert pre.rules == RULES.rules


# --- fingerprints with what is stored --------------------------------------------------------


def test_fingerprints_leave_unchanged_items_unsigned_and_sign_the_rest() -> None:
    items = a_day()
    full = fingerprints(items, POLICY)
    stored = {
        "evin": stored_hash(items[0]),  # unchanged
        "treaty": content_hash("Treaty vote", "An older text of the treaty."),  # rewritten
    }
    prints = fingerprints(items, POLICY, stored=stored)
    assert prints[0].signature is None and prints[0].bands == ()
    assert (prints[0].url, prints[0].content_hash, prints[0].substantial) == (
        full[0].url,
        full[0].content_hash,
        full[0].substantial,
    )
    assert prints[1:] == full[1:]


def test_fingerprints_without_stored_hashes_sign_every_item() -> None:
    items = a_day()
    prints = fingerprints(items, POLICY, stored=None)
    assert all(p.signature is not None and p.bands for p in prints)
    assert prints == fingerprints(items, POLICY, stored={})


# --- the near-duplicate candidates of a common band -----------------------------------------

COMMON = 2**62 + 7  # band keys are in [0, 2^63)
FEED = Feed("wire", "https://wire.example/feed", timedelta(minutes=10))


def banded(guid: str, bands: tuple[int, ...]) -> ItemRecord:
    it = item(guid, f"Story {guid}", filler(len(guid)))
    signature = bytes(range(128))  # 32 uint32: any 128 bytes make a signature
    return ItemRecord(it, it.url, f"hash-{guid}", f"story-{guid}", False, None, signature, bands)


async def store_one_by_one(store: Store, records: list[ItemRecord]) -> None:
    """Each record in a poll of its own, a minute after the one before."""
    await store.sync_feeds([FEED], NOW)
    for n, record in enumerate(records):
        at = NOW + timedelta(minutes=n)
        await store.apply(Decision("wire", (record,)), FeedUpdate("wire", at, at, success=True))


async def test_a_band_shared_by_too_many_items_yields_only_its_newest(store: Store) -> None:
    count = MAX_PER_BAND + 5
    await store_one_by_one(store, [banded(f"g{n}", (COMMON, n)) for n in range(count)])
    known = await store.known("wire", [], [], [], bands=[COMMON], since=NOW)
    assert len(known.near) == MAX_PER_BAND
    assert [c.story for c in known.near] == [f"story-g{n}" for n in reversed(range(5, count))]
    assert {c.bands for c in known.near} == {(COMMON,)}


async def test_an_item_sharing_two_bands_comes_back_once_with_both(store: Store) -> None:
    await store_one_by_one(
        store, [banded("both", (COMMON, 11, 12)), banded("one", (12,)), banded("none", (13,))]
    )
    known = await store.known("wire", [], [], [], bands=[COMMON, 12], since=NOW)
    assert [c.story for c in known.near] == ["story-one", "story-both"]  # newest first
    assert [sorted(c.bands) for c in known.near] == [[12], sorted((COMMON, 12))]
    assert all(c.signature == bytes(range(128)) for c in known.near)


# --- the hint of a feed's latest listing, and parse + prepare in one task --------------------


async def test_the_latest_listing_is_what_the_feed_listed_within_the_hour(store: Store) -> None:
    await store.sync_feeds([FEED], NOW)
    old, kept, new = banded("old", ()), banded("kept", ()), banded("new", ())

    async def poll(at: datetime, records: tuple[ItemRecord, ...], listed: tuple[str, ...]) -> None:
        decision = Decision("wire", records, still_listed=listed)
        await store.apply(decision, FeedUpdate("wire", at, at, success=True))

    assert await store.listed_hashes("wire") == {}
    await poll(NOW, (old, kept), ())
    later = NOW + timedelta(hours=3)
    await poll(later, (new,), ("kept",))  # "old" no longer listed, "kept" listed again
    assert await store.listed_hashes("wire") == {"kept": "hash-kept", "new": "hash-new"}
    assert await store.listed_hashes("paper") == {}


def rss(entries: list[tuple[str, str, str]]) -> bytes:
    """An RSS 2.0 document of (guid, title, description) entries, dated NOW."""
    date = NOW.strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = "".join(
        f"<item><guid>{g}</guid><title>{t}</title><link>https://wire.example/{g}</link>"
        f"<description>{d}</description><pubDate>{date}</pubDate></item>"
        for g, t, d in entries
    )
    channel = f"<channel><title>Wire</title>{body}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


async def test_parse_and_prepare_in_one_task_equals_the_two_steps() -> None:
    body = rss([("evin", "Fire at Evin prison", EVIN), ("treaty", "Treaty vote", TREATY)])
    url = "https://wire.example/feed"
    alone = parse_feed(body, feed="wire", url=url)
    listed = {"evin": stored_hash(alone.items[0])}  # the feed listed "evin" with this text
    async with WorkerPool(workers=1) as pool:
        parsed, prepared = await pool.run(
            parse_and_prepare, body, "wire", url, {}, POLICY, listed, job(RULES)
        )
    assert parsed == alone and [i.guid for i in parsed.items] == ["evin", "treaty"]
    two_steps = prepare(alone.items, POLICY, listed, job(RULES))
    assert (prepared.prints, prepared.matches) == (two_steps.prints, two_steps.matches)
    assert list(prepared.matches) == ["treaty"]  # "evin" is listed unchanged: not matched
    assert prepared.prints[0].signature is None and prepared.prints[1].signature is not None
