"""Article extraction: the text rules see is the article's, not its sidebar's or its comments'.

The pages are built here from the seeds of issue 5 (../shared/seeds/: text dumps of article pages
that carry unrelated stories, "Related Posts" and "Leave a Reply"), laid out the way news sites
lay them out: navigation, the article with a captioned photo, a sidebar of other stories, related
posts, a comment form and a footer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.extract import MAX_BODY, MAX_ELEMENTS, Article, extract_article
from monitor.model import Item, Rule
from monitor.rules import RuleSet, compile_rules

URL = "https://news.example.org/world/iran-russia-treaty"
HTML = {"content-type": "text/html; charset=utf-8"}
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

# From seed 004: the Iran–Russia article, then the site's unrelated Taiwan stories.
IRAN_TITLE = "Russia and Iran open talks before signing broad cooperation pact"
IRAN = [
    "The presidents of Russia and Iran yesterday opened their talks in the Kremlin before "
    "signing a broad cooperation pact.",
    "The Kremlin said that the “comprehensive strategic partnership treaty” to be signed by "
    "Russian President Vladimir Putin and his Iranian counterpart, Masoud Pezeshkian, covers all "
    "areas — from trade and military cooperation to science, education and culture.",
    "After laying a wreath at the Tomb of the Unknown Soldier at the Kremlin Wall, Pezeshkian and "
    "Putin sat down for talks in the Kremlin, their third meeting since the Iranian leader’s "
    "election in July.",
    "Kremlin spokesman Dmitry Peskov dismissed any link with Trump’s inauguration, saying the "
    "signing had been planned long ago.",
    "Russia built Iran’s first nuclear plant that was launched in 2013 and is building two more "
    "nuclear reactors there.",
    "In particular, Iran wants sophisticated Russian weapons, such as long-range air defense "
    "systems and fighter jets, to help fend off possible attacks by Israel.",
]
CAPTION = "Russian President Vladimir Putin and Iranian President Masoud Pezeshkian. Photo: AFP"
TAIWAN = [
    (
        "Japan to let Taiwanese spouses list Taiwan as home country",
        "The government yesterday thanked Japan for revising rules that would allow Taiwanese "
        "nationals married to Japanese citizens to list their home country as “Taiwan” in the "
        "official family record database. At present, Taiwanese have to select “China.”",
    ),
    (
        "MAC received 65 petitions over Taiwanese detained in China",
        "The Mainland Affairs Council has since Jan. 1 last year received 65 petitions regarding "
        "Taiwanese who were interrogated or detained in China, MAC Minister Chiu Chui-cheng said "
        "yesterday in a radio interview.",
    ),
    (
        "Taiwan blacklists two Chinese universities",
        "Taiwan has blacklisted two Chinese universities from conducting academic exchange "
        "programs in the nation after reports that the institutes are arms of Beijing’s United "
        "Front Work Department, the education minister said.",
    ),
]
# From seed 002: what follows the article on a blog-style site.
RELATED = [
    (
        "Vanguard fined more than $100 million by SEC",
        "Asset management giant Vanguard fined more than $100 million settlement costs. The U.S. "
        "Securities and Exchange Commission said the violations involved target-date funds.",
    ),
    (
        "There is a ‘backlash against gender balance everywhere’",
        "For our first Talking Europe interview with the new group of EU commissioners, we "
        "hosted Hadja Lahbib, who is in charge of preparedness and crisis management.",
    ),
]
COMMENT = (
    "Honestly the Vanguard fine is the real story here, and nobody in Taipei cares about this "
    "treaty at all, mark my words."
)


def page(
    title: str,
    paragraphs: list[str],
    *,
    caption: str | None = None,
    sidebar: Sequence[tuple[str, str]] = (),
    related: Sequence[tuple[str, str]] = (),
    comment: str | None = None,
    charset: str = "utf-8",
) -> str:
    """A news page as sites serve them, around ``paragraphs``."""
    e = html.escape
    figure = ""
    if caption:
        # Printed twice, as many sites do: under the photo and again in the gallery's credit.
        figure = (
            f'<figure><img src="/p/1.jpg" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption>'
            f'</figure><div class="gallery-credit"><p>{e(caption)}</p></div>'
        )
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    teasers = "\n".join(
        f'<li class="teaser"><h3><a href="/taiwan/{i}">{e(h)}</a></h3><p>{e(t)}</p></li>'
        for i, (h, t) in enumerate(sidebar)
    )
    posts = "\n".join(
        f'<article class="related-post"><h4><a href="/r/{i}">{e(h)}</a></h4><p>{e(t)}</p></article>'
        for i, (h, t) in enumerate(related)
    )
    comments = ""
    if comment:
        comments = (
            '<section id="comments" class="comments-area"><h3>1 Comment</h3>'
            '<ol class="comment-list">'
            f'<li class="comment"><div class="comment-author">Reader</div><p>{e(comment)}</p></li>'
            '</ol><div id="respond"><h3>Leave a Reply</h3><p>Your email address will not be '
            "published. Required fields are marked *</p><form><textarea></textarea></form></div>"
            "</section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="{charset}"><title>{e(title)} | Example News</title>
<meta property="og:title" content="{e(title)}">
<meta name="author" content="Example Staff">
<meta property="article:published_time" content="2025-01-17T09:30:00+03:00">
</head><body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/taiwan">Taiwan</a></li><li><a href="/business">Business</a></li></ul></nav></header>
<main><article class="post">
<h1>{e(title)}</h1><p class="byline">By Example Staff</p>
{figure}
<div class="entry-content">
{body}
</div>
<div class="share"><a href="#">Share on Facebook</a> <a href="#">Share on X</a></div>
</article>
{f'<section class="related-posts"><h3>Related Posts</h3>{posts}</section>' if posts else ""}
{comments}
</main>
{f'<aside class="sidebar"><h2>Taiwan News</h2><ul>{teasers}</ul></aside>' if teasers else ""}
<footer><p>© 2025 Example News. All rights reserved.</p><a href="/privacy">Privacy</a></footer>
</body></html>"""


