"""Time the rule engine: items/s with 1,000 rules and with 10, on one core.

    .venv/bin/python bench/rules_bench.py --items 10000 --rules 1000

Generates (fixed seed) a news-like corpus: ~4 KB items whose words follow a Zipf law over a
vocabulary of English, Persian and Russian function and news words, with a few named entities
(synthetic Latin, Persian and Cyrillic names) per item; and rules of the shapes analysts write:
aliases with multilingual terms, phrases, NEAR/ONEAR, field scopes, prefixes, NOT, a few
regexes. Prints items/s for 1,000 rules and for the first 10 of them, the ratio of per-item
cost, and (on a sample) the cost with the prefilter switched off, for reference.
"""

from __future__ import annotations

import argparse
import random
import time
from itertools import accumulate

from monitor.model import Item, Rule
from monitor.rules import RuleSet, compile_rules

COMMON_EN = """
the of and to in a is that for on was with he it as at by said from his be has have an are
were which this but not had after who they its been will their more one also new would two
first last year years government minister president officials people country state police
security forces talks deal agreement report reported statement week told news week city region
military attack killed court trial sentenced prison protest protesters election vote parliament
law bill economy economic oil gas prices inflation currency bank sanctions nuclear program
talks foreign ministry spokesman official sources according international united nations council
human rights activists journalists arrested released families visit border trade exports
imports market energy power water health hospital school students women children workers strike
union party leader leaders opposition reform policy plans support against under between during
while since before over about into than other some many most such only very could should may
""".split()
COMMON_FA = """
و در به از که این را با است برای آن یک خود تا کرد شد شده بود می ها های هم نیز دولت وزیر رئیس
مجلس ایران تهران گزارش خبر روز سال امروز گفت اعلام مردم کشور زندان دادگاه حکم اعتراض انتخابات
""".split()
COMMON_RU = """
и в не на что с по это как из за от для все его так о но же к у вы было год года также
заявил президент правительство министр страны москва россия договор санкции суд тюрьма выборы
""".split()

SYLLABLES_LAT = "ka ri mo za de al ba na sh te ro vi lu ne fa ha gi ou re sa mi to ya".split()
SYLLABLES_FA = "کا ری مو زا ده ال با نا شا ته رو وی لو نی فا ها".split()
SYLLABLES_RU = "ка ри мо за де ал ба на ша те ро ви лу не фа ха".split()
CONTEXT = "treaty pact agreement ratified sanctions prison arrested talks nuclear oil".split()


def names(rng: random.Random, syllables: list[str], n: int, suffixes: list[str]) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(syllables, k=rng.randint(2, 3))) + rng.choice(suffixes))
    return sorted(out)


def zipf_weights(n: int) -> list[float]:
    return list(accumulate(1.0 / (rank + 1) for rank in range(n)))


