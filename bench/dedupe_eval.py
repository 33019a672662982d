"""How well near-duplicate signatures tell copies of a report from other reports.

    .venv/bin/python bench/dedupe_eval.py            # the tables of docs/benchmarks.md
    .venv/bin/python bench/dedupe_eval.py --quick    # chosen constants only, no sweep

1. Syndication set. Originals: every item of ../shared/corpora/real-feeds/ (parsed with
   monitor.parse.parse_feed, with its real link; gzip files gunzipped; compressed.xml left
   out, it holds the same items as iconv.xml; exact repeats dropped) and the five seed article
   pages (under a made-up aawsat.com link). Each original gets copies with what outlets do to
   a wire story (seeded, reproducible): a new headline, a byline and footer lines, truncation
   to 80% or 60% of the body, a few words of a few sentences edited, and all of it together,
   each published at the copying outlet's own URL (another host, its own path); and the
   original's own URL reached with tracking parameters (utm_*, fbclid), alone or with the
   URL spelled otherwise (http/https, www., :443, a fragment) under a new headline and 60%
   of the text (an aggregator's excerpt). Negatives: every pair of different originals of one
   feed (real, distinct URLs), the same pairs after one outlet added its (identical) byline
   and footer to both, a fully changed copy against the feed's other items, and the five
   seeds against each other (one event, different reports).

   Scored twice. Through the pipeline: each feed document's items get
   ``monitor.pipeline.fingerprints`` (canonical URL, content hash, signature with the
   document's repeated lines left out) and each pair goes through ``pipeline.decide`` with the
   first item as what the store knows (by URL, by hash, and as a near-duplicate candidate when
   the two share a band), as ``store.known`` would return it: "same story" = the second
   joins the first's story, by whatever key, at every length. Then the signatures alone (the
   constants of monitor.neardup): "same" = the pair shares an LSH band and the estimated
   Jaccard is >= the threshold.
2. Same-event headlines (../shared/corpora/news-stories/uci-title-pairs.sample.csv): how many
   headlines reach MIN_WORDS_FOR_NEAR_DUP, and the pairwise precision/recall if near-dup were
   forced on titles anyway.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import random
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import dedupe, neardup  # noqa: E402
from monitor.model import (  # noqa: E402
    DedupePolicy,
    Feed,
    FeedState,
    Item,
    KnownState,
    Match,
    NearCandidate,
    Rule,
)
from monitor.parse import parse_feed  # noqa: E402
from monitor.pipeline import Fingerprint, decide, fingerprints  # noqa: E402

SHARED = ROOT.parent / "shared"
FEEDS = SHARED / "corpora" / "real-feeds"
SEEDS = SHARED / "seeds"
PAIRS = SHARED / "corpora" / "news-stories" / "uci-title-pairs.sample.csv"
SEED = 20241123


@dataclass(frozen=True)
class Doc:
    feed: str
    title: str
    body: str
    batch: str = ""  # the feed document it arrives in: repeated lines are learnt per batch
    url: str | None = None  # its link as the feed gives it

    @property
    def words(self) -> int:
        return dedupe.content_words(self.title, self.body)


def originals() -> list[Doc]:
    docs: list[Doc] = []
    seen: set[str] = set()
    for path in sorted(FEEDS.glob("*/*")):
        if path.name in {"COMMIT", "LICENSE", "compressed.xml"} or path.suffix == ".json":
            continue
        body = path.read_bytes()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        for item in parse_feed(body, feed=path.stem, url="https://example.org/").items:
            doc = Doc(path.stem, item.title, item.content or item.summary, path.stem, item.url)
            key = dedupe.content_hash(doc.title, doc.body)
            if key not in seen:
                seen.add(key)
                docs.append(doc)
    for path in sorted(SEEDS.glob("*.txt")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        url = f"https://english.aawsat.com/node/{path.stem.split('_')[0]}"  # made up
        docs.append(Doc("seeds", lines[0], "\n".join(lines[1:]), "seeds", url))
    return docs


# --- what outlets do to a wire story -------------------------------------------------------

BYLINES = [
    "By Staff Reporter",
    "By Jane Holloway, AFP",
    "Agencies | Updated 14:32 GMT",
    "From our correspondent in Dubai",
    "Reuters",
]
# Footers the boilerplate filter of neardup knows a phrase of ...
FOOTERS = [
    "Read more:",
    "© AFP 2024. All rights reserved.",
    "Sign up for our daily newsletter to get the top stories in your inbox.",
    "Follow us on Twitter, Facebook and Telegram for the latest updates.",
    "This article was originally published by Reuters.",
    "Click here to read the full story.",
    "Reporting by Parisa Hafezi; Editing by Angus MacSwan",
    "Copyright 2024 The Associated Press. All rights reserved. This material may not be "
    "published, broadcast, rewritten or redistributed.",
]
# ... and footers it has no phrase for (held out: they show what an unknown footer costs).
UNLISTED = [
    "Stay informed with breaking news alerts on your phone, wherever you are.",
    "Our journalism relies on readers like you; please consider supporting independent "
    "reporting today.",
    "Photographs courtesy of Getty Images and local authorities, used with permission.",
    "The views expressed in this piece are those of the author alone and not of this outlet.",
]
HEAD_PREFIXES = ["UPDATE 2-", "BREAKING: ", "Analysis: ", "WATCH: ", "", ""]
HEAD_SUFFIXES = [" | Reuters", " - AP News", " | World news", " (AFP)", "", ""]
HEAD_FILLERS = ["says", "report", "officials", "amid", "after", "new", "latest", "as"]
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def new_headline(title: str, rng: random.Random) -> str:
    words = title.split()
    kept = [w for w in words if rng.random() > 0.4] or words[:1]
    for _ in range(2):
        kept.insert(rng.randrange(len(kept) + 1), rng.choice(HEAD_FILLERS))
    return rng.choice(HEAD_PREFIXES) + " ".join(kept) + rng.choice(HEAD_SUFFIXES)


Outlet = tuple[str, str]  # (byline, footer lines): what one outlet adds to each item


def outlet(rng: random.Random, footers: list[str] = FOOTERS + UNLISTED) -> Outlet:
    return rng.choice(BYLINES), "\n".join(rng.sample(footers, rng.randint(2, 3)))


def dress(body: str, by: Outlet) -> str:
    return f"{by[0]}\n{body}\n{by[1]}"


def truncate(body: str, keep: float) -> str:
    words = body.split()
    return " ".join(words[: max(1, round(len(words) * keep))]) + " …"


def edit(body: str, rng: random.Random) -> str:
    """A few sentences edited: two words replaced in each of up to three sentences."""
    sentences = SENTENCE.split(body)
    for i in rng.sample(range(len(sentences)), min(3, len(sentences))):
        words = sentences[i].split()
        for _ in range(min(2, len(words))):
            words[rng.randrange(len(words))] = rng.choice(HEAD_FILLERS)
        sentences[i] = " ".join(words)
    return " ".join(sentences)


def syndicate(d: Doc, r: random.Random, by: Outlet, keep: float, batch: str) -> Doc:
    return Doc(d.feed, new_headline(d.title, r), dress(edit(truncate(d.body, keep), r), by), batch)


# --- what outlets do to its URL ---------------------------------------------------------------

# Copying outlets publish at their own address: another host, their own path and slug.
OUTLET_HOSTS = [
    "www.gulf-daily.example",
    "news.regional-times.example",
    "m.worldwire.example",
    "www.capital-post.example",
    "eveningherald.example",
]
TRACKING = [
    "utm_source=newsletter&utm_medium=email&utm_campaign=daily-brief",
    "utm_source=twitter&utm_medium=social",
    "fbclid=IwAR2x9kQ_{n}",
    "utm_source=rss&utm_medium=feed&utm_content=top&fbclid=IwAR0{n}",
]


def outlet_url(title: str, rng: random.Random) -> str:
    slug = "-".join(re.findall(r"\w+", title.lower())[:8]) or "story"
    host = rng.choice(OUTLET_HOSTS)
    return f"https://{host}/world/2024/{rng.randint(1, 12):02d}/{slug}-{rng.randrange(10**6)}"


def tracked(url: str | None, rng: random.Random) -> str | None:
    """`url` with tracking parameters added (its own query kept, in front)."""
    if url is None:
        return None
    parts = urlsplit(url)
    extra = rng.choice(TRACKING).format(n=rng.randrange(10**6))
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def respelled(url: str | None, rng: random.Random) -> str | None:
    """`url` with tracking parameters and another spelling of the same address: the other
    scheme, `www.` added or dropped, the default port written out, a fragment."""
    url = tracked(url, rng)
    if url is None:
        return None
    parts = urlsplit(url)
    scheme = "http" if parts.scheme == "https" else "https"
    host = parts.hostname or ""
    host = host[4:] if host.startswith("www.") else f"www.{host}"
    if rng.random() < 0.5:
        host += ":443" if scheme == "https" else ":80"
    fragment = rng.choice(["comments", "top", "main-content", ""])
    return urlunsplit((scheme, host, parts.path, parts.query, fragment))


# Each variant is one outlet's re-publication of a whole source feed: one outlet (byline and
# footer) per (feed, variant), so its feed document repeats them as real ones do.
Variant = Callable[[Doc, random.Random, Outlet, str], Doc]
VARIANTS: dict[str, Variant] = {
    "new headline": lambda d, r, o, b: Doc(d.feed, new_headline(d.title, r), d.body, b),
    "byline + footer": lambda d, r, o, b: Doc(d.feed, d.title, dress(d.body, o), b),
    "unlisted footer": lambda d, r, o, b: Doc(d.feed, d.title, dress(d.body, o), b),
    "truncated to 80%": lambda d, r, o, b: Doc(d.feed, d.title, truncate(d.body, 0.8), b),
    "truncated to 60%": lambda d, r, o, b: Doc(d.feed, d.title, truncate(d.body, 0.6), b),
    "sentences edited": lambda d, r, o, b: Doc(d.feed, d.title, edit(d.body, r), b),
    "all, 80% kept": lambda d, r, o, b: syndicate(d, r, o, 0.8, b),
    "all, 60% kept": lambda d, r, o, b: syndicate(d, r, o, 0.6, b),
}
BEYOND: dict[str, Variant] = {"all, 40% kept": lambda d, r, o, b: syndicate(d, r, o, 0.4, b)}
# The original article's own URL reached another way (a newsletter, a share, an aggregator):
# made with their own random stream, after the others, so the text variants above draw the
# same numbers as before these were added.
UrlVariant = Callable[[Doc, random.Random, str], Doc]
URL_VARIANTS: dict[str, UrlVariant] = {
    "tracking parameters": lambda d, r, b: Doc(d.feed, d.title, d.body, b, tracked(d.url, r)),
    "tracking + URL respelled, new headline, 60% kept": lambda d, r, b: Doc(
        d.feed, new_headline(d.title, r), truncate(d.body, 0.6), b, respelled(d.url, r)
    ),
}


@dataclass(frozen=True)
class Pair:
    a: Doc
    b: Doc
    same: bool
    kind: str


def pairs(docs: list[Doc]) -> Iterator[Pair]:
    rng = random.Random(SEED)
    urls = random.Random(SEED + 1)  # URLs of copies: a stream of their own
    by_feed: dict[str, list[Doc]] = defaultdict(list)
    for doc in docs:
        by_feed[doc.feed].append(doc)
    for feed, group in by_feed.items():
        for kind, make in {**VARIANTS, **BEYOND}.items():
            by = outlet(rng, UNLISTED if kind == "unlisted footer" else FOOTERS + UNLISTED)
            for doc in group:
                copy = make(doc, rng, by, f"{feed}/{kind}")
                yield Pair(doc, replace(copy, url=outlet_url(copy.title, urls)), True, kind)
    for feed, group in by_feed.items():
        kind = "seeds: one event, other reports" if feed == "seeds" else "same feed, other item"
        outlets = {
            "same outlet footer": outlet(rng),
            "same outlet footer, unlisted": outlet(rng, UNLISTED),
        }
        dressed = {
            name: {id(d): Doc(d.feed, d.title, dress(d.body, by), f"{feed}/{name}") for d in group}
            for name, by in outlets.items()
        }
        for a, b in itertools.combinations(group, 2):
            yield Pair(a, b, False, kind)
            if feed != "seeds":
                for name, docs_of in dressed.items():
                    yield Pair(docs_of[id(a)], docs_of[id(b)], False, name)
        by = outlet(rng)
        for a in group:
            copy = syndicate(a, rng, by, 0.6, f"{feed}/copies")
            copy = replace(copy, url=outlet_url(copy.title, urls))
            for b in group:
                if b is not a:
                    yield Pair(copy, b, False, "copy vs other item")
    for feed, group in by_feed.items():
        for kind, make_url in URL_VARIANTS.items():
            for doc in group:
                yield Pair(doc, make_url(doc, urls, f"{feed}/{kind}"), True, kind)


# --- scoring -------------------------------------------------------------------------------


@dataclass
class Scored:
    pair: Pair
    words: int  # the smaller count of the two of words hashed: what MIN_WORDS gates on
    sim: float  # estimated Jaccard from the signatures
    exact: float  # Jaccard of the shingle sets
    candidate: bool  # the two share an LSH band


def score(all_pairs: list[Pair], k: int, learn: bool = True, exact: bool = False) -> list[Scored]:
    """Signatures of every document (with its batch's repeated lines when ``learn``)."""
    bodies: dict[str, list[str]] = defaultdict(list)
    docs = {id(d): d for p in all_pairs for d in (p.a, p.b)}
    for d in docs.values():
        bodies[d.batch].append(d.body)
    learnt = {
        batch: neardup.repeated_lines(b) if learn else frozenset() for batch, b in bodies.items()
    }
    cache: dict[int, tuple[bytes | None, frozenset[int], int, set[tuple[str, ...]]]] = {}

    def sig(doc: Doc) -> tuple[bytes | None, frozenset[int], int, set[tuple[str, ...]]]:
        if id(doc) not in cache:
            bp = learnt[doc.batch]
            s = neardup.signature(doc.title, doc.body, boilerplate=bp, min_words=0, k=k)
            words = neardup.signature_words(doc.title, doc.body, bp)
            sh = {tuple(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}
            cache[id(doc)] = (
                s,
                frozenset(neardup.band_keys(s)) if s else frozenset(),
                len(words),
                sh,
            )
        return cache[id(doc)]

    out = []
    for p in all_pairs:
        (sa, ka, na, xa), (sb, kb, nb, xb) = sig(p.a), sig(p.b)
        sim = neardup.similarity(sa, sb) if sa and sb else 0.0
        jac = len(xa & xb) / len(xa | xb) if exact and (xa or xb) else 0.0
        out.append(Scored(p, min(na, nb), sim, jac, bool(ka & kb)))
    return out


def prf(rows: list[Scored], threshold: float, min_words: int) -> tuple[float, float, int, int]:
    """precision, recall (over copies keeping >= 60%), false positives, negatives."""
    rows = [r for r in rows if r.words >= min_words and r.pair.kind not in BEYOND]
    said = [r for r in rows if r.candidate and r.sim >= threshold]
    tp = sum(r.pair.same for r in said)
    fp = len(said) - tp
    pos = sum(r.pair.same for r in rows)
    return (tp / len(said) if said else 1.0), (tp / pos if pos else 1.0), fp, len(rows) - pos


# --- through the pipeline --------------------------------------------------------------------

NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)


class NoRules:
    """A rule set that matches nothing: only the stories `decide` joins matter here."""

    rules: tuple[Rule, ...] = ()

    def match(self, item: Item, *, feed_tags: Collection[str] = ()) -> list[Match]:
        return []


@dataclass
class Joined:
    pair: Pair
    by: str | None  # "url" | "hash" | "near": how the second joined the first's story; None
    long: bool  # both reach MIN_WORDS_FOR_NEAR_DUP (both have a signature)


def through_pipeline(all_pairs: list[Pair], policy: DedupePolicy) -> list[Joined]:
    """Each pair as the daemon would see it: the first item stored, the second polled."""
    docs = {id(d): d for p in all_pairs for d in (p.a, p.b)}
    batches: dict[str, list[Doc]] = defaultdict(list)
    for d in docs.values():
        batches[d.batch].append(d)
    item_of: dict[int, Item] = {}
    print_of: dict[int, Fingerprint] = {}
    for batch, group in batches.items():
        items = [
            Item(batch, f"{batch}#{n}", d.url, d.title, "", content=d.body, published=NOW)
            for n, d in enumerate(group)
        ]
        for d, item, fp in zip(group, items, fingerprints(items, policy), strict=True):
            item_of[id(d)], print_of[id(d)] = item, fp
    rules = NoRules()
    out = []
    for p in all_pairs:
        a, b = print_of[id(p.a)], print_of[id(p.b)]
        second = item_of[id(p.b)]
        same_feed = p.a.batch == p.b.batch
        shared = tuple(set(a.bands) & set(b.bands))
        # What store.known() returns for the second item's keys when the first is stored.
        known = KnownState(
            story_by_url={a.url: "A"} if a.url else {},
            story_by_hash={a.content_hash: "A"},
            own_story_by_hash={a.content_hash: "A"} if same_feed else {},
            near=(NearCandidate("A", a.signature, shared),) if a.signature and shared else (),
        )
        feed = Feed(second.feed, "https://example.org/feed", timedelta(minutes=10))
        state = FeedState(feed.name, feed.url, None, None, None, None, None, 0, None, polls=1)
        decision = decide(
            feed,
            state,
            [second],
            known,
            rules,
            (),
            now=NOW,
            backlog_window=timedelta(days=1),
            dedupe_policy=policy,
            prints=[b],
        )
        (record,) = decision.items
        by = record.joined_by if record.story == "A" else None
        out.append(Joined(p, by, a.signature is not None and b.signature is not None))
    return out


def pipeline_prf(
    rows: list[Joined], *, long_only: bool = False, url_variants: bool = True
) -> tuple[float, float, int, int]:
    """precision, recall (over copies keeping >= 60%), false positives, negatives."""
    rows = [
        r
        for r in rows
        if r.pair.kind not in BEYOND
        and (r.long or not long_only)
        and (url_variants or r.pair.kind not in URL_VARIANTS)
    ]
    said = [r for r in rows if r.by]
    tp = sum(r.pair.same for r in said)
    pos = sum(r.pair.same for r in rows)
    return (
        (tp / len(said) if said else 1.0),
        (tp / pos if pos else 1.0),
        len(said) - tp,
        len(rows) - pos,
    )


def pipeline_report(all_pairs: list[Pair]) -> None:
    policy = DedupePolicy()
    rows = through_pipeline(all_pairs, policy)
    print(
        f"\nThrough the pipeline (pipeline.fingerprints + decide: canonical URL, content hash, "
        f"near-dup from {policy.min_words} words at {policy.threshold}), every length:"
    )
    out = []
    for kind in dict.fromkeys(r.pair.kind for r in rows):
        sel = [r for r in rows if r.pair.kind == kind]
        short = [r for r in sel if not r.long]
        long = [r for r in sel if r.long]

        def rate(group: list[Joined]) -> str:
            return f"{sum(bool(r.by) for r in group) / len(group):.3f}" if group else "–"

        by = {key: sum(r.by == key for r in sel) for key in ("url", "hash", "near")}
        label = f"{kind} (beyond target)" if kind in BEYOND else kind
        out.append(
            [
                label,
                "copy" if sel[0].pair.same else "different",
                str(len(sel)),
                rate(sel),
                f"{rate(short)} ({len(short)})",
                f"{rate(long)} ({len(long)})",
                f"{by['url']} / {by['hash']} / {by['near']}",
            ]
        )
    print(
        table(
            [
                "pair kind",
                "truth",
                "pairs",
                "said same",
                f"< {policy.min_words} words (pairs)",
                f">= {policy.min_words} words (pairs)",
                "joined by url / hash / near",
            ],
            out,
        )
    )
    m = policy.min_words
    for label, long_only, url_variants in (
        ("every length, all copies", False, True),
        ("every length, outlets' copies (own URLs)", False, False),
        (f"both >= {m} words, all copies", True, True),
        (f"both >= {m} words, outlets' copies (own URLs)", True, False),
    ):
        p, r, fp, neg = pipeline_prf(rows, long_only=long_only, url_variants=url_variants)
        print(
            f"{label}, keeping >= 60%: precision {p:.4f}, recall {r:.4f} "
            f"(false positives {fp} of {neg} different pairs)"
        )
    print(
        "Target (issue 4): recall >= 0.95 on copies keeping >= 60% of the text, precision "
        f">= 0.99. Near-duplicate matching covers texts of >= {policy.min_words} words "
        "(MIN_WORDS_FOR_NEAR_DUP); shorter ones join by canonical URL and exact text only."
    )
    wrong = [r for r in rows if r.by and not r.pair.same]
    for r in wrong[:10]:
        print(
            f"  false positive ({r.pair.kind}, by {r.by}): {r.pair.a.title[:60]!r} ~ "
            f"{r.pair.b.title[:60]!r}"
        )


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" ---: " for _ in head) + "|"]
    lines[1] = "| --- |" + "|".join(" ---: " for _ in head[1:]) + "|"
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def syndication(quick: bool) -> None:
    docs = originals()
    every_pair = list(pairs(docs))
    t, m = neardup.NEAR_DUP_THRESHOLD, neardup.MIN_WORDS_FOR_NEAR_DUP
    words = [d.words for d in docs]
    print(
        f"originals: {len(docs)} from {len({d.feed for d in docs}) - 1} feeds + seeds; "
        f"words median {statistics.median(words):.0f}; {sum(w >= m for w in words)} have "
        f">= {m} words; {sum(d.url is not None for d in docs)} have a URL; pairs: "
        f"{sum(p.same for p in every_pair)} copies, {sum(not p.same for p in every_pair)} "
        "different"
    )
    pipeline_report(every_pair)

    # The signatures alone, on the text variants (the URL variants test the URL key).
    all_pairs = [p for p in every_pair if p.kind not in URL_VARIANTS]
    print("\nNear-duplicate signatures alone (text variants only):")
    rows = score(all_pairs, neardup.SHINGLE_K, exact=True)
    alone = score(all_pairs, neardup.SHINGLE_K, learn=False)
    p, r, fp, neg = prf(alone, t, m)
    print(
        f"without learnt feed boilerplate (each item alone): precision {p:.4f}, "
        f"recall {r:.4f}, false positives {fp} of {neg}"
    )

    print(f"\nAt k={neardup.SHINGLE_K}, threshold {t}, MIN_WORDS {m} (estimated Jaccard):")
    kinds = list(dict.fromkeys(r.pair.kind for r in rows))
    out = []
    for kind in kinds:
        for label, lo, hi in (("< MIN_WORDS", 0, m), (">= MIN_WORDS", m, 10**9)):
            sel = [r for r in rows if r.pair.kind == kind and lo <= r.words < hi]
            if not sel:
                continue
            said = sum(r.candidate and r.sim >= t for r in sel)
            sims = sorted(r.sim for r in sel)
            out.append(
                [
                    kind,
                    label,
                    "copy" if sel[0].pair.same else "different",
                    str(len(sel)),
                    f"{said / len(sel):.3f}",
                    f"{statistics.median(sims):.2f}",
                    f"{sims[len(sims) // 20]:.2f} / {sims[-1 - len(sims) // 20]:.2f}",
                ]
            )
    print(
        table(
            ["pair kind", "length", "truth", "pairs", "said same", "median sim", "p5 / p95 sim"],
            out,
        )
    )
    p, r, fp, neg = prf(rows, t, m)
    print(f"\n>= {m} words, copies keeping >= 60%: precision {p:.4f}, recall {r:.4f}, ")
    print(f"false positives {fp} of {neg} different pairs")
    p, r, fp, neg = prf(rows, t, 0)
    print(f"all lengths (near-dup forced below MIN_WORDS): precision {p:.4f}, recall {r:.4f}, ")
    print(f"false positives {fp} of {neg}")

    errs = [r.sim - r.exact for r in rows if r.pair.same]
    print(
        f"\nestimate - exact Jaccard on copies: mean {statistics.mean(errs):+.3f}, "
        f"sd {statistics.pstdev(errs):.3f} ({neardup.NUM_PERM} hash functions)"
    )
    lsh_miss = sum(
        1 for r in rows if r.pair.same and r.sim >= t and not r.candidate and r.words >= m
    )
    print(f"copies above threshold but missed by LSH banding (>= MIN_WORDS): {lsh_miss}")
    if quick:
        return

    print("\nSweep (>= MIN_WORDS; P = precision, R = recall over copies keeping >= 60%):")
    thresholds = [0.2, 0.25, 0.3, 0.35, 0.4, 0.5]
    out = []
    for k in (2, 3, 4, 5):
        rk = rows if k == neardup.SHINGLE_K else score(all_pairs, k)
        for mw in (20, 30, 40, 50):
            cells = []
            for th in thresholds:
                p, r, fp, _ = prf(rk, th, mw)
                cells.append(f"{p:.3f} / {r:.3f}")
            out.append([f"k={k}, min {mw}", *cells])
    print(table(["k, MIN_WORDS", *(f"t={th}" for th in thresholds)], out))


