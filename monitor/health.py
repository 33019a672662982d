"""Feed health: which feeds are unwell, since when, and which just became so. Pure.

A feed is, in this order of precedence:

- ``disabled``: switched off in the config (``enabled: false``) or by the server (410 Gone);
- ``failing``: its last poll failed (``error_count > 0``) and it has not had a successful poll
  for longer than its ``expect_update``;
- ``silent``: no new item for longer than ``expect_update``. Where the caller knows when the
  feed last brought a new item (``last_new_item``) that is the measure; otherwise the last
  successful poll (200 or 304) is, which notices a feed no longer polled but not one that
  answers 304 forever;
- ``ok``: everything else.

Durations are measured from the stored times. A time the store does not have (a feed never
polled successfully, or that never brought an item) is replaced by ``observed_since``: the
moment this process started watching (the daemon's start). So a restart never announces a
feed early, and a feed that never worked is failing once it has failed for ``expect_update``
under our eyes.

Everything here is a function of its arguments: no clock, no I/O. Datetimes are aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.model import Feed, FeedState

HealthState = Literal["ok", "failing", "silent", "disabled"]
UNWELL: frozenset[HealthState] = frozenset({"failing", "silent"})


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """One feed's health at one moment."""

    feed: str
    state: HealthState
    # When the condition began (the last success for failing, the last new item or success
    # for silent); None for ok and disabled. Stable across polls and restarts, except where it
    # had to be `observed_since` (the store had no time), which a restart moves.
    since: datetime | None = None
    reason: str | None = None  # for people: the last error, "410 Gone", "no new item since …"

    @property
    def unwell(self) -> bool:
        return self.state in UNWELL

    @property
    def key(self) -> str:
        """Identifies this episode of unwellness: the same while the feed stays in this state,
        new after it recovers and falls ill again. Use it as an idempotency key so that the
        announcement goes out once even across restarts and replicas."""
        since = self.since.isoformat() if self.since else "-"
        return f"{self.feed}\x1f{self.state}\x1f{since}"


def assess(
    feed: Feed,
    state: FeedState | None,
    now: datetime,
    *,
    observed_since: datetime,
    last_new_item: datetime | None = None,
) -> FeedHealth:
    """The health of `feed` at `now` (see the module docstring).

    `state` None: the store does not know the feed yet (ok until it has been watched for
    `expect_update`, then silent). `last_new_item`: when the feed last brought an item not
    seen before; None takes `state.last_new_item`, and without one `state.last_success`.
    """
    if not feed.enabled:
        return FeedHealth(feed.name, "disabled", reason="disabled in the config")
    if state is not None and state.disabled_reason:
        return FeedHealth(feed.name, "disabled", reason=state.disabled_reason)
    limit = feed.expect_update
    success = state.last_success if state is not None else None
    # A feed never heard from is judged from when it was configured (stored, so a restart does
    # not make it look new), or failing that from when this process started watching.
    watched = (state.created if state is not None else None) or observed_since
    if state is not None and state.error_count > 0:
        since = success or watched
        if now - since > limit:
            return FeedHealth(feed.name, "failing", since, state.last_error or "polls fail")
    last_new_item = last_new_item or (state.last_new_item if state is not None else None)
    heard = last_new_item or success
    since = heard or watched
    if now - since > limit:
        what = "no new item" if last_new_item is not None else "no successful poll"
        when = f"since {heard.isoformat(timespec='minutes')}" if heard else "yet"
        return FeedHealth(feed.name, "silent", since, f"{what} {when}")
    return FeedHealth(feed.name, "ok")


def assess_all(
    feeds: Iterable[Feed],
    states: Iterable[FeedState],
    now: datetime,
    *,
    observed_since: datetime,
    last_new_items: Mapping[str, datetime] | None = None,
) -> list[FeedHealth]:
    """`assess` for every configured feed, in the order of `feeds`. States of feeds no longer
    configured are ignored; `last_new_items` maps feed name to its newest new item's time."""
    by_name = {s.name: s for s in states}
    newest = last_new_items or {}
    return [
        assess(
            f,
            by_name.get(f.name),
            now,
            observed_since=observed_since,
            last_new_item=newest.get(f.name),
        )
        for f in feeds
    ]


def counts(report: Iterable[FeedHealth]) -> dict[HealthState, int]:
    """Feeds per state, every state present (for `Metrics.feed_states`)."""
    out: dict[HealthState, int] = {"ok": 0, "failing": 0, "silent": 0, "disabled": 0}
    for health in report:
        out[health.state] += 1
    return out


def newly_unwell(
    previous: Mapping[str, FeedHealth], current: Sequence[FeedHealth]
) -> list[FeedHealth]:
    """The feeds of `current` whose unwell episode is not the one in `previous` (by `key`):
    they fell ill, or went from failing to silent (or back), since the last look.

    Pass an empty `previous` on the first look after start: every unwell feed is returned, and
    `FeedHealth.key` lets the caller skip the ones already announced before the restart.
    """
    fresh = []
    for health in current:
        if not health.unwell:
            continue
        before = previous.get(health.feed)
        if before is None or before.key != health.key:
            fresh.append(health)
    return fresh
