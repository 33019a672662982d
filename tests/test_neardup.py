"""Near-duplicate signatures: copies score above the threshold, other reports below, and the
bytes are the same in every process."""

from __future__ import annotations

import gzip
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import dedupe, neardup
from monitor.model import DedupePolicy
from monitor.neardup import (
    BANDS,
    MIN_WORDS_FOR_NEAR_DUP,
    NEAR_DUP_THRESHOLD,
    NUM_PERM,
    SIGNATURE_BYTES,
    band_keys,
    repeated_lines,
    signature,
    similarity,
    strip_boilerplate,
)

REAL_FEEDS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "real-feeds"

TITLE = "Regional ministers agree to reopen the northern border crossing after talks"
BODY = """\
Foreign ministers from four neighbouring countries agreed on Tuesday to reopen the northern \
border crossing that has been closed to trucks and travellers since a flood destroyed the \
customs station in March, officials said after a day of talks in the capital.
The crossing carried about a third of the region's overland trade before it closed. Traders \
on both sides have waited for weeks, and the price of flour and cooking oil in the border towns \
has almost doubled, according to figures published by the regional chamber of commerce.
Under the agreement, engineers will build a temporary customs post within six weeks, while \
the countries share the cost of a permanent station. Inspections will be carried out jointly \
to shorten the queues, the ministers said in a joint statement.
Aid groups welcomed the decision but warned that the road leading to the crossing remains \
damaged in several places and that heavy lorries could be turned back until it is repaired."""

OTHER_TITLE = "City council approves new budget for public libraries and late opening hours"
OTHER_BODY = """\
The city council voted on Monday to raise the budget of its public libraries by twelve \
percent, ending a long dispute over opening hours that had divided the governing coalition.
Branches in the eastern districts will stay open until nine in the evening on weekdays, and \
two reading rooms that closed during the pandemic will reopen next month with new staff.
Librarians said the money would also pay for repairs to leaking roofs and for a mobile \
library that will visit villages on the edge of the city twice a week."""


def _truncate(body: str, keep: float) -> str:
    words = body.split()
    return " ".join(words[: round(len(words) * keep)]) + " …"


def _sig(title: str, body: str, **kw: object) -> bytes:
    sig = signature(title, body, **kw)  # type: ignore[arg-type]
    assert sig is not None
    return sig


def test_signature_shape() -> None:
    sig = _sig(TITLE, BODY)
    assert len(sig) == SIGNATURE_BYTES == NUM_PERM * 4
    keys = band_keys(sig)
    assert len(keys) == BANDS
    assert all(0 <= k < 2**63 for k in keys)  # fits a BIGINT column
    assert similarity(sig, sig) == 1.0


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Talks end with a deal to reopen the border crossing | Reuters", BODY),  # new headline
        (TITLE, f"By Staff Reporter\n{BODY}\nRead more:\n© AFP 2024. All rights reserved."),
        (TITLE, _truncate(BODY, 0.6)),
        (
            "UPDATE 1-Ministers agree to reopen border crossing",
            f"Agencies\n{_truncate(BODY, 0.6)}\nSign up for our newsletter to get the news.",
        ),
        (TITLE, BODY.replace("on Tuesday", "late on Tuesday").replace("six weeks", "two months")),
    ],
    ids=["new-headline", "boilerplate", "truncated-60", "all-together", "edited"],
)
def test_copies_are_near_duplicates(title: str, body: str) -> None:
    original, copy = _sig(TITLE, BODY), _sig(title, body)
    assert similarity(original, copy) >= NEAR_DUP_THRESHOLD
    assert set(band_keys(original)) & set(band_keys(copy))


def test_unrelated_reports_are_not() -> None:
    assert similarity(_sig(TITLE, BODY), _sig(OTHER_TITLE, OTHER_BODY)) < 0.1


