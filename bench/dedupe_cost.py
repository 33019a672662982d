"""What near-duplicate detection costs: time per item, memory per indexed item, query time.

    .venv/bin/python bench/dedupe_cost.py

- signature(): a 4.8 KB seed article (cold: word memo cleared; warm: its words memoised, the
  steady state of a news stream whose vocabulary repeats) and a 60-word feed summary.
- band_keys(): one signature.
- The index as newsmon keeps it: items with signatures and their 16 band keys in a SQLite
  store (table item_bands), inserted in ingest transactions of 2,000; then the lookup a poll
  makes, `Store.known(bands=...)` for 50 new items of which 25 are copies of stored ones.
  Prints insert time per item, lookup time, bytes per item on disk and the process's memory
  growth (the index lives in the database, not in the process). Signatures are random:
  hashing a million real texts would take minutes and change no size or search time.

    .venv/bin/python bench/dedupe_cost.py --items 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import neardup  # noqa: E402
from monitor.model import Decision, Feed, FeedUpdate, Item, ItemRecord  # noqa: E402
from monitor.store import Store  # noqa: E402

SEED_TEXT = ROOT.parent / "shared" / "seeds" / "000_c95993cb4221ab40.txt"


def per_call(fn: object, n: int) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def timings() -> None:
    text = SEED_TEXT.read_text() if SEED_TEXT.exists() else "word " * 800
    title, body = text.splitlines()[0], text
    short = " ".join(body.split()[:60])

    def cold() -> None:
        neardup._word_digest.cache_clear()
        neardup.signature(title, body)

    print(f"signature, {len(body.encode()) / 1000:.1f} KB text, cold: {per_call(cold, 200):.0f} µs")
    print(
        f"signature, {len(body.encode()) / 1000:.1f} KB text, warm: "
        f"{per_call(lambda: neardup.signature(title, body), 1000):.0f} µs"
    )
    took = per_call(lambda: neardup.signature("", short), 2000)
    print(f"signature, 60 words, warm: {took:.0f} µs")
    sig = neardup.signature(title, body)
    assert sig
    print(f"band_keys: {per_call(lambda: neardup.band_keys(sig), 5000):.1f} µs")
    other = neardup.signature("", short, min_words=0)
    assert other
    print(f"similarity: {per_call(lambda: neardup.similarity(sig, other), 5000):.1f} µs")


# --- the store's band index ----------------------------------------------------------------


def records(rng: np.random.Generator, start: int, n: int) -> list[ItemRecord]:
    sigs = rng.integers(0, 2**32, size=(n, neardup.NUM_PERM), dtype=np.uint32)
    bands = neardup.band_keys_matrix(sigs)
    out = []
    for i in range(n):
        guid = f"g{start + i}"
        item = Item("bench", guid, f"https://bench.example/{guid}", f"Title {guid}", "")
        out.append(
            ItemRecord(
                item,
                item.url,
                f"h{start + i}",
                f"s:{guid}",
                baseline=True,
                joined_by=None,
                signature=sigs[i].astype("<u4").tobytes(),
                bands=tuple(int(b) for b in bands[i]),
            )
        )
    return out


async def index_cost(n: int, batch: int = 2000) -> None:
    """Insert n items with signatures into a SQLite store, then query batches of 50."""
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(f"sqlite:///{tmp}/cost.db")
        now = datetime.now(UTC)
        feed = Feed("bench", "https://bench.example/feed", timedelta(hours=1))
        await store.sync_feeds([feed], now)
        rss_before = _rss_mb()
        started = time.perf_counter()
        kept: list[ItemRecord] = []
        for start in range(0, n, batch):
            recs = records(rng, start, min(batch, n - start))
            kept.extend(recs[:25])
            async with store.ingest() as tx:
                await tx.apply(
                    Decision("bench", tuple(recs)), FeedUpdate("bench", now, now, success=True)
                )
        insert = (time.perf_counter() - started) / n
        size = await asyncio.to_thread(_db_size, tmp)
        # A poll's lookup: 50 new items, 25 of them copies of stored ones (sharing their bands).
        times = []
        for q in range(20):
            copies = kept[q * 25 : q * 25 + 25]
            probe = records(rng, n + q * 50, 25) + copies
            bands = {b for r in probe for b in r.bands}
            t0 = time.perf_counter()
            known = await store.known(
                "bench", set(), set(), set(), bands=bands, since=now - timedelta(days=7)
            )
            times.append(time.perf_counter() - t0)
            assert len(known.near) >= len(copies), "a stored copy was not found"
        await store.close()
    times.sort()
    print(
        f"{n:>9,} items: insert {insert * 1e6:4.0f} µs/item (item, signature, 16 band rows); "
        f"lookup for 50: p50 {times[len(times) // 2] * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms; "
        f"{size / n:.0f} B/item on disk; process memory +{_rss_mb() - rss_before:.0f} MB"
    )


def _db_size(tmp: str) -> int:
    return sum(p.stat().st_size for p in Path(tmp).glob("cost.db*"))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, nargs="*", default=[100_000])
    args = parser.parse_args()
    timings()
    for n in args.items:
        asyncio.run(index_cost(n))


if __name__ == "__main__":
    main()