def iran_page() -> bytes:
    markup = page(
        IRAN_TITLE, IRAN, caption=CAPTION, sidebar=TAIWAN, related=RELATED, comment=COMMENT
    )
    return markup.encode("utf-8")


def ruleset(**queries: str) -> RuleSet:
    return compile_rules([Rule(name=n, query=q) for n, q in queries.items()], {})


def fired(rules: RuleSet, text: str) -> set[str]:
    item = Item(feed="f", guid="g", url=URL, title="", summary="", text=text)
    return {m.rule for m in rules.match(item)}


RULES = ruleset(
    taiwan="Taiwan OR Taiwanese OR Taipei",
    vanguard="Vanguard OR SEC",
    comments='"Leave a Reply" OR "mark my words"',
    treaty="text:((Iran OR Iranian) AND (Kremlin OR Moscow) AND (treaty OR pact))",
    weapons='"air defense" NEAR "fighter jets"',  # the last paragraph
)


# --- the article, and only the article -------------------------------------------------------


def test_rules_see_the_article_not_the_sidebar_related_posts_or_comments() -> None:
    article = extract_article(iran_page(), url=URL, headers=HTML)
    assert article.problem is None
    surroundings = " ".join(f"{h} {t}" for h, t in TAIWAN + RELATED) + " Leave a Reply " + COMMENT
    # The rules would fire on the page's surroundings: the test is not vacuous.
    assert fired(RULES, surroundings) == {"taiwan", "vanguard", "comments"}
    assert fired(RULES, article.text) == {"treaty", "weapons"}


def test_text_is_the_paragraphs_in_order_with_the_caption_once() -> None:
    article = extract_article(iran_page(), url=URL, headers=HTML)
    paragraphs = article.text.split("\n\n")
    positions = [paragraphs.index(p) for p in IRAN]
    assert positions == sorted(positions)
    assert article.text.count("Photo: AFP") <= 1
    for noise in ("Share on Facebook", "All rights reserved", "Home", "Taiwan News"):
        assert noise not in paragraphs


def test_metadata() -> None:
    article = extract_article(iran_page(), url=URL, headers=HTML)
    assert article.title == IRAN_TITLE
    assert article.author == "Example Staff"
    assert article.published == datetime(2025, 1, 17, 6, 30, tzinfo=UTC)