@pytest.mark.skipif(not REAL_FEEDS.is_dir(), reason=f"corpora not found at {REAL_FEEDS}")
def test_unrelated_items_of_one_real_feed_stay_apart() -> None:
    from monitor.parse import parse_feed

    for name in ("rss-parser/guardian.rss", "node-feedparser/tpm.atom"):
        raw = (REAL_FEEDS / name).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        items = parse_feed(raw, feed="f", url="https://example.org/").items
        bodies = [i.content or i.summary for i in items]
        learnt = repeated_lines(bodies)
        pairs = zip(items, bodies, strict=True)
        sigs = [signature(i.title, b, boilerplate=learnt) for i, b in pairs]
        present = [s for s in sigs if s]
        assert len(present) >= 10
        for a, b in itertools.combinations(present, 2):
            assert similarity(a, b) < NEAR_DUP_THRESHOLD


def test_short_texts_have_no_signature() -> None:
    assert signature("Live updates", "") is None
    assert signature(TITLE, "A few more words here.") is None
    assert signature("", " ".join(["word"] * (MIN_WORDS_FOR_NEAR_DUP - 1))) is None
    assert signature("", " ".join(["word"] * MIN_WORDS_FOR_NEAR_DUP)) is not None
    # Boilerplate does not count towards the minimum.
    dressed = "By Staff Reporter\nShort text.\n© AFP 2024 all rights reserved"
    assert signature(TITLE, dressed) is None


# Changing any constant of neardup (k, seeds, folding, banding) changes these: stored band keys
# and signatures must then be recomputed, so a failure here is a migration, not a test to update
# lightly.
GOLDEN_FIRST_BAND_KEY = 594897786352551130
GOLDEN_SIG_PREFIX = "2b7187000a654e01"


def test_golden_band_key() -> None:
    sig = _sig(TITLE, BODY)
    assert band_keys(sig)[0] == GOLDEN_FIRST_BAND_KEY
    assert sig[:8].hex() == GOLDEN_SIG_PREFIX


def test_same_bytes_in_another_process() -> None:
    code = (
        "import sys; from monitor.neardup import signature, band_keys; "
        "from tests.test_neardup import TITLE, BODY; s = signature(TITLE, BODY); "
        "sys.stdout.write(s.hex() + ' ' + ','.join(map(str, band_keys(s))))"
    )
    root = Path(__file__).resolve().parents[1]
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    sig = _sig(TITLE, BODY)
    assert outs == {sig.hex() + " " + ",".join(map(str, band_keys(sig)))}


def test_band_keys_collide_for_near_copies() -> None:
    """Copies with 10% of words replaced (Jaccard of 3-shingles ~0.6: a band matches with
    probability 1 - (1 - 0.6^2)^16 = 0.999) share a band nearly always; unrelated texts almost
    never. Measured: 0.98 of copies (the 32 minima of one fixed text are a small sample)."""
    rng = random.Random(1234)
    vocabulary = sorted(set((BODY + OTHER_BODY).lower().split()))
    words = BODY.split()
    trials, shared = 200, 0
    original = set(band_keys(_sig(TITLE, BODY)))
    for _ in range(trials):
        copy = [rng.choice(vocabulary) if rng.random() < 0.1 else w for w in words]
        shared += bool(original & set(band_keys(_sig(TITLE, " ".join(copy)))))
    assert shared >= 0.95 * trials

    unrelated = 0
    for _ in range(trials):
        text = " ".join(rng.choice(vocabulary) for _ in range(120))
        unrelated += bool(original & set(band_keys(_sig("", text))))
    assert unrelated <= 0.02 * trials


