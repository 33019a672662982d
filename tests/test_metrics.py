"""monitor.metrics: the registry's series, read back through the Prometheus text parser."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import (
    DEDUPE_KINDS,
    FEED_STATES,
    POLL_OUTCOMES,
    Metrics,
    poll_outcome,
    status_class,
    status_code,
)
from monitor.model import FeedUpdate, FetchResult

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition by (name, labels), as a scraper would read it."""
    text = metrics.render().decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_a_fresh_registry_has_every_family_with_zero_series() -> None:
    metrics = Metrics()
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert set(families) >= {
        "newsmon_feeds",
        "newsmon_polls",
        "newsmon_http_responses",
        "newsmon_http_request_duration_seconds",
        "newsmon_items_stored",
        "newsmon_matches",
        "newsmon_alerts",
        "newsmon_outbox_depth",
        "newsmon_dedupe_decisions",
        "newsmon_rule_evaluation_seconds",
    }
    assert families["newsmon_feeds"].type == "gauge"
    assert families["newsmon_polls"].type == "counter"
    assert families["newsmon_http_request_duration_seconds"].type == "histogram"
    # Known label values exist from the start, so rate() works before the first event.
    for state in FEED_STATES:
        assert value(metrics, "newsmon_feeds", state=state) == 0
    for outcome in POLL_OUTCOMES:
        assert value(metrics, "newsmon_polls_total", outcome=outcome) == 0
    for kind in DEDUPE_KINDS:
        assert value(metrics, "newsmon_dedupe_decisions_total", decision=kind) == 0
    assert metrics.content_type.startswith("text/plain; version=0.0.4")


def test_polls_count_outcome_status_and_latency() -> None:
    metrics = Metrics()
    metrics.poll("ok", 200, 0.3)
    metrics.poll("not_modified", 304, 0.07)
    metrics.poll("error", None, 30.0)
    metrics.poll("error", 503, 1.5)
    metrics.poll("gone", 410, 0.2)
    assert value(metrics, "newsmon_polls_total", outcome="ok") == 1
    assert value(metrics, "newsmon_polls_total", outcome="error") == 2
    assert value(metrics, "newsmon_http_responses_total", code="304", **{"class": "3xx"}) == 1
    assert value(metrics, "newsmon_http_responses_total", code="none", **{"class": "none"}) == 1
    assert value(metrics, "newsmon_http_responses_total", code="503", **{"class": "5xx"}) == 1
    assert value(metrics, "newsmon_http_request_duration_seconds_count") == 5
    total = value(metrics, "newsmon_http_request_duration_seconds_sum")
    assert abs(total - (0.3 + 0.07 + 30 + 1.5 + 0.2)) < 1e-9
    assert value(metrics, "newsmon_http_request_duration_seconds_bucket", le="0.1") == 1
    assert value(metrics, "newsmon_http_request_duration_seconds_bucket", le="+Inf") == 5


def test_status_labels_stay_bounded() -> None:
    assert [status_code(s) for s in (200, 599, 600, 99, None)] == [
        "200",
        "599",
        "other",
        "other",
        "none",
    ]
    assert [status_class(s) for s in (204, 451, 999, None)] == ["2xx", "4xx", "other", "none"]


def test_items_matches_decisions_alerts_and_levels() -> None:
    metrics = Metrics()
    metrics.items_stored(3)
    metrics.items_stored(0)
    metrics.match("evin-prison", 2)
    metrics.match("treaty")
    metrics.decision("new_story", 2)
    metrics.decision("joined_near")
    metrics.decision("update", 0)
    metrics.rule_time(0.004)
    metrics.alert("desk-slack", "queued", 2)
    metrics.alert("desk-slack", "sent")
    metrics.alert("desk-slack", "dead")
    metrics.outbox_depth(7)
    metrics.feed_states({"ok": 10, "failing": 2})
    assert value(metrics, "newsmon_items_stored_total") == 3
    assert value(metrics, "newsmon_matches_total", rule="evin-prison") == 2
    assert value(metrics, "newsmon_matches_total", rule="treaty") == 1
    assert value(metrics, "newsmon_dedupe_decisions_total", decision="new_story") == 2
    assert value(metrics, "newsmon_dedupe_decisions_total", decision="joined_near") == 1
    assert value(metrics, "newsmon_dedupe_decisions_total", decision="update") == 0
    assert value(metrics, "newsmon_rule_evaluation_seconds_count") == 1
    assert value(metrics, "newsmon_alerts_total", channel="desk-slack", state="queued") == 2
    assert value(metrics, "newsmon_alerts_total", channel="desk-slack", state="dead") == 1
    assert value(metrics, "newsmon_outbox_depth") == 7
    assert value(metrics, "newsmon_feeds", state="failing") == 2
    # A later count replaces the earlier one, and a state left out reads 0.
    metrics.feed_states({"ok": 12})
    assert value(metrics, "newsmon_feeds", state="ok") == 12
    assert value(metrics, "newsmon_feeds", state="failing") == 0


def test_label_values_from_the_config_are_escaped_in_the_exposition() -> None:
    metrics = Metrics()
    metrics.match('odd "rule"\nname\\')
    assert value(metrics, "newsmon_matches_total", rule='odd "rule"\nname\\') == 1


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.items_stored(5)
    assert value(first, "newsmon_items_stored_total") == 5
    assert value(second, "newsmon_items_stored_total") == 0


def _update(*, success: bool, disabled: str | None = None) -> FeedUpdate:
    return FeedUpdate("f", NOW, NOW, success=success, disabled_reason=disabled)


def test_poll_outcome_of_a_fetch_and_its_update() -> None:
    url = "http://127.0.0.1/feed"
    ok = FetchResult(url, url, 200, b"<rss/>")
    not_modified = FetchResult(url, url, 304, None, not_modified=True)
    gone = FetchResult(url, url, 410, None, error="HTTP 410")
    refused = FetchResult(url, url, None, None, error="connection refused")
    assert poll_outcome(ok) == "ok"
    assert poll_outcome(ok, _update(success=True)) == "ok"
    # A 200 whose body held no feed is a failed poll.
    assert poll_outcome(ok, _update(success=False)) == "error"
    assert poll_outcome(not_modified, _update(success=True)) == "not_modified"
    assert poll_outcome(gone) == "gone"
    assert poll_outcome(gone, _update(success=False, disabled="410 Gone")) == "gone"
    assert poll_outcome(refused) == "error"
