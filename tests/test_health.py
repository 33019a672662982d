"""monitor.health: feed health from stored state and `now`, and which feeds just fell ill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.health import FeedHealth, assess, assess_all, counts, newly_unwell
from monitor.model import Feed, FeedState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
START = NOW - timedelta(hours=1)  # the daemon started an hour ago
DAY = timedelta(days=1)
FEED = Feed("wire", "https://example.org/feed", timedelta(minutes=10))  # expect_update 2 days


def state(
    *,
    success: datetime | None = None,
    errors: int = 0,
    last_error: str | None = None,
    disabled: str | None = None,
    name: str = "wire",
) -> FeedState:
    return FeedState(
        name=name,
        url="https://example.org/feed",
        etag=None,
        last_modified=None,
        next_poll=None,
        last_polled=NOW - timedelta(minutes=5),
        last_success=success,
        error_count=errors,
        last_error=last_error,
        polls=1 if success else 0,
        disabled_reason=disabled,
    )


@pytest.mark.parametrize(
    ("feed_state", "last_new_item", "expected", "since"),
    [
        # Polled fine a moment ago.
        (state(success=NOW - timedelta(minutes=5)), None, "ok", None),
        # Failing for a day: not yet longer than expect_update.
        (state(success=NOW - DAY, errors=30, last_error="HTTP 503"), None, "ok", None),
        # Failing for three days.
        (state(success=NOW - 3 * DAY, errors=90, last_error="HTTP 503"), None, "failing", -3),
        # Answers 304 all along but brought no new item for three days.
        (state(success=NOW - timedelta(minutes=5)), NOW - 3 * DAY, "silent", -3),
        # A new item yesterday.
        (state(success=NOW - timedelta(minutes=5)), NOW - DAY, "ok", None),
        # No successful poll for three days and no error either (not polled: the daemon was
        # down, or the server asked to wait): silent, measured from the last success.
        (state(success=NOW - 3 * DAY), None, "silent", -3),
        # Failing wins over silent.
        (state(success=NOW - 3 * DAY, errors=1), NOW - 4 * DAY, "failing", -3),
        # 410 Gone.
        (state(success=NOW - 3 * DAY, disabled="410 Gone"), None, "disabled", None),
    ],
)
def test_assess(
    feed_state: FeedState,
    last_new_item: datetime | None,
    expected: str,
    since: int | None,
) -> None:
    health = assess(FEED, feed_state, NOW, observed_since=START, last_new_item=last_new_item)
    assert health.state == expected
    assert health.since == (None if since is None else NOW + since * DAY)
    assert health.unwell == (expected in ("failing", "silent"))


def test_reasons_say_why() -> None:
    broken = state(success=NOW - 3 * DAY, errors=5, last_error="HTTP 503")
    failing = assess(FEED, broken, NOW, observed_since=START)
    assert failing.reason == "HTTP 503"
    quiet = state(success=NOW)
    silent = assess(FEED, quiet, NOW, observed_since=START, last_new_item=NOW - 3 * DAY)
    assert silent.reason == "no new item since 2026-11-20T12:00+00:00"
    gone = assess(FEED, state(disabled="410 Gone"), NOW, observed_since=START)
    assert gone.reason == "410 Gone"


def test_a_feed_disabled_in_the_config_is_disabled_whatever_its_state() -> None:
    off = Feed("wire", FEED.url, FEED.interval, enabled=False)
    health = assess(off, state(success=NOW - 9 * DAY, errors=9), NOW, observed_since=START)
    assert health.state == "disabled"


def test_expect_update_is_per_feed() -> None:
    hourly = Feed("wire", FEED.url, FEED.interval, expect_update=timedelta(hours=6))
    stale = state(success=NOW - timedelta(hours=7))
    assert assess(hourly, stale, NOW, observed_since=START).state == "silent"
    assert assess(FEED, stale, NOW, observed_since=START).state == "ok"


def test_times_the_store_lacks_are_measured_from_observed_since() -> None:
    never_worked = state(success=None, errors=12, last_error="connection refused")
    # Failed since we started an hour ago: not yet failing.
    assert assess(FEED, never_worked, NOW, observed_since=START).state == "ok"
    # Watched failing for three days.
    long_ago = NOW - 3 * DAY
    health = assess(FEED, never_worked, NOW, observed_since=long_ago)
    assert (health.state, health.since) == ("failing", long_ago)
    # Not in the store at all (added while the store was unreachable): silent after the wait.
    assert assess(FEED, None, NOW, observed_since=START).state == "ok"
    assert assess(FEED, None, NOW, observed_since=long_ago).state == "silent"


def test_assess_all_follows_the_configured_feeds_and_counts() -> None:
    feeds = [
        FEED,
        Feed("quiet", FEED.url, FEED.interval),
        Feed("off", FEED.url, FEED.interval, enabled=False),
    ]
    states = [
        state(success=NOW),
        state(name="quiet", success=NOW),
        state(name="removed", success=NOW - 9 * DAY),  # no longer configured: ignored
    ]
    report = assess_all(
        feeds, states, NOW, observed_since=START, last_new_items={"quiet": NOW - 5 * DAY}
    )
    assert [(h.feed, h.state) for h in report] == [
        ("wire", "ok"),
        ("quiet", "silent"),
        ("off", "disabled"),
    ]
    assert counts(report) == {"ok": 1, "failing": 0, "silent": 1, "disabled": 1}


def test_newly_unwell_reports_each_episode_once() -> None:
    failing_state = state(success=NOW - 3 * DAY, errors=9, last_error="HTTP 500")
    first = [assess(FEED, failing_state, NOW, observed_since=START)]
    assert [h.feed for h in newly_unwell({}, first)] == ["wire"]
    previous = {h.feed: h for h in first}
    # Still failing an hour later, more errors: the same episode, nothing new.
    later = NOW + timedelta(hours=1)
    worse = state(success=NOW - 3 * DAY, errors=15, last_error="HTTP 502")
    again = [assess(FEED, worse, later, observed_since=START)]
    assert newly_unwell(previous, again) == []
    assert again[0].key == first[0].key
    # Recovered, then failing again three days later: a new episode.
    recovered = [assess(FEED, state(success=later), later, observed_since=START)]
    assert newly_unwell(previous, recovered) == []
    relapse_at = later + 3 * DAY
    relapse = [assess(FEED, state(success=later, errors=3), relapse_at + DAY, observed_since=START)]
    fresh = newly_unwell({h.feed: h for h in recovered}, relapse)
    assert [(h.feed, h.state, h.since) for h in fresh] == [("wire", "failing", later)]
    assert fresh[0].key != first[0].key


def test_going_from_failing_to_silent_is_a_new_episode() -> None:
    failing = FeedHealth("wire", "failing", NOW - 3 * DAY, "HTTP 500")
    silent = FeedHealth("wire", "silent", NOW - 3 * DAY, "no new item since …")
    assert newly_unwell({"wire": failing}, [silent]) == [silent]
    assert newly_unwell({"wire": silent}, [silent]) == []
