"""Match + dedupe on one core: `fingerprints` + `decide` with 1,000 rules, items/s (issue 9).

    .venv/bin/python bench/decide_bench.py --feeds 600 --items 50 --rules 1000

Uses bench/speed.py's generator (the same corpus, wire copies, feeds and 1,000 rules of ten
shapes over 60 aliases) and the real store (SQLite in a temporary directory, migrated by
`Store.open`). The first half of the feeds fills the store through the daemon's own path
(`fingerprints`, `store.ingest()`: `known` -> `decide` -> `apply`), so the second half meets a
realistic dedupe window: the stored URLs, hashes and near-duplicate band rows of ~15,000 items,
a fifth of the new items copies of stories already stored. Each feed of the second half is
then timed the way the daemon runs it (feeds parsed beforehand, untimed):

- `fingerprints(items, policy)` (the MinHash signatures; a parse worker runs it in the daemon);
- `store.known(...)` for the feed's GUIDs, then for the new items' URLs, hashes and bands (the
  two lookups of `scheduler._poll`), with the KnownState it returns;
- `decide(...)` with that KnownState and the compiled 1,000 rules (matching and dedupe);

and its decision applied (untimed), so each feed sees the ones before it. CPU time of this
process (`time.process_time`: one core, whatever else runs on the machine), printed per stage
as items/s and µs/item, plus match + dedupe with and without the store lookups.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import Corpus, FeedSet, write_config

from monitor.config import load_config
from monitor.model import FetchResult, Item
from monitor.parse import parse_feed
from monitor.pipeline import decide, fingerprints, lookup_keys, plan_update
from monitor.rules import compile_rules
from monitor.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=600, help="half fill the store, half timed")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--syndicated", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsmon-decide-", dir="/tmp") as work:
        asyncio.run(bench(args, Path(work)))


async def bench(args: argparse.Namespace, work: Path) -> None:
    t = time.perf_counter()
    corpus = Corpus(args.seed)
    feedset = FeedSet(corpus, args.feeds, args.items, args.syndicated)
    rules = [corpus.rule(i, 10) for i in range(args.rules)]
    db, config = work / "decide.db", work / "decide.yaml"
    urls = [f"http://127.0.0.2/feed/{n}.xml" for n in range(args.feeds)]
    write_config(config, db, urls, rules, corpus.aliases(), "127.0.0.1:9", 13, 10)
    settings = load_config(config)
    feeds = {f.name: f for f in settings.feed_values()}
    ruleset = compile_rules(settings.rule_values(), settings.aliases)
    policy = settings.dedupe.value()
    channels = tuple(settings.channel_values())  # as the scheduler passes them
    backlog = settings.polling.backlog_window
    parsed: dict[str, list[Item]] = {}
    for f in feedset.feeds:
        name, url = f"f{f.index}", urls[f.index]
        parsed[name] = list(parse_feed(f.body, feed=name, url=url).items)
    print(f"{args.feeds} feeds x {args.items} items, {len(rules)} rules; generated, compiled "
          f"and parsed in {time.perf_counter() - t:.1f} s; load average "
          f"{os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")  # fmt: skip

    store = await Store.open(f"sqlite:///{db}")
    try:
        now = datetime.now(UTC)
        await store.sync_feeds(list(feeds.values()), now)
        states = {s.name: s for s in await store.feed_states()}
        half = args.feeds // 2
        names = [f"f{n}" for n in range(args.feeds)]
        costs = {"fingerprints": 0.0, "known": 0.0, "decide": 0.0}
        counted = stored = alerts = matched = candidates = 0
        run = ruleset.match  # warm the rule engine's memo on a few items, as a daemon has it
        for item in parsed[names[0]][:20]:
            run(item)
        filled = time.perf_counter()
        for i, name in enumerate(names):
            timed = i >= half
            items = parsed[name]
            c0 = time.process_time()
            prints = fingerprints(items, policy)
            c1 = time.process_time()
            guids = lookup_keys(items, prints).guids
            async with store.ingest() as tx:
                c2 = time.process_time()
                seen = (await tx.known(name, guids, (), ())).seen
                keys = lookup_keys(items, prints, stored=seen.keys())
                known = await tx.known(
                    name, (), keys.urls, keys.hashes, bands=keys.bands, since=now - policy.window
                )
                known = replace(known, seen=seen)
                c3 = time.process_time()
                decision = decide(
                    feeds[name], states[name], items, known, ruleset, channels,
                    now=now, backlog_window=backlog, dedupe_policy=policy, prints=prints,
                )  # fmt: skip
                c4 = time.process_time()
                result = FetchResult(urls[i], urls[i], 200, b"x", etag=f'"{i}"')
                await tx.apply(decision, plan_update(feeds[name], states[name], result, now=now))
            if i == half - 1:
                print(f"store filled with {half} feeds ({half * args.items} items) in "
                      f"{time.perf_counter() - filled:.1f} s")  # fmt: skip
            if timed:
                costs["fingerprints"] += c1 - c0
                costs["known"] += c3 - c2
                costs["decide"] += c4 - c3
                counted += len(items)
                stored += len(decision.items)
                alerts += len(decision.alerts)
                matched += len(decision.matches)
                candidates += len(known.near)
        joined = sum(1 for r in decision.items if r.joined_by)  # of the last feed, for a check
        print(f"timed: {args.feeds - half} feeds, {counted} items ({stored} stored as new, "
              f"{matched} rule matches, {alerts} alerts; "
              f"{candidates / max(1, args.feeds - half):.0f} "
              f"near-duplicate candidates a feed from the store; last feed: {joined} of "
              f"{len(decision.items)} joined an earlier story)")  # fmt: skip
        for stage, spent in costs.items():
            print(f"  {stage:14} {counted / spent:8.0f} items/s  "
                  f"{spent / counted * 1e6:6.0f} µs/item  ({spent:.2f} s CPU)")  # fmt: skip
        both = costs["fingerprints"] + costs["decide"]
        full = both + costs["known"]
        print(f"  match + dedupe (fingerprints + decide): {counted / both:.0f} items/s "
              f"({both / counted * 1e6:.0f} µs/item)")  # fmt: skip
        print(f"  with the store lookups (fingerprints + known + decide): {counted / full:.0f} "
              f"items/s ({full / counted * 1e6:.0f} µs/item)")  # fmt: skip
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        await store.close()


if __name__ == "__main__":
    main()
