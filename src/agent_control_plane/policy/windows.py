"""Budget windows: where the calendar window that holds an instant starts and ends, in a budget's time zone.

Pure: the instant comes from the caller's injected clock. Boundaries are local midnights (of the day, of Monday,
of the 1st), converted back to UTC instants, so a daily budget in Europe/Berlin rolls over at 23:00 or 22:00 UTC
depending on daylight saving time.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from agent_control_plane.types.tokens import BudgetPeriod

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The start of the one window of an `unlimited` budget."""


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def window(period: BudgetPeriod, timezone: str, now: datetime) -> tuple[datetime, datetime | None]:
    """The [start, end) of the `period` window holding `now`, as UTC instants (end None: it never ends)."""
    if period is BudgetPeriod.UNLIMITED:
        return EPOCH, None
    zone = _zone(timezone)
    local = now.astimezone(zone)
    day = local.date()
    if period is BudgetPeriod.DAILY:
        first, following = day, day + timedelta(days=1)
    elif period is BudgetPeriod.WEEKLY:
        first = day - timedelta(days=day.weekday())
        following = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)

    def midnight(when: date) -> datetime:
        return datetime(when.year, when.month, when.day, tzinfo=zone).astimezone(UTC)

    return midnight(first), midnight(following)
