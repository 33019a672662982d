"""Match + dedupe on one core: `prepare` + the batched ingest with 1,000 rules, items/s (issue 9).

    .venv/bin/python bench/decide_bench.py --feeds 600 --items 50 --rules 1000 [--batch 20]

Uses bench/speed.py's generator (the same corpus, wire copies, feeds and 1,000 rules of ten
shapes over 60 aliases) and the real store (SQLite in a temporary directory, migrated by
`Store.open`). The first half of the feeds fills the store through the daemon's own path, so
the second half meets a realistic dedupe window: the stored URLs, hashes and near-duplicate
band rows of ~15,000 items, a fifth of the new items copies of stories already stored. Each
feed of the second half is then timed the way the daemon runs it (feeds parsed beforehand,
untimed):

- `prepare(items, ...)`: fingerprints (MinHash signatures) and the rule matches of the items
  that may be new (a worker process runs it in the daemon);
- the ingest (`monitor.ingest.Ingests`), `--batch` polls at a time, as polls parsed together
  are: the store's lookups (GUIDs, then URLs, hashes and near-duplicate bands of the new
  items), `decide` for each poll against one story index, and storing every decision (items,
  bands, matches, alerts, deliveries, feed states) in one transaction.

CPU time of this process (`time.process_time`: all its threads, the database's included, on
whatever core; other work on the machine does not count), printed per stage as items/s and
µs/item, and both together. `--profile` prints a cProfile of the timed ingests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import Corpus, FeedSet, write_config

from monitor.config import load_config
from monitor.ingest import Ingests, ParsedPoll
from monitor.model import FetchResult, Item
from monitor.parse import parse_feed
from monitor.pipeline import Prematched
from monitor.prepare import MatchJob, prepare, rules_blob
from monitor.rules import compile_rules
from monitor.scheduler import settle_garbage_collector
from monitor.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=600, help="half fill the store, half timed")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--syndicated", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=20, help="polls ingested together")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed ingests")
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
        key_blob = (ruleset.key, rules_blob(ruleset))
        settle_garbage_collector()  # as the daemon does once its configuration is in place
        ingests = Ingests(store)

        def ready(i: int, name: str) -> tuple[ParsedPoll, float]:
            items = parsed[name]
            job = MatchJob(*key_blob, (), states[name].polls == 0, now, backlog)
            c0 = time.process_time()
            prepared = prepare(items, policy, {}, job)
            spent = time.process_time() - c0
            result = FetchResult(urls[i], urls[i], 200, b"x", etag=f'"{i}"')
            poll = ParsedPoll(
                feeds[name], states[name], result, tuple(items), prepared.prints, now, None,
                rules=Prematched(ruleset, prepared.matches), channels=channels,
                dedupe=policy, backlog_window=backlog,
            )  # fmt: skip
            return poll, spent

        filled = time.perf_counter()
        for start in range(0, half, args.batch):
            polls = [ready(i, names[i])[0] for i in range(start, min(half, start + args.batch))]
            await asyncio.gather(*(ingests.submit(p) for p in polls))
        print(f"store filled with {half} feeds ({half * args.items} items) in "
              f"{time.perf_counter() - filled:.1f} s")  # fmt: skip

        costs = {"prepare": 0.0, "ingest": 0.0}
        counted = stored = alerts = matched = joined = 0
        profile = cProfile.Profile() if args.profile else None
        for start in range(half, args.feeds, args.batch):
            polls = []
            for i in range(start, min(args.feeds, start + args.batch)):
                poll, spent = ready(i, names[i])
                polls.append(poll)
                costs["prepare"] += spent
            c0 = time.process_time()
            if profile:
                profile.enable()
            done = await asyncio.gather(*(ingests.submit(p) for p in polls))
            if profile:
                profile.disable()
            costs["ingest"] += time.process_time() - c0
            for d in done:
                counted += len(d.decision.items) + d.decision.seen
                stored += d.applied.items
                alerts += d.applied.alerts
                matched += len(d.decision.matches)
                joined += sum(1 for r in d.decision.items if r.joined_by)
        print(f"timed: {args.feeds - half} feeds in batches of {args.batch}, {counted} items "
              f"({stored} stored as new, {joined} joined an earlier story, {matched} rule "
              f"matches, {alerts} alerts)")  # fmt: skip
        for stage, spent in costs.items():
            print(f"  {stage:8} {counted / spent:8.0f} items/s  "
                  f"{spent / counted * 1e6:6.0f} µs/item  ({spent:.2f} s CPU)")  # fmt: skip
        both = sum(costs.values())
        print(f"  match + dedupe (prepare + ingest): {counted / both:.0f} items/s "
              f"({both / counted * 1e6:.0f} µs/item)")  # fmt: skip
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        if profile:
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    finally:
        await store.close()


if __name__ == "__main__":
    main()
