"""Measure article extraction (monitor/extract.py) against two public corpora, on one core.

    .venv/bin/python bench/extract_eval.py                       # the daemon's settings
    .venv/bin/python bench/extract_eval.py --variants all        # every setting compared

Corpora (``--corpora``, default ../shared/corpora/article-extraction):

- ``scrapinghub-aeb/``: 181 pages (``html/<id>.html.gz``) and ``ground-truth.json``
  ``{id: {articleBody, url}}``. Score: precision and recall of the extracted text's 4-word
  shingles (lower-cased ``\\w+`` tokens, counted as multisets) against the gold text's, per page.
  Reported: the means of P and R and the F1 of those means (the benchmark's own way), and the mean
  of per-page F1. A page with no output scores P = R = 0.
- ``trafilatura-eval-en-news/``: 38 pages (``html/<file>``) and ``evaldata.subset.json``
  ``{url: {file, with: [...], without: [...], title, author, date}}``. Score: the share of
  ``with`` snippets found in the text and of ``without`` snippets absent from it (whitespace
  collapsed on both sides), plus how often title, author and date agree with the annotation.

Cost: wall time of each ``extract_article`` call, pages in a fixed order, one process, after one
warm-up pass over the first pages; reported as median and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from monitor.extract import TUNING, Article, Tuning, extract_article

HERE = Path(__file__).resolve().parent
DEFAULT_CORPORA = HERE.parent.parent / "shared" / "corpora" / "article-extraction"

VARIANTS: dict[str, Tuning] = {
    "default": TUNING,
    "no-precision": replace(TUNING, precision=False),
    "recall": replace(TUNING, precision=False, recall=True),
    "no-fallback": replace(TUNING, fallback=False),
    "no-tables": replace(TUNING, tables=False),
    "dedup": replace(TUNING, dedup=True),
    "no-metadata": replace(TUNING, metadata=False),
}

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Page:
    corpus: str
    name: str
    url: str
    body: bytes


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    tokens = _WORD.findall(text.lower())
    return Counter(tuple(tokens[i : i + n]) for i in range(max(0, len(tokens) - n + 1)))


def precision_recall(predicted: str, gold: str) -> tuple[float, float]:
    got, want = shingles(predicted), shingles(gold)
    if not want:
        return (1.0, 1.0) if not got else (0.0, 1.0)
    if not got:
        return 0.0, 0.0
    common = sum((got & want).values())
    return common / sum(got.values()), common / sum(want.values())


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def load_aeb(root: Path) -> tuple[list[Page], dict[str, str]]:
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    pages = [
        Page(
            "aeb",
            key,
            entry["url"],
            gzip.decompress((root / "html" / f"{key}.html.gz").read_bytes()),
        )
        for key, entry in sorted(truth.items())
    ]
    return pages, {key: entry["articleBody"] for key, entry in truth.items()}


def load_news(root: Path) -> tuple[list[Page], dict[str, dict[str, object]]]:
    data = json.loads((root / "evaldata.subset.json").read_text(encoding="utf-8"))
    pages = [
        Page("news", entry["file"], url, (root / "html" / entry["file"]).read_bytes())
        for url, entry in sorted(data.items())
    ]
    return pages, {entry["file"]: entry for entry in data.values()}


def run(pages: list[Page], tuning: Tuning) -> tuple[dict[str, Article], list[float]]:
    # The page's own type: the corpora are saved HTML, served as such.
    headers = {"content-type": "text/html"}
    for page in pages[:5]:  # warm-up: imports, lazily built tables, caches of the CPU
        extract_article(page.body, url=page.url, headers=headers, tuning=tuning)
    results: dict[str, Article] = {}
    costs: list[float] = []
    for page in pages:
        start = time.perf_counter()
        results[page.name] = extract_article(
            page.body, url=page.url, headers=headers, tuning=tuning
        )
        costs.append((time.perf_counter() - start) * 1000)
    return results, costs


def score_aeb(results: dict[str, Article], gold: dict[str, str]) -> dict[str, float]:
    prs = [precision_recall(results[k].text, gold[k]) for k in gold]
    mean_p = statistics.fmean(p for p, _ in prs)
    mean_r = statistics.fmean(r for _, r in prs)
    return {
        "P": mean_p,
        "R": mean_r,
        "F1(means)": f1(mean_p, mean_r),
        "F1(per page)": statistics.fmean(f1(p, r) for p, r in prs),
        "empty": sum(1 for k in gold if not results[k].text),
    }


def score_news(results: dict[str, Article], data: dict[str, dict[str, object]]) -> dict[str, float]:
    found = absent = with_n = without_n = 0
    meta: Counter[str] = Counter()
    for name, entry in data.items():
        article = results[name]
        text = squash(article.text)
        wanted = [squash(str(s)) for s in entry["with"]]  # type: ignore[attr-defined]
        unwanted = [squash(str(s)) for s in entry["without"]]  # type: ignore[attr-defined]
        found += sum(1 for s in wanted if s in text)
        absent += sum(1 for s in unwanted if s not in text)
        with_n += len(wanted)
        without_n += len(unwanted)
        meta["title"] += _same(article.title, entry.get("title"))
        meta["author"] += _same(article.author, entry.get("author"))
        day = article.published.date().isoformat() if article.published else None
        meta["date"] += _same(day, entry.get("date"))
    n = len(data)
    return {
        "with found": found / with_n,
        "without absent": absent / without_n,
        "title ok": meta["title"] / n,
        "author ok": meta["author"] / n,
        "date ok": meta["date"] / n,
        "snippets": with_n,
    }


def _same(got: str | None, want: object) -> bool:
    if not want:
        return not got
    return got is not None and squash(got).casefold() == squash(str(want)).casefold()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, tuning: Tuning, load: Callable[[], tuple]) -> None:  # type: ignore[type-arg]
    (aeb_pages, gold), (news_pages, data) = load()
    aeb, aeb_costs = run(aeb_pages, tuning)
    news, news_costs = run(news_pages, tuning)
    a = score_aeb(aeb, gold)
    b = score_news(news, data)
    costs = aeb_costs + news_costs
    print(
        f"{name:<13} aeb P {a['P']:.3f} R {a['R']:.3f} F1 {a['F1(means)']:.3f} "
        f"F1/page {a['F1(per page)']:.3f} empty {a['empty']:.0f} | "
        f"news with {b['with found']:.1%} without {b['without absent']:.1%} "
        f"title {b['title ok']:.0%} author {b['author ok']:.0%} date {b['date ok']:.0%} | "
        f"ms median {statistics.median(costs):.1f} p95 {percentile(costs, 0.95):.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--variants", default="default", help="comma-separated names, or 'all'")
    parser.add_argument("--show", metavar="NAME", help="print the text extracted from one page")
    args = parser.parse_args()
    root: Path = args.corpora

    def load() -> tuple:  # type: ignore[type-arg]
        return load_aeb(root / "scrapinghub-aeb"), load_news(root / "trafilatura-eval-en-news")

    if args.show:
        (aeb_pages, _), (news_pages, _) = load()
        for page in aeb_pages + news_pages:
            if page.name.startswith(args.show):
                print(extract_article(page.body, url=page.url, headers={}))
        return
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    sizes = [len(p.body) for pages, _ in load() for p in pages]
    print(f"{len(sizes)} pages, largest {max(sizes) / 1e6:.2f} MB")
    for name in names:
        report(name, VARIANTS[name], load)


if __name__ == "__main__":
    main()