class Corpus:
    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        # 4,000 names: each is named in about one item in a thousand, as a watched person or
        # place is in a general news stream.
        lat = names(rng, SYLLABLES_LAT, 2500, ["ov", "i", "an", "abad", "stan", "ski"])
        fa = names(rng, SYLLABLES_FA, 750, ["ی", "ان", "زاده"])
        ru = names(rng, SYLLABLES_RU, 750, ["ов", "ин", "ск", "енко"])
        self.entities = lat + fa + ru
        rng.shuffle(self.entities)
        # Ranked vocabulary: function and news words first, then a long tail of 20,000 other
        # words (synthetic, in the three scripts), so that an article of 600 words holds a few
        # hundred distinct ones and a rule's context word such as "sanctions" (placed at ranks
        # 200-2,000) appears in a minority of items, as in a real news stream.
        head = COMMON_EN * 3 + COMMON_FA + COMMON_RU  # English dominates, as in most feeds
        rng.shuffle(head)
        taken = set(self.entities) | set(head)
        tail = [
            w
            for w in names(rng, SYLLABLES_LAT, 14_000, ["", "s", "ed", "ing", "er"])
            + names(rng, SYLLABLES_FA, 3_000, ["", "ها", "ی"])
            + names(rng, SYLLABLES_RU, 3_000, ["", "ы", "ой", "ать"])
            if w not in taken
        ]
        rng.shuffle(tail)
        common = [w for w in head if w not in CONTEXT] + tail
        for rank, word in zip(range(200, 2000, 180), CONTEXT, strict=False):
            common.insert(rank, word)
        self.common = common
        self.cum_common = zipf_weights(len(common))

    def words(self, n: int, entities: int) -> str:
        rng = self.rng
        out = rng.choices(self.common, cum_weights=self.cum_common, k=n)
        for _ in range(entities):
            # Names spread evenly (Zipf here would put one name in half of all items).
            out[rng.randrange(n)] = rng.choice(self.entities)
        parts = []
        for i, w in enumerate(out):
            if i % 17 == 0 or rng.random() < 0.04:
                w = w.capitalize()
            r = rng.random()
            parts.append(w + ("," if r < 0.06 else "." if r < 0.1 else "'s" if r < 0.11 else ""))
        return " ".join(parts)

    def item(self, n: int) -> Item:
        return Item(
            feed=f"feed{n % 40}",
            guid=f"g{n}",
            url=f"https://news{n % 40}.example/{n}/{self.rng.choice(self.common)}",
            title=self.words(10, 1),
            summary=self.words(40, 1),
            content=self.words(600, 3),  # about 4 KB
            author="",
        )

    def aliases(self) -> dict[str, list[str]]:
        rng = random.Random(1)
        out = {}
        for i in range(60):
            terms = [*rng.sample(self.entities, 3), rng.choice(self.entities) + "*"]
            out[f"A{i}"] = terms
        return out

    def rule(self, i: int) -> Rule:
        rng = random.Random(i)
        e = self.entities
        pick = lambda: rng.choice(e)  # noqa: E731
        ctx = lambda: rng.choice(CONTEXT)  # noqa: E731
        shape = i % 10
        if shape == 0:
            q = f"@A{rng.randrange(60)} AND ({ctx()} OR {ctx()}) AND {ctx()[:5]}*"
        elif shape == 1:
            q = f'"{pick()} {rng.choice(self.common)}" AND {ctx()}'
        elif shape == 2:
            q = f"{pick()} NEAR/5 ({ctx()} OR {ctx()})"
        elif shape == 3:
            q = f"title:({pick()} OR {pick()}) AND {ctx()}"
        elif shape == 4:
            q = f"{pick()} ONEAR/3 {ctx()[:4]}*"
        elif shape == 5:
            q = f"({pick()} OR {pick()} OR {pick()}) NOT {ctx()}"
        elif shape == 6:
            q = f"{pick()}* AND ({rng.choice(COMMON_FA)} OR {rng.choice(COMMON_RU)})"
        elif shape == 7:
            q = f"source:feed{rng.randrange(40)} AND {pick()}"
        elif shape == 8 and i % 200 == 8:
            q = f"/{pick()}[0-9]+/"  # a lone regex: evaluated for every item
        elif shape == 8:
            q = f"/{ctx()}(ed|s)?/ AND {pick()}"
        else:
            q = f"@A{rng.randrange(60)} NEAR/10 @A{rng.randrange(60)}"
        return Rule(f"rule{i}", q)


def run(rs: RuleSet, items: list[Item]) -> tuple[float, int]:
    matches = 0
    start = time.process_time()  # CPU time of this process: one core, whatever else runs
    for it in items:
        matches += len(rs.match(it))
    return time.process_time() - start, matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-prefilter-sample", type=int, default=500)
    args = parser.parse_args()

    corpus = Corpus(args.seed)
    t = time.perf_counter()
    items = [corpus.item(n) for n in range(args.items)]
    size = sum(len(i.title) + len(i.summary) + len(i.content) for i in items) / len(items)
    print(f"{len(items)} items, {size / 1024:.1f} KB of text each, generated in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip

    aliases = corpus.aliases()
    rules = [corpus.rule(i) for i in range(args.rules)]
    t = time.perf_counter()
    many = compile_rules(rules, aliases)
    print(f"{len(rules)} rules compiled in {time.perf_counter() - t:.2f} s")
    few = compile_rules(rules[:10], aliases)

    run(many, items[:1000])  # warm the word memo, as a running daemon has it
    results = {}
    for label, rs in ((f"{len(rules)} rules", many), ("10 rules", few)):
        spent, found = run(rs, items)
        results[label] = spent / len(items)
        print(f"{label:>12}: {len(items) / spent:8.0f} items/s  "
              f"{spent / len(items) * 1e6:7.0f} µs/item  {found} matches")  # fmt: skip
    ratio = results[f"{len(rules)} rules"] / results["10 rules"]
    print(f"per-item cost, {len(rules)} rules / 10 rules: {ratio:.2f}x")

    sample = items[: args.no_prefilter_sample]
    if sample:
        plain = compile_rules(rules, aliases, prefilter=False)
        spent, _ = run(plain, sample)
        print(f"{len(rules)} rules without the prefilter ({len(sample)} items): "
              f"{len(sample) / spent:.0f} items/s")  # fmt: skip


if __name__ == "__main__":
    main()
