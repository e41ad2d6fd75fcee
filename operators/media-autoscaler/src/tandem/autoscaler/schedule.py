"""Scheduled floors: cron windows, in IANA time zones, that raise the minimum before a market's peak."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from tandem.autoscaler.spec import Schedule


def window_active(schedule: Schedule, now: datetime) -> bool:
    """True when a cron instant of `schedule` fell within the last `duration_minutes` before `now`
    (an aware datetime). Wall-clock cron in the schedule's zone, so a 19:00 peak stays 19:00 across DST."""
    zone = ZoneInfo(schedule.time_zone)
    local_now = now.astimezone(zone)
    start = local_now - timedelta(minutes=schedule.duration_minutes)
    first = next(CronSim(schedule.cron, start))
    return first <= local_now


def scheduled_floor(schedules: Iterable[Schedule], now: datetime) -> tuple[int, str | None]:
    """The highest `min_workers` among the windows active at `now`, and that schedule's name."""
    best, name = 0, None
    for schedule in schedules:
        if schedule.min_workers > best and window_active(schedule, now):
            best, name = schedule.min_workers, schedule.name
    return best, name