def headlines() -> None:
    with PAIRS.open(newline="") as f:
        rows = list(csv.DictReader(f))
    titles = [r["title_a"] for r in rows] + [r["title_b"] for r in rows]
    m = neardup.MIN_WORDS_FOR_NEAR_DUP
    counts = [len(neardup.shingle_words(t)) for t in titles]
    print(
        f"\nSame-event headlines: {len(rows)} pairs ({sum(r['same_story'] == '1' for r in rows)} "
        f"same story); headline words median {statistics.median(counts):.0f}, max {max(counts)}; "
        f"{sum(c >= m for c in counts)} of {len(titles)} reach MIN_WORDS={m}, so near-dup "
        "leaves every pair to exact keys (recall 0 by design)."
    )
    out = []
    for k in (1, 2, 3):
        sims = []
        for r in rows:
            a = neardup.signature(r["title_a"], "", min_words=0, k=k)
            b = neardup.signature(r["title_b"], "", min_words=0, k=k)
            assert a and b
            sims.append((neardup.similarity(a, b), r["same_story"] == "1"))
        for th in (0.2, 0.3, 0.5):
            said = [same for s, same in sims if s >= th]
            pos = sum(same for _, same in sims)
            prec = sum(said) / len(said) if said else 1.0
            out.append([f"k={k}", f"{th}", f"{prec:.3f}", f"{sum(said) / pos:.3f}", str(len(said))])
    print("Forced near-dup on titles alone (estimated Jaccard >= t):")
    print(table(["shingles", "t", "precision", "recall", "pairs said same"], out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="chosen constants only, no sweep")
    args = ap.parse_args()
    if not FEEDS.is_dir():
        sys.exit(f"corpora not found at {FEEDS}")
    syndication(args.quick)
    headlines()


if __name__ == "__main__":
    main()
