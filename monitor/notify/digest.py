"""When a channel's alerts wait, and the one message that carries them when they stop waiting.

Three things hold an alert back instead of sending it at once (config ``channels:``):

- ``digest: "<cron>"``: the channel never sends alerts one by one; they wait for the next
  cron time (in the channel's ``timezone``) and leave together in one message.
- ``quiet_hours``: during the channel's local quiet hours, alerts of rules without
  ``priority: high`` wait until the quiet hours end; high-priority alerts pass.
- ``max_per_hour``: beyond that many messages in any rolling hour (counted by the store), the
  rest wait and leave as one digest message when the hour is over.

This module is pure: it turns a channel and ``now`` (aware UTC) into a :class:`Gate` (plain
values, which the store applies while it claims deliveries, in the claim's transaction) and a
batch of held deliveries into the digest's text. It reads no clock and touches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from monitor.model import Channel, Delivery

__all__ = [
    "FEW",
    "Gate",
    "digest_trigger",
    "gate",
    "next_digest",
    "quiet_until",
    "render_digest",
    "sends_as_digest",
]

# Held alerts released together (quiet hours over, an hour of max_per_hour over) leave one by
# one when there are at most this many, else as one digest: three separate alerts are still
# readable, a wall of them after a quiet night is the storm the hold was there to prevent.
FEW = 3
# "Also reported by" of one story in a digest stops here (a wire story runs in fifty outlets).
MAX_ALSO = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Gate:
    """What holds a channel's alerts back at one moment; all None: nothing, send at once."""

    hold_until: datetime | None = None  # a digest channel: every alert waits until then (UTC)
    quiet_until: datetime | None = None  # in quiet hours: alerts not priority high wait (UTC)
    max_per_hour: int | None = None  # messages in any rolling hour; beyond, held for a digest


def _zone(channel: Channel) -> ZoneInfo:
    return ZoneInfo(channel.timezone)


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(text: str) -> int:
    low = text.lower()
    return _DAYS.index(low[:3]) if low[:3] in _DAYS else int(text)