def _seed_parts(path: Path) -> tuple[list[str], list[str]]:
    """A seed dump split into the article's paragraphs and the unrelated text that followed it.

    The split points were read off each dump by hand: the first line that is no longer the
    article (another story, "Source link", "Read More", ...).
    """
    ends = {
        "000": "Iran: Partnership Pact with Russia",
        "001": "FILE - Prominent Iranian",
        "002": "Source link",
        "003": "Read More",
        "004": "‘CORRECT IDENTIFICATION’",
    }
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    cut = next(i for i, ln in enumerate(lines) if ln.startswith(ends[path.name[:3]]))
    boiler = {"TT", "Accessibility links", "Breaking News", "Iran", "Photo: AFP"}
    article = [ln for ln in lines[:cut] if len(ln.split()) > 12 and ln not in boiler]
    rest = [ln for ln in lines[cut:] if len(ln.split()) > 12]
    return list(dict.fromkeys(article)), rest


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds not present")
@pytest.mark.parametrize("name", sorted(p.name for p in SEEDS.glob("*.txt")) or ["none"])
def test_seed_pages_keep_the_article_and_drop_what_follows(name: str) -> None:
    paragraphs, rest = _seed_parts(SEEDS / name)
    # The first paragraph that reads like a caption (repeated in the dump) becomes the figure.
    half = len(rest) // 2
    body = page(
        paragraphs[0][:90],
        paragraphs,
        caption="Photo: AFP / pool",
        sidebar=[(t[:60], t) for t in rest[:half]],
        related=[(t[:60], t) for t in rest[half:]],
        comment=COMMENT,
    ).encode("utf-8")
    article = extract_article(body, url=URL, headers=HTML)
    assert article.problem is None
    got = _shingles(article.text)
    # The article's last paragraph (the "Evin prison in the ninth paragraph" case) is there...
    assert _shingles(paragraphs[-1]) <= got
    wanted = [_shingles(p) for p in paragraphs]
    kept = sum(len(w & got) for w in wanted) / sum(len(w) for w in wanted)
    assert kept > 0.95
    # ... and nothing of the stories, posts and comments around it.
    for other in [*rest, COMMENT]:
        assert not _shingles(other) & got, other[:60]


# --- hostile and odd input: values, never exceptions -----------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (b"", HTML, "empty body"),
        (b"   \n\t ", HTML, "empty body"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", {"content-type": "application/pdf"}, "not HTML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "not HTML"),
        (bytes(range(256)) * 64, {}, "not HTML"),
        (b'{"title": "Iran", "body": "json"}', {"content-type": "application/json"}, "not HTML"),
        (b"Just a line of plain text, no markup at all.\n" * 50, {}, "not HTML"),
        (b"<html><body><nav><a href='/'>Home</a></nav></body></html>", HTML, "no main text"),
        (b"<<<<>>>>&&&&<!--<![CDATA[<?xml", HTML, "no main text"),
        (b"<html>" + b"<div>" * 50_000 + b"deep", HTML, ""),
    ],
    ids=["empty", "blank", "pdf", "png", "binary", "json", "plain", "no-article", "junk", "deep"],
)
def test_unusable_bodies_give_a_problem(body: bytes, headers: dict[str, str], problem: str) -> None:
    article = extract_article(body, url=URL, headers=headers)
    assert article.text == ""
    assert article.problem is not None
    assert problem in article.problem


_FRAGMENTS = st.sampled_from(
    [
        "<html>", "<body>", "<article>", "</article>", "<p>", "</p>", "<div>", "</div>", "<script>",
        "<!--", "-->", "<![CDATA[", "<?xml version='1.0' encoding='utf-16'?>", "<meta charset=x>",
        "&amp;", "&#0;", "&#xD800;", "\x00", "\ufeff", "Iran and Russia sign a treaty. ", "<table>",
        "<td>", "<svg>", "<math>", "<template>", "<br/>", "é", "ی", "\u202e",
    ]
)  # fmt: skip


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(_FRAGMENTS | st.text(max_size=20), max_size=60),
    st.sampled_from(["utf-8", "utf-16-le", "cp1256", "latin-1"]),
    st.sampled_from(["", "text/html", "text/html; charset=utf-16", "text/html; charset=nope"]),
)
def test_never_raises(parts: list[str], encoding: str, ctype: str) -> None:
    body = "".join(parts).encode(encoding, errors="replace")
    article = extract_article(body, url=URL, headers={"content-type": ctype}, max_chars=500)
    if article.text:
        assert article.problem is None or article.problem.startswith("text cut")
    else:
        assert article.problem
    assert len(article.text) <= 500