PERSIAN_TITLE = "وزیران خارجه برای بازگشایی گذرگاه مرزی شمالی به توافق رسیدند"
PERSIAN_BODY = """\
وزیران خارجه چهار کشور همسایه روز سه‌شنبه توافق کردند که گذرگاه مرزی شمالی را که از زمان \
سیل ماه مارس به روی کامیون‌ها و مسافران بسته بود دوباره باز کنند. این گذرگاه پیش از بسته شدن \
حدود یک سوم تجارت زمینی منطقه را جابه‌جا می‌کرد و بازرگانان دو طرف هفته‌ها منتظر مانده‌اند. \
بر اساس این توافق، مهندسان ظرف شش هفته یک پست گمرکی موقت می‌سازند و هزینه ساخت ایستگاه دائمی \
میان کشورها تقسیم می‌شود. گروه‌های امدادی از این تصمیم استقبال کردند اما هشدار دادند که جاده \
منتهی به گذرگاه هنوز در چند نقطه آسیب دیده است."""


def test_persian_text() -> None:
    sig = _sig(PERSIAN_TITLE, PERSIAN_BODY)
    # Arabic letter forms, joiners removed and tatweel: the same words after folding.
    variant = (
        PERSIAN_BODY.replace("ی", "ي").replace("ک", "ك").replace("\u200c", "").replace("ن", "نـ")
    )
    assert similarity(sig, _sig(PERSIAN_TITLE, variant)) == 1.0
    copy = _sig("توافق برای بازگشایی گذرگاه مرزی", _truncate(PERSIAN_BODY, 0.6))
    assert similarity(sig, copy) >= NEAR_DUP_THRESHOLD
    assert similarity(sig, _sig(TITLE, BODY)) == 0.0


def test_strip_boilerplate_keeps_the_story() -> None:
    dressed = f"By Jane Doe, AFP\n{BODY}\nFollow us on Twitter for the latest.\nReuters"
    assert strip_boilerplate(dressed) == BODY
    assert strip_boilerplate("One line, © AFP") == "One line, © AFP"  # one line is kept whole


def test_repeated_lines_learn_an_outlets_footer() -> None:
    footer = "Stay informed with breaking news alerts on your phone, wherever you are."
    bodies = [f"{BODY}\n{footer}", f"{OTHER_BODY}\n{footer}", "Something else entirely here."]
    learnt = repeated_lines(bodies)
    assert learnt == {" ".join(neardup.shingle_words(footer))}
    plain = _sig(TITLE, BODY)
    assert _sig(TITLE, f"{BODY}\n{footer}", boilerplate=learnt) == plain


def test_misuse_is_an_error() -> None:
    with pytest.raises(ValueError, match="signature is"):
        similarity(b"\x00" * 4, _sig(TITLE, BODY))
    with pytest.raises(ValueError, match="signature is"):
        band_keys(b"")


def test_dedupe_reexports() -> None:
    assert dedupe.signature is signature
    assert dedupe.NEAR_DUP_THRESHOLD == NEAR_DUP_THRESHOLD


def test_the_default_policy_is_the_measured_one() -> None:
    # model.py may import only the standard library, so DedupePolicy cannot name these
    # constants; this keeps the defaults users get equal to the figures behind them.
    policy = DedupePolicy()
    assert (policy.threshold, policy.min_words) == (
        neardup.NEAR_DUP_THRESHOLD,
        neardup.MIN_WORDS_FOR_NEAR_DUP,
    )


def test_similarities_are_the_floats_similarity_gives_one_by_one() -> None:
    rng = random.Random(9)
    sig = _sig(TITLE, BODY)
    others = [
        sig,
        _sig(TITLE, BODY + " Reporting by Outlet 7."),
        _sig(OTHER_TITLE, OTHER_BODY),
        # Half its values shared with `sig`: an estimate strictly between 0 and 1.
        bytes(b if i < len(sig) // 2 else rng.randrange(256) for i, b in enumerate(sig)),
    ]
    assert neardup.similarities(sig, others) == [similarity(sig, o) for o in others]
    assert neardup.similarities(sig, []) == []
    with pytest.raises(ValueError):
        neardup.similarities(sig, [sig, b"short"])