def _weekdays(field: str) -> str:
    """cron's day-of-week field in APScheduler's terms, as day names.

    cron counts 0 (and 7) as Sunday; APScheduler 3 counts 0 as Monday, so "1-5" would
    silently mean Tuesday to Saturday there. Names mean the same to both, so every term is
    expanded to names ("*/2" is Sunday, Tuesday, Thursday, Saturday as in cron).
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            low, high = 0, 6
        else:
            start, _, end = base.partition("-")
            low = _day(start)
            high = _day(end) if end else (6 if step else low)  # cron: "5/2" runs to the end
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
    return ",".join(_DAYS[day] for day in sorted(days))


def digest_trigger(channel: Channel) -> BaseTrigger | None:
    """The APScheduler trigger of the channel's digest times (its 5-field cron line read as
    cron reads it, in the channel's time zone); None without ``digest``.

    As in cron, a line restricting both the day of month and the day of week fires on
    either ("0 8 1 * mon": the 1st, and every Monday). Raises ``ValueError`` for a line
    APScheduler refuses (the config validates it first).
    """
    if not channel.digest:
        return None
    minute, hour, day, month, weekday = channel.digest.split()
    zone = _zone(channel)
    if day != "*" and weekday != "*":
        return OrTrigger(
            [
                CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=zone),
                CronTrigger(
                    minute=minute,
                    hour=hour,
                    month=month,
                    day_of_week=_weekdays(weekday),
                    timezone=zone,
                ),
            ]
        )
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekdays(weekday),
        timezone=zone,
    )


def next_digest(channel: Channel, now: datetime) -> datetime | None:
    """The first digest time at or after ``now`` (UTC); None without ``digest``."""
    trigger = digest_trigger(channel)
    if trigger is None:
        return None
    fire = trigger.get_next_fire_time(None, now)
    return None if fire is None else fire.astimezone(UTC)


def _local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    # A wall time that a DST jump skips or repeats resolves the way zoneinfo does (fold=0):
    # quiet hours then end up to an hour off on two nights a year, which is harmless.
    return datetime.combine(day.date(), at, tzinfo=zone).astimezone(UTC)


def quiet_until(channel: Channel, now: datetime) -> datetime | None:
    """When the channel's current quiet hours end (UTC); None outside them or without any.

    ``quiet_hours`` is ``[start, end)`` in the channel's local time; ``start > end`` crosses
    midnight ("22:00-07:00").
    """
    if channel.quiet_hours is None:
        return None
    start, end = channel.quiet_hours
    zone = _zone(channel)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        ends_today = True
    else:  # crosses midnight: the evening part ends tomorrow, the morning part today
        inside = clock >= start or clock < end
        ends_today = clock < end
    if not inside:
        return None
    day = local if ends_today else local + timedelta(days=1)
    return _local(day, end, zone)


def gate(channel: Channel, now: datetime, *, digest_due: bool = False) -> Gate:
    """The channel's gate at ``now``. ``digest_due``: its digest time is now (the cron job is
    running), so alerts that arrived until now go in this digest, not the next one."""
    hold = now if digest_due and channel.digest else next_digest(channel, now)
    return Gate(
        hold_until=hold,
        quiet_until=quiet_until(channel, now),
        max_per_hour=channel.max_per_hour,
    )


def sends_as_digest(channel: Channel | None, count: int) -> bool:
    """Whether ``count`` held alerts of ``channel`` released together leave as one message.

    A digest channel always sends digests; other channels send a few one by one.
    """
    if channel is not None and channel.digest:
        return True
    return count > FEW


# --- the digest's text -------------------------------------------------------------------------


def _line(text: str) -> str:
    """One line: feed text cannot add lines (or email headers) to the digest."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "undated"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def render_digest(
    channel: Channel, deliveries: Sequence[Delivery], now: datetime
) -> tuple[str, str]:
    """``(title, body)`` of one digest message carrying ``deliveries``, plain text.

    Grouped by rule, then by story: each story once, with its title, link, source and time
    (in the channel's time zone), the other outlets that carried it, and any later versions
    (material updates) of the same story. Rules and stories in the order their first alert
    was queued; every delivery appears, whatever their number.
    """
    zone = _zone(channel)
    ordered = sorted(deliveries, key=lambda d: (d.created, d.id))
    by_rule: dict[str, dict[str, list[Delivery]]] = {}
    for delivery in ordered:
        by_rule.setdefault(delivery.rule, {}).setdefault(delivery.story, []).append(delivery)
    count = len(ordered)
    title = f"newsmon digest: {count} alert{'s' if count != 1 else ''}"
    stories = sum(len(s) for s in by_rule.values())
    lines = [
        f"{count} alert{'s' if count != 1 else ''} in {stories} "
        f"stor{'ies' if stories != 1 else 'y'}, {_when(now, zone)} ({channel.timezone})",
    ]
    for rule, groups in by_rule.items():
        lines += ["", f"== {_line(rule)} ({len(groups)} stor{'ies' if len(groups) != 1 else 'y'})"]
        for story in groups.values():
            first, *later = story
            lines += ["", *_entry(first, zone)]
            for update in later:
                lines.append(f"  updated: {_line(update.item.title) or '(untitled)'}")
                if update.item.url:
                    lines.append(f"    {_line(update.item.url)}")
    return title, "\n".join(lines)


def _entry(delivery: Delivery, zone: ZoneInfo) -> list[str]:
    item = delivery.item
    lines = [f"* {_line(item.title) or '(untitled)'}"]
    if item.url:
        lines.append(f"  {_line(item.url)}")
    lines.append(f"  {_line(item.feed)}, {_when(item.published, zone)}")
    if delivery.also:
        names = [_line(c.feed) for c in delivery.also[:MAX_ALSO]]
        more = len(delivery.also) - MAX_ALSO
        lines.append("  also reported by: " + ", ".join(names) + (f" +{more}" if more > 0 else ""))
    return lines