def test_huge_body_is_refused_unparsed() -> None:
    body = iran_page() + b"<p>" + b"x " * (MAX_BODY // 2) + b"</p>"
    article = extract_article(body, url=URL, headers=HTML)
    assert article == Article("", None, None, None, article.problem)
    assert article.problem is not None and "too large" in article.problem


def test_page_with_too_many_elements_is_refused_unparsed() -> None:
    body = b"<html><body>" + b"<p>A short paragraph of words.</p>" * (MAX_ELEMENTS + 1)
    article = extract_article(body, url=URL, headers=HTML)
    assert article.text == ""
    assert article.problem is not None and "too complex" in article.problem


def test_html_served_with_a_wrong_type_is_still_read() -> None:
    article = extract_article(iran_page(), url=URL, headers={"Content-Type": "text/plain"})
    assert IRAN[0] in article.text


@pytest.mark.parametrize("limit", [0, 50, 400, 1_000])
def test_max_chars_cuts_at_a_boundary(limit: int) -> None:
    full = extract_article(iran_page(), url=URL, headers=HTML).text
    article = extract_article(iran_page(), url=URL, headers=HTML, max_chars=limit)
    assert len(article.text) <= limit
    assert full.startswith(article.text)
    assert article.problem == f"text cut at {limit} characters"
    if article.text:
        assert full[len(article.text)] in " \n"  # never mid-word


def test_no_cut_no_problem() -> None:
    article = extract_article(iran_page(), url=URL, headers=HTML, max_chars=10**6)
    assert article.problem is None


# --- decoding --------------------------------------------------------------------------------

ARABIC_TITLE = "وزيرات الخارجية يجتمعن لبحث الاحتجاجات في إيران"
ARABIC = [
    "تعقد وزيرات الخارجية في العالم اجتماعا افتراضيا يوم الخميس لبحث الاحتجاجات الجارية في "
    "إيران، بدعوة من كندا، بحسب بيان صدر يوم الأربعاء.",
    "وقالت الوزيرة الكندية إن الاجتماع سيستمع إلى نساء من أصول إيرانية ويبحث أوضاع حقوق المرأة "
    "وحقوق الإنسان في إيران، ومنها أوضاع السجينات في سجن إيفين.",
    "وكانت كندا قد انضمت إلى دول أخرى، من بينها الولايات المتحدة، في فرض عقوبات على مسؤولين "
    "إيرانيين بسبب قمع المحتجين.",
]
FRENCH_TITLE = "Téhéran et Moscou signent un traité de partenariat stratégique"
FRENCH = [
    "Le président iranien Massoud Pezeshkian est arrivé vendredi à Moscou pour des entretiens "
    "avec Vladimir Poutine, scellant une alliance née d’un désir commun de défier l’Occident.",
    "L’accord prévoit une coopération élargie dans le commerce, l’énergie et les transports, mais "
    "ne comprend pas de clause de défense mutuelle, selon l’ambassadeur à Moscou.",
    "Les deux pays, soumis à de lourdes sanctions, cherchent à développer une alternative au "
    "réseau Swift et un corridor ferroviaire vers le golfe Persique.",
]


@pytest.mark.parametrize(
    ("title", "paragraphs", "charset", "declared_in"),
    [
        (ARABIC_TITLE, ARABIC, "windows-1256", "header"),
        (ARABIC_TITLE, ARABIC, "windows-1256", "meta"),
        (ARABIC_TITLE, ARABIC, "windows-1256", "nowhere"),
        (FRENCH_TITLE, FRENCH, "windows-1252", "header"),
        (FRENCH_TITLE, FRENCH, "iso-8859-1", "meta"),
        (FRENCH_TITLE, FRENCH, "iso-8859-1", "nowhere"),
    ],
)
def test_charsets(title: str, paragraphs: list[str], charset: str, declared_in: str) -> None:
    markup = page(title, paragraphs, sidebar=TAIWAN, charset=charset)
    if declared_in != "meta":
        markup = markup.replace(f'<meta charset="{charset}">', "")
    # ’ is not in ISO-8859-1; pages that declare it hold windows-1252 bytes (0x92) for it.
    body = markup.encode("cp1252" if charset == "iso-8859-1" else charset)
    ctype = f"text/html; charset={charset}" if declared_in == "header" else "text/html"
    article = extract_article(body, url=URL, headers={"Content-Type": ctype})
    assert article.problem is None
    for p in paragraphs:
        assert p in article.text
    assert article.title == title


def test_header_charset_wins_over_meta_and_bom_wins_over_both() -> None:
    markup = page(FRENCH_TITLE, FRENCH, charset="utf-8")
    body = markup.encode("cp1252")
    got = extract_article(body, url=URL, headers={"content-type": "text/html; charset=cp1252"})
    assert FRENCH[0] in got.text
    bom = "\ufeff".encode("utf-16-le") + markup.encode("utf-16-le")
    got = extract_article(bom, url=URL, headers={"content-type": "text/html; charset=cp1252"})
    assert FRENCH[0] in got.text


def test_unknown_charset_label_falls_back_to_detection() -> None:
    body = page(FRENCH_TITLE, FRENCH, charset="x-no-such-charset").encode("utf-8")
    got = extract_article(body, url=URL, headers={"content-type": "text/html; charset=bogus"})
    assert FRENCH[1] in got.text


def test_same_page_same_text_however_often() -> None:
    # trafilatura's process-wide deduplication would empty the fourth copy of a wire story.
    first = extract_article(iran_page(), url=URL, headers=HTML)
    for _ in range(5):
        assert extract_article(iran_page(), url=URL, headers=HTML) == first
