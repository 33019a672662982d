"""What near-duplicate detection costs: time per item, memory per indexed item, query time.

    .venv/bin/python bench/dedupe_cost.py

- signature(): a 4.8 KB seed article (cold: word memo cleared; warm: its words memoised, the
  steady state of a news stream whose vocabulary repeats) and a 60-word feed summary.
- band_keys(): one signature.
- Memory of an in-memory index held as numpy arrays (signatures NUM_PERM x uint32 and a
  BandIndex: BANDS x int64 per item) at 100k and 1M items, from the arrays' nbytes and from
  tracemalloc's peak while building. Signatures are random (a million real texts would take
  minutes to hash and change nothing about sizes or search times).
- A batch of 50 queries against 1M items: candidates via np.searchsorted per band, then every
  candidate confirmed with similarity().
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import neardup  # noqa: E402

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


def build(n: int, rng: np.random.Generator) -> tuple[np.ndarray, neardup.BandIndex, int]:
    tracemalloc.start()
    sigs = rng.integers(0, 2**32, size=(n, neardup.NUM_PERM), dtype=np.uint32)
    index = neardup.BandIndex()
    for start in range(0, n, 100_000):  # inserted in batches, as a rebuild from the store would
        index.add_many(neardup.band_keys_matrix(sigs[start : start + 100_000]))
    index._merge()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sigs, index, peak


def memory_and_query() -> None:
    rng = np.random.default_rng(7)
    for n in (100_000, 1_000_000):
        t0 = time.perf_counter()
        sigs, index, peak = build(n, rng)
        took = time.perf_counter() - t0
        held = sigs.nbytes + index.nbytes
        print(
            f"{n:>9,} items: signatures {sigs.nbytes / n:.0f} B + band index "
            f"{index.nbytes / n:.0f} B = {held / n:.0f} B per item ({held / 2**20:.0f} MiB); "
            f"tracemalloc peak while building {peak / n:.0f} B/item; built in {took:.2f} s "
            f"({took / n * 1e6:.2f} µs/item)"
        )
    # 50 queries: 25 near copies of indexed items (8 of 32 values changed: Jaccard ~0.6) and 25
    # unrelated signatures.
    queries = rng.integers(0, 2**32, size=(50, neardup.NUM_PERM), dtype=np.uint32)
    rows = rng.choice(len(sigs), 25, replace=False)
    queries[:25] = sigs[rows]
    queries[:25, :8] = rng.integers(0, 2**32, size=(25, 8), dtype=np.uint32)
    qkeys = neardup.band_keys_matrix(queries)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        found = index.candidates_many(qkeys)
        joined = []
        for q, cands in enumerate(found):
            qb = queries[q].astype("<u4").tobytes()
            joined.append(
                [int(c) for c in cands if neardup.similarity(qb, sigs[c].tobytes()) >= 0.3]
            )
        best = min(best, time.perf_counter() - t0)
    hits = sum(int(rows[q]) in joined[q] for q in range(25))
    false = sum(len(j) for j in joined[25:])
    cands = sum(len(f) for f in found[25:])
    print(
        f"query 50 against {len(sigs):,}: {best * 1e3:.2f} ms ({best / 50 * 1e6:.0f} µs/query), "
        f"candidates + confirmation; copies found {hits}/25; unrelated: {cands} candidates, "
        f"{false} confirmed"
    )


if __name__ == "__main__":
    timings()
    memory_and_query()
