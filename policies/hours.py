"""Business hours: when an SLA that counts only working time runs out.

Not workflow-safe, though pure: no clock, and no I/O other than zoneinfo
reading its zone files. That database differs between machines and changes
with politics, so a workflow never imports this: it asks the
`compute_business_deadline` local activity, whose answer is recorded in history
and read back on replay. The loader uses `zone` to check calendars.

Working hours are local wall-clock hours: 09:00-18:00 in `Europe/Berlin` is
09:00-18:00 on both sides of a daylight-saving change, so a working day is an
hour shorter or longer in UTC only if the change falls inside its hours.
A start or end that falls in a spring-forward gap is read with the offset
before the change (`fold=0`), as `zoneinfo` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.policy import Calendar

__all__ = ["UnknownTimeZone", "business_deadline", "working_time", "zone"]


class UnknownTimeZone(ValueError):
    """The calendar names a zone the time-zone database does not have."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or `UnknownTimeZone` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"unknown IANA time zone {name!r} (e.g. 'Europe/Berlin', 'America/New_York')") from None


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return moment.astimezone(timezone.utc)


def _shifts(calendar: Calendar, first_day: date) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals in UTC, day by day from `first_day` (local), without end.

    Ends because a calendar has at least one working day and finitely many holidays.
    """
    tz = zone(calendar.time_zone)
    days = {d.number for d in calendar.working_days}
    holidays = set(calendar.holidays)
    day = first_day
    while True:
        if day.weekday() in days and day not in holidays:
            # Combine in local time, then convert: aware datetimes sharing a tzinfo subtract as wall
            # time in Python, so every comparison and difference below is made in UTC.
            opens = datetime.combine(day, calendar.start, tzinfo=tz).astimezone(timezone.utc)
            closes = datetime.combine(day, calendar.end, tzinfo=tz).astimezone(timezone.utc)
            yield opens, closes
        day += timedelta(days=1)


def business_deadline(calendar: Calendar, start: datetime, sla: timedelta) -> datetime:
    """The moment (UTC) at which `sla` of working time has passed since `start`.

    Args:
        calendar: The approver group's working hours.
        start: When the SLA starts running (timezone-aware; usually `workflow.now()`).
        sla: Working time allowed. Zero or less gives `start` back.

    Returns:
        A UTC datetime. Raised outside working hours (a night, a weekend, a holiday), the count starts
        at the next working start; an SLA that uses up a day's hours exactly ends at that day's close.
    """
    start = _utc(start, "start")
    if sla <= timedelta(0):
        return start
    remaining = sla
    for opens, closes in _shifts(calendar, start.astimezone(zone(calendar.time_zone)).date()):
        begin = max(start, opens)
        if begin >= closes:
            continue
        if remaining <= closes - begin:
            return begin + remaining
        remaining -= closes - begin
    raise AssertionError("unreachable: a calendar always has another working day")


def working_time(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Working time in `calendar` between `start` and `end` (zero when `end` is not after `start`)."""
    start, end = _utc(start, "start"), _utc(end, "end")
    total = timedelta(0)
    if end <= start:
        return total
    for opens, closes in _shifts(calendar, start.astimezone(zone(calendar.time_zone)).date()):
        if opens >= end:
            return total
        overlap = min(closes, end) - max(opens, start)
        if overlap > timedelta(0):
            total += overlap
    raise AssertionError("unreachable")
