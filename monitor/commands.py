"""The `newsmon` commands that touch the store or the network (the CLI's second half).

Each function takes validated `Settings`, prints for a person on standard output (problems on
standard error), and returns the process exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.articles import with_article_text
from monitor.config import Settings
from monitor.dedupe import canonical_url
from monitor.extract import extract_article
from monitor.fetch import Fetcher
from monitor.health import assess_all
from monitor.model import Copy, Delivery, Item, Match, Rule
from monitor.notify import Notifier, mask_url
from monitor.parse import parse_feed
from monitor.rules import RuleSet, admits, compile_rules, format_explanation
from monitor.scheduler import Daemon, utcnow
from monitor.store import Store


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def highlight(match: Match, *, start: str = "[", end: str = "]") -> str:
    """The match's snippet with each highlighted span wrapped in `start`…`end`."""
    out: list[str] = []
    cursor = 0
    for lo, hi in sorted(match.highlights):
        if lo < cursor:  # overlapping spans: the first one wins
            continue
        out.append(match.snippet[cursor:lo])
        out.append(f"{start}{match.snippet[lo:hi]}{end}")
        cursor = hi
    out.append(match.snippet[cursor:])
    return "".join(out)


async def poll_once(settings: Settings) -> int:
    async with Daemon(settings) as daemon:
        outcomes = await daemon.poll_once()
        report = await daemon.deliver()
    failed = [o for o in outcomes if o.error]
    print(
        f"polled {len(outcomes)} feeds: {sum(o.new_items for o in outcomes)} new items, "
        f"{sum(o.not_modified for o in outcomes)} unchanged, {len(failed)} failed; "
        f"alerts queued {sum(o.alerts for o in outcomes)}, sent {report.sent}, "
        f"retrying {report.retried}, dead {report.dead}"
    )
    for outcome in failed:
        print(f"  {outcome.feed}: {outcome.error}", file=sys.stderr)
    return 0


def _read_file(source: str) -> tuple[bytes, str]:
    path = Path(source).absolute()
    return path.read_bytes(), path.as_uri()


async def _items_from(settings: Settings, source: str, feed: str, *, full_text: bool) -> list[Item]:
    """The items of a feed file or URL, as items of the feed named `feed`; with `full_text`,
    each with its article's main text.

    A URL that answers with an article page rather than a feed is taken as that one article.
    """
    allow = settings.http.allow_networks
    async with Fetcher(settings.http_policy(), allow_networks=allow) as fetcher:
        if source.startswith(("http://", "https://")):
            result = await fetcher.fetch(source)
            if result.body is None:
                raise RuntimeError(f"{source}: {result.error or 'no body'}")
            body, url, headers = result.body, result.final_url, dict(result.headers)
        else:
            body, url = await asyncio.to_thread(_read_file, source)
            headers = {}
        parsed = parse_feed(body, feed=feed, url=url, headers=headers)
        if not parsed.items and full_text and url.startswith("http"):
            return [await _article_item(feed, body, url, headers)]
        if parsed.problem:
            print(f"{source}: {parsed.problem}", file=sys.stderr)
        if not full_text:
            return list(parsed.items)
        return list(await asyncio.gather(*(with_article_text(fetcher, i) for i in parsed.items)))


async def _article_item(feed: str, body: bytes, url: str, headers: dict[str, str]) -> Item:
    article = await asyncio.to_thread(extract_article, body, url=url, headers=headers)
    return Item(
        feed=feed,
        guid=url,
        url=url,
        title=article.title or "",
        summary="",
        author=article.author or "",
        published=article.published,
        text=article.text,
        text_problem=article.problem,
        page_title=article.title or "",
        page_author=article.author or "",
        page_published=article.published,
    )


def _show_text(item: Item) -> None:
    if item.text_problem and not item.text:
        print(f"--- {item.url}: no article text: {item.text_problem}")
        return
    note = f"; {item.text_problem}" if item.text_problem else ""
    print(f"--- text the rules see for {item.url} ({len(item.text)} characters{note})")
    print(item.text)
    print("---")


