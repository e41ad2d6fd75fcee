"""Scheduled floors follow the wall clock of their time zone, DST included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tandem.autoscaler.schedule import scheduled_floor, window_active
from tandem.autoscaler.spec import Schedule

pytestmark = pytest.mark.unit

EVENING = Schedule(name="ny", cron="0 18 * * *", time_zone="America/New_York", duration_minutes=180, min_workers=9)


@pytest.mark.parametrize(
    ("utc", "active"),
    [
        (datetime(2026, 1, 15, 23, 30, tzinfo=UTC), True),  # 18:30 EST (UTC-5)
        (datetime(2026, 1, 15, 22, 30, tzinfo=UTC), False),  # 17:30 EST
        (datetime(2026, 7, 15, 22, 30, tzinfo=UTC), True),  # 18:30 EDT (UTC-4)
        (datetime(2026, 7, 16, 1, 30, tzinfo=UTC), False),  # 21:30 EDT: the window is over
    ],
)
def test_window_follows_local_wall_clock(utc: datetime, active: bool) -> None:
    assert window_active(EVENING, utc) is active


def test_highest_active_floor_wins() -> None:
    late = Schedule(name="late", cron="0 19 * * *", time_zone="America/New_York", duration_minutes=60, min_workers=4)
    at = datetime(2026, 1, 16, 0, 30, tzinfo=UTC)  # 19:30 EST: both active
    assert scheduled_floor([late, EVENING], at) == (9, "ny")
    assert scheduled_floor([], at) == (0, None)
