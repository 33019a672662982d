"""Polls ingested together (monitor.ingest): the same outcome as one after the other.

Real rules, real fingerprints and a real store (SQLite, and PostgreSQL where it runs). The
polls are submitted in one `asyncio.gather`, so all of them are waiting when the ingest task
first runs: the batches are deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.dedupe import content_hash
from monitor.ingest import BATCH_ITEMS, Ingested, Ingests, ParsedPoll
from monitor.model import DedupePolicy, Feed, FeedState, FetchResult, Item, Rule
from monitor.pipeline import Prematched, fingerprints
from monitor.rules import compile_rules
from monitor.store import Store

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
RULES = compile_rules([Rule("evin", '"evin prison"'), Rule("treaty", "treaty AND ratif*")], {})
WORDS = (
    "parliament minister court market river border council harvest strike bridge "
    "election budget railway drought hospital school festival museum factory port "
    "governor airline refinery protest summit embassy tariff satellite vaccine reservoir"
).split()
EVIN = (
    "Relatives of prisoners gathered outside Evin prison in Tehran on Sunday evening after "
    "reports of a fire in one of its wards, and witnesses said smoke rose above the northern "
    "wall for more than an hour while fire engines waited at the gate. The judiciary said "
    "order had been restored and that no prisoner had escaped, but families said they had "
    "not been able to reach their relatives by telephone since the afternoon."
)


def text(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(words)) + "."


def parsed(feed: str, items: list[Item], *, polls: int = 1) -> ParsedPoll:
    url = f"https://{feed}.example/feed"
    state = FeedState(feed, url, None, None, None, None, None, 0, None, polls=polls)
    policy = DedupePolicy()
    return ParsedPoll(
        Feed(feed, url, timedelta(minutes=10)),
        state,
        FetchResult(url, url, 200, b"", etag=f'"{feed}"'),
        tuple(items),
        fingerprints(items, policy),
        NOW,
        None,
        rules=RULES,
        channels=("desk",),
        dedupe=policy,
        backlog_window=timedelta(days=1),
    )


def wire_day() -> list[ParsedPoll]:
    """Six feeds; the Evin story comes first from the wire, then in three of them as copies
    (the same URL with tracking parameters, the same headline and text, the text cut under
    a new headline and signed off); "gazette" re-posts its own first item under a new GUID."""
    own = Item("gazette", "g1", "https://gazette.example/1", "Budget vote", text(7), published=NOW)
    return [
        parsed(
            "wire",
            [
                Item("wire", "w1", "https://news.example/evin", "Fire at Evin prison", EVIN),
                *(Item("wire", f"w{i}", None, f"Story {i}", text(i)) for i in range(2, 6)),
            ],
        ),
        parsed(
            "paper",
            [
                Item("paper", "p1", "https://news.example/evin?utm_source=x", "Evin fire", ""),
                Item("paper", "p2", None, "Treaty ratified", "Parliament ratified the treaty."),
            ],
        ),
        parsed("daily", [Item("daily", "d1", None, "Fire at Evin prison", EVIN)]),
        parsed(
            "weekly",
            [Item("weekly", "k1", None, "Evin", EVIN[:300] + " Reporting by Weekly staff.")],
        ),
        parsed("gazette", [own, Item("gazette", "g2", None, own.title, own.summary)]),
        parsed(
            "radio",
            [Item("radio", f"r{i}", None, f"Bulletin {i}", text(100 + i)) for i in range(3)],
        ),
    ]


def outcome(done: list[Ingested]) -> list[tuple[object, ...]]:
    return [
        (
            d.decision.feed,
            [(r.item.guid, r.story, r.joined_by, r.baseline) for r in d.decision.items],
            [(a.rule, a.story, a.guid) for a in d.decision.alerts],
            (d.applied.items, d.applied.alerts, d.applied.channels),
        )
        for d in done
    ]


async def sync(store: Store, polls: list[ParsedPoll]) -> None:
    await store.sync_feeds([p.feed for p in polls], NOW)


def batches(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """(polls, items) of each ingest, from its debug line."""
    found = []
    for record in caplog.records:
        hit = re.match(r"ingested polls=(\d+) items=(\d+)", record.getMessage())
        if hit:
            found.append((int(hit[1]), int(hit[2])))
    return found


async def test_a_batch_decides_what_the_polls_one_after_the_other_would(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    polls = wire_day()
    async with await Store.open(f"sqlite:///{tmp_path / 'apart.db'}") as store:
        await sync(store, polls)
        ingests = Ingests(store)
        apart = [await ingests.submit(p) for p in polls]  # each awaited: six batches of one
        counts = await store.counts()
        stories = [(s.items, sorted(s.feeds)) for s in await store.stories()]
    async with await Store.open(f"sqlite:///{tmp_path / 'together.db'}") as store:
        await sync(store, polls)
        ingests = Ingests(store)
        with caplog.at_level(logging.DEBUG, logger="newsmon"):
            together = list(await asyncio.gather(*(ingests.submit(p) for p in polls)))
        assert outcome(together) == outcome(apart)
        assert await store.counts() == counts
        assert [(s.items, sorted(s.feeds)) for s in await store.stories()] == stories
    assert batches(caplog) == [(6, 14)]  # one ingest for the six polls
    # The Evin story: the wire's item, then a URL copy, an exact copy and a cut copy, in
    # three feeds decided after it; the gazette's re-post joined its own first item.
    joined = {r.item.guid: (r.story, r.joined_by) for d in together for r in d.decision.items}
    evin = joined["w1"][0]
    assert [joined[g] for g in ("p1", "d1", "k1")] == [
        (evin, "url"),
        (evin, "hash"),
        (evin, "near"),
    ]
    assert joined["g2"] == (joined["g1"][0], "hash")
    # Every copy matched "evin", all for one story: the store keeps one alert for them.
    assert {(a.rule, a.story) for d in together for a in d.decision.alerts if a.rule == "evin"} == {
        ("evin", evin)
    }
    assert sum(d.applied.alerts for d in together) == counts["alerts"] == 2


async def test_a_poll_the_store_refuses_fails_alone(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    polls = wire_day()
    await sync(store, [p for p in polls if p.feed.name != "daily"])  # "daily" never synced
    ingests = Ingests(store)
    with caplog.at_level(logging.DEBUG, logger="newsmon"):
        done = await asyncio.gather(*(ingests.submit(p) for p in polls), return_exceptions=True)
    failed = {p.feed.name: d for p, d in zip(polls, done, strict=True) if isinstance(d, Exception)}
    assert list(failed) == ["daily"] and isinstance(failed["daily"], LookupError)
    # The batch was tried once, then each poll alone: the other five are stored.
    assert batches(caplog) == [(1, n) for n in (5, 2, 1, 2, 3)]
    assert any("storing them one by one" in r.getMessage() for r in caplog.records)
    assert (await store.counts())["items"] == 13
    states = {s.name: s for s in await store.feed_states()}
    assert states["wire"].polls == 1 and states["wire"].etag == '"wire"'


async def test_a_feeds_second_poll_waits_for_the_next_batch(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = wire_day()[0]
    later = [*first.items, Item("wire", "w9", None, "Treaty ratified at dawn", text(9))]
    second = parsed("wire", later, polls=2)
    await sync(store, [first])
    ingests = Ingests(store)
    with caplog.at_level(logging.DEBUG, logger="newsmon"):
        one, two = await asyncio.gather(ingests.submit(first), ingests.submit(second))
    assert batches(caplog) == [(1, 5), (1, 6)]
    assert (one.applied.items, two.applied.items) == (5, 1)
    assert two.decision.seen == 5  # it saw the first poll's items as stored
    assert [a.guid for a in two.decision.alerts] == ["w9"]


async def test_batches_hold_at_most_batch_items(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    per_poll = 50
    polls = [
        parsed(
            f"f{n}",
            [
                Item(f"f{n}", f"{n}-{i}", None, f"T {n} {i}", text(n * 100 + i))
                for i in range(per_poll)
            ],
        )
        for n in range(30)
    ]
    await sync(store, polls)
    ingests = Ingests(store)
    with caplog.at_level(logging.DEBUG, logger="newsmon"):
        done = await asyncio.gather(*(ingests.submit(p) for p in polls))
    full = BATCH_ITEMS // per_poll
    assert batches(caplog) == [(full, full * per_poll), (30 - full, (30 - full) * per_poll)]
    assert sum(d.applied.items for d in done) == 30 * per_poll
    assert (await store.counts())["items"] == 30 * per_poll


async def test_an_item_prepared_as_unchanged_that_the_store_lacks_is_signed_and_matched(
    store: Store,
) -> None:
    # The worker was told the wire stored "w1" with this very text, so it left it unsigned
    # and unmatched; by the ingest the store holds no such item (a retention run, a second
    # poll of the feed in between). The ingest signs the poll again and decide matches it.
    wire = Item("wire", "w1", "https://news.example/evin", "Fire at Evin prison", EVIN)
    stale = {"w1": content_hash(wire.title, wire.summary)}
    poll = parsed("wire", [wire])
    poll = replace(
        poll,
        prints=fingerprints([wire], poll.dedupe, stored=stale),
        rules=Prematched(RULES, {}),
        stored=stale,
    )
    assert poll.prints[0].signature is None
    await sync(store, [poll])
    done = await Ingests(store).submit(poll)
    (record,) = done.decision.items
    assert record.signature is not None and len(record.bands) == 16
    assert [m.match.rule for m in done.decision.matches] == ["evin"]
    assert done.applied.alerts == 1
    known = await store.known("paper", [], [], [], bands=record.bands, since=NOW)
    assert [c.story for c in known.near] == [record.story]  # in the band index