@dataclass
class _Run:
    """One `rules test`: prints each match as it is found and counts what it tested."""

    ruleset: RuleSet
    rules: Sequence[Rule]
    tags: Mapping[str, tuple[str, ...]]  # configured feed name -> its tags
    show_text: bool  # print the text the rules see before each item's matches
    items: int = 0
    hits: dict[str, int] = field(default_factory=dict)  # rule name -> items it matched
    # (item, rule) pairs never tested because the rule's `feeds:` leaves the item's feed out
    filtered: int = 0

    def __post_init__(self) -> None:
        self.hits = {r.name: 0 for r in self.rules}
        self._filtering = [r for r in self.rules if r.enabled and r.feeds]

    def test(self, items: Iterable[Item]) -> None:
        for item in items:
            self.items += 1
            tags = self.tags.get(item.feed, ())
            self.filtered += sum(not admits(r, item.feed, tags) for r in self._filtering)
            if self.show_text:
                _show_text(item)
            for match in self.ruleset.match(item, feed_tags=tags):
                self.hits[match.rule] += 1
                print(f"{match.rule}  {item.feed}  {_when(item.published)}  {item.title}")
                if item.url:
                    print(f"    {item.url}")
                print(f"    {highlight(match)}")

    def summary(self, hint: str = "") -> None:
        counts = ", ".join(f"{name}: {count}" for name, count in self.hits.items())
        print(f"{self.items} items tested; matches: {counts}")
        if self.filtered:
            print(f"{self.filtered} (item, rule) pairs skipped by the rules' feeds: filters{hint}")


async def rules_test(
    settings: Settings,
    rule: str | None,
    since: timedelta,
    source: str | None,
    *,
    explain: str | None = None,
    full_text: bool = False,
    feed: str | None = None,
) -> int:
    """Run the rules (or the one named `rule`) and print what they match.

    Over every stored item fetched within `since` (read a page at a time, oldest first), or
    over the feed file or URL `source`. `source`'s items belong to the configured feed named
    `feed`, else to the configured feed whose URL is `source`, else to a feed named `source`
    (which only rules without `feeds:` see). With `explain`, a GUID or URL: why that item did
    or did not match, clause by clause; looked up among `source`'s items, or in the whole
    store whatever its age.
    """
    rules = [r for r in settings.rule_values() if rule is None or r.name == rule]
    if not rules:
        print(f"no rule named {rule!r}", file=sys.stderr)
        return 1
    ruleset = compile_rules(rules, settings.aliases)
    feeds = {f.name: f for f in settings.feed_values()}
    run = _Run(ruleset, rules, {name: f.tags for name, f in feeds.items()}, full_text)
    if source is None:
        async with await Store.open(settings.database) as store:
            if explain is not None:
                found = await store.find_items(explain, canonical_url(explain))
                return _explain(run, found, explain, "in the store")
            async for page in store.item_pages(utcnow() - since):
                run.test(page)
        run.summary()
        return 0

    if feed is not None:
        configured = feeds.get(feed)
        if configured is None:
            names = ", ".join(feeds) or "none"
            print(f"no feed named {feed!r} (configured: {names})", file=sys.stderr)
            return 1
    else:
        configured = next((f for f in feeds.values() if f.url == source), None)
    name = source if configured is None else configured.name
    try:
        items = await _items_from(settings, source, name, full_text=full_text)
    except (OSError, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 1
    if configured is not None:
        tags = f" (tags: {', '.join(configured.tags)})" if configured.tags else ""
        print(f"{source}: tested as feed {name!r}{tags}")
    if explain is not None:
        return _explain(run, _find(items, explain), explain, f"among the {len(items)} tested")
    run.test(items)
    hint = "" if configured else "; add --feed NAME to test them as a configured feed"
    run.summary(hint)
    return 0


def _find(items: Sequence[Item], wanted: str) -> list[Item]:
    """The items whose GUID or URL is `wanted`, URLs compared canonically too."""
    key = canonical_url(wanted)
    return [i for i in items if wanted in (i.guid, i.url) or (key and canonical_url(i.url) == key)]


def _explain(run: _Run, found: Sequence[Item], wanted: str, where: str) -> int:
    """Print, for the first of `found` (the items whose GUID or URL is `wanted`), each rule's
    clause-by-clause verdict."""
    if not found:
        print(f"no item with GUID or URL {wanted!r} {where}", file=sys.stderr)
        return 1
    item = found[0]
    print(f"{item.feed}  {_when(item.published)}  {item.title}")
    tags = run.tags.get(item.feed, ())
    for rule in run.rules:
        print()
        print(format_explanation(run.ruleset.explain(item, rule.name, feed_tags=tags)))
    return 0


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def feeds(settings: Settings) -> int:
    """Feed health as the daemon judges it: ok, failing or silent past `expect_update`."""
    now = utcnow()
    async with await Store.open(settings.database) as store:
        states = {s.name: s for s in await store.feed_states()}
    report = assess_all(settings.feed_values(), states.values(), now, observed_since=now)
    rows = []
    for health in report:
        state = states.get(health.feed)
        rows.append(
            (
                health.feed,
                health.state,
                _when(state.last_success if state else None),
                _when(state.last_new_item if state else None),
                _when(state.next_poll if state else None),
                state.error_count if state else 0,
                health.reason or (state.last_error if state else None) or "",
            )
        )
    _table(
        rows, ("feed", "state", "last success", "last new item", "next poll", "errors", "reason")
    )
    return 0


async def alerts(settings: Settings, limit: int) -> int:
    async with await Store.open(settings.database) as store:
        rows = await store.alerts(limit)
        holds = await store.holds([a.id for a in rows if a.status == "held"])
    _table(
        [
            (a.id, _when(a.created), a.status, a.attempts, a.rule, a.channel, a.feed, a.title)
            for a in rows
        ],
        ("id", "created", "status", "tries", "rule", "channel", "feed", "title"),
    )
    for a in rows:
        hold = holds.get(a.id)
        if a.status == "held" and hold is not None:
            reason, until = hold
            print(f"  #{a.id}: held ({_HOLD_REASONS.get(reason, reason)}) until {_when(until)}")
        if a.status != "sent" and a.last_error:
            print(f"  #{a.id}: {a.last_error}")
    dead = sum(a.status == "dead" for a in rows)
    if dead:
        print(f"{dead} dead: `newsmon alerts retry ID` or `newsmon alerts retry --dead` resends")
    return 0


# Why a delivery waits, as `newsmon alerts` says it.
_HOLD_REASONS = {
    "digest": "for the channel's digest",
    "quiet": "quiet hours",
    "rate": "max_per_hour reached; goes in one digest",
}


async def alerts_retry(settings: Settings, alert_id: int | None, *, dead: bool) -> int:
    """Queue dead alerts again: the alert `alert_id` (the id `alerts` shows), or all."""
    async with await Store.open(settings.database) as store:
        count = await store.retry_dead(None if dead else alert_id, utcnow())
    if count == 0 and not dead:
        print(f"no dead alert with id {alert_id}", file=sys.stderr)
        return 1
    print(f"{count} alert(s) queued again; a running daemon sends them within seconds")
    return 0


async def stories(settings: Settings, limit: int) -> int:
    async with await Store.open(settings.database) as store:
        rows = await store.stories(limit)
    _table(
        [(_when(s.first_seen), s.items, _carried(s.carried, s.first_seen), s.title) for s in rows],
        ("first seen", "items", "reported by", "title"),
    )
    return 0


def _carried(carried: Sequence[tuple[str, datetime]], first: datetime) -> str:
    """ "wire, paper +12m, tass +3h": each outlet and how long after the first it came."""
    parts = []
    for feed, when in carried:
        delay = int((when - first).total_seconds() // 60)
        if delay <= 0:
            parts.append(feed)
        elif delay < 120:
            parts.append(f"{feed} +{delay}m")
        else:
            parts.append(f"{feed} +{delay // 60}h")
    return ", ".join(parts)


def sample_alert(channel: str, now: datetime) -> Delivery:
    """A made-up alert for `send-test`, with every part a real one has (link, source, time,
    rule, highlighted passage, another outlet), its title saying it is a test.

    Its story is this moment's, so its email Message-ID is new on every run: a mail client
    must not fold a second test into the first as a resend of it.
    """
    snippet = "Lawmakers voted on Tuesday to ratify the treaty, the speaker's office said."
    start = snippet.index("ratify")
    item = Item(
        feed="newsmon-send-test",
        guid=f"send-test-{now.isoformat()}",
        url="https://example.org/newsmon/send-test",
        title="newsmon test alert: parliament ratifies the sample treaty",
        summary=snippet,
        published=now,
    )
    return Delivery(
        id=0,
        alert_id=0,
        channel=channel,
        rule="send-test",
        priority="normal",
        item=item,
        match=Match("send-test", snippet, ((start, start + len("ratify the treaty")),)),
        story=f"send-test-{now.isoformat()}",
        attempts=0,
        created=now,
        also=(Copy("another-outlet", "https://example.com/newsmon/send-test", now),),
    )


async def send_test(settings: Settings, channel: str) -> int:
    """Send a sample alert through `channel` the way the daemon sends a real one (its
    templates, its format per URL, its Message-ID), and say how it went, URLs masked."""
    channels = settings.channel_values()
    if channel not in channels:
        print(f"no channel named {channel!r}; known: {', '.join(channels)}", file=sys.stderr)
        return 1
    notifier = Notifier(channels, timeout=settings.http_policy().timeout)
    outcome = await notifier.send(sample_alert(channel, utcnow()))
    targets = ", ".join(mask_url(u) for u in channels[channel].urls)
    if outcome.ok:
        print(f"{channel}: delivered the sample alert ({targets})")
        return 0
    kind = "permanent" if outcome.permanent else "temporary"
    print(f"{channel}: failed, {kind} ({targets}): {outcome.error}", file=sys.stderr)
    return 1
