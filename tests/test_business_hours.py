"""`business_deadline`: working time counted in a group's local hours, across weekends, holidays and DST."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.policy import Calendar
from policies.hours import UnknownTimeZone, business_deadline, working_time

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = Calendar(time_zone="Europe/Berlin")  # 09:00-18:00, Monday to Friday
M = timedelta(minutes=1)
H = timedelta(hours=1)


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)


def due(calendar: Calendar, start: datetime, sla: timedelta) -> datetime:
    """The deadline, in the calendar's zone for readable comparisons (it is returned in UTC)."""
    result = business_deadline(calendar, start, sla)
    assert result.tzinfo is timezone.utc
    return result.astimezone(ZoneInfo(calendar.time_zone))


def test_friday_1755_plus_15_minutes_is_monday_0910():
    assert due(OFFICE, local(BERLIN, 2026, 12, 4, 17, 55), 15 * M) == local(BERLIN, 2026, 12, 7, 9, 10)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ((2026, 12, 2, 10, 0), (2026, 12, 2, 10, 15)),  # inside hours
        ((2026, 12, 2, 7, 30), (2026, 12, 2, 9, 15)),  # before hours: counts from the opening
        ((2026, 12, 2, 18, 0), (2026, 12, 3, 9, 15)),  # at the close: nothing left today
        ((2026, 12, 2, 22, 0), (2026, 12, 3, 9, 15)),  # after hours
        ((2026, 12, 5, 11, 0), (2026, 12, 7, 9, 15)),  # Saturday
        ((2026, 12, 6, 23, 59), (2026, 12, 7, 9, 15)),  # Sunday night
        ((2026, 12, 2, 17, 45), (2026, 12, 2, 18, 0)),  # uses up the day exactly: due at the close
    ],
)
def test_start_inside_before_and_after_hours(start, expected):
    assert due(OFFICE, local(BERLIN, *start), 15 * M) == local(BERLIN, *expected)


def test_a_start_given_in_another_zone_is_the_same_moment():
    start = local(BERLIN, 2026, 12, 4, 17, 55).astimezone(NEW_YORK)
    assert due(OFFICE, start, 15 * M) == local(BERLIN, 2026, 12, 7, 9, 10)


def test_holidays_have_no_hours():
    christmas = OFFICE.model_copy(update={"holidays": [date(2026, 12, 24), date(2026, 12, 25)]})
    # Raised on a holiday: counting starts at the next working start (Monday 28th).
    assert due(christmas, local(BERLIN, 2026, 12, 24, 10, 0), 15 * M) == local(BERLIN, 2026, 12, 28, 9, 15)
    # Raised the evening before: the holidays and the weekend are skipped.
    assert due(christmas, local(BERLIN, 2026, 12, 23, 17, 55), 15 * M) == local(BERLIN, 2026, 12, 28, 9, 10)


def test_multi_day_slas():
    # 9 working hours a day: 20 hours from Monday 09:00 is Wednesday 11:00.
    assert due(OFFICE, local(BERLIN, 2026, 12, 7, 9, 0), 20 * H) == local(BERLIN, 2026, 12, 9, 11, 0)
    # A working week (45 h) from Thursday 12:00 ends the next Thursday 12:00.
    assert due(OFFICE, local(BERLIN, 2026, 12, 3, 12, 0), 45 * H) == local(BERLIN, 2026, 12, 10, 12, 0)


def test_custom_days_and_hours():
    weekend_desk = Calendar(time_zone="Europe/Berlin", working_days=["sat", "sun"], start="10:00", end="14:00")
    assert due(weekend_desk, local(BERLIN, 2026, 12, 4, 17, 55), 5 * H) == local(BERLIN, 2026, 12, 6, 11, 0)


def test_zero_sla_is_due_at_once():
    start = local(BERLIN, 2026, 12, 5, 3, 0)
    assert business_deadline(OFFICE, start, timedelta(0)) == start


def test_a_naive_start_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        business_deadline(OFFICE, datetime(2026, 12, 4, 17, 55), 15 * M)


def test_an_unknown_zone_is_named():
    with pytest.raises(UnknownTimeZone, match="Mars/Olympus"):
        business_deadline(Calendar(time_zone="Mars/Olympus"), datetime(2026, 12, 4, tzinfo=timezone.utc), M)


# -- daylight-saving changes: local hours hold on both sides -------------------------------------------------

NY_OFFICE = Calendar(time_zone="America/New_York")


@pytest.mark.parametrize(
    ("calendar", "tz", "friday", "monday"),
    [
        (OFFICE, BERLIN, (2026, 3, 27), (2026, 3, 30)),  # spring forward Sunday 29 March 02:00 -> 03:00
        (OFFICE, BERLIN, (2026, 10, 23), (2026, 10, 26)),  # fall back Sunday 25 October 03:00 -> 02:00
        (NY_OFFICE, NEW_YORK, (2026, 3, 6), (2026, 3, 9)),  # spring forward Sunday 8 March
        (NY_OFFICE, NEW_YORK, (2026, 10, 30), (2026, 11, 2)),  # fall back Sunday 1 November
    ],
)
def test_over_a_dst_weekend_monday_still_opens_at_0900_local(calendar, tz, friday, monday):
    start = local(tz, *friday, 17, 55)
    result = due(calendar, start, 15 * M)
    assert result == local(tz, *monday, 9, 10)
    assert result.utcoffset() != start.utcoffset(), "the example must cross a change"


@pytest.mark.parametrize(
    ("calendar", "tz", "day", "hours_that_day"),
    [
        (Calendar(time_zone="Europe/Berlin", working_days=["sun"], start="01:00", end="05:00"), BERLIN, (2026, 3, 29), 3),
        (Calendar(time_zone="Europe/Berlin", working_days=["sun"], start="01:00", end="05:00"), BERLIN, (2026, 10, 25), 5),
        (Calendar(time_zone="America/New_York", working_days=["sun"], start="00:00", end="06:00"), NEW_YORK, (2026, 3, 8), 5),
        (Calendar(time_zone="America/New_York", working_days=["sun"], start="00:00", end="06:00"), NEW_YORK, (2026, 11, 1), 7),
    ],
)
def test_a_shift_over_the_change_is_an_hour_shorter_or_longer(calendar, tz, day, hours_that_day):
    opens = local(tz, *day, calendar.start.hour, 0)
    assert working_time(calendar, opens, local(tz, *day, 23, 0)) == hours_that_day * H
    assert due(calendar, opens, hours_that_day * H) == local(tz, *day, calendar.end.hour, 0)


# -- properties ------------------------------------------------------------------------------------------

calendars = st.builds(
    lambda zone, days, start_h, length, holidays: Calendar(
        time_zone=zone, working_days=days, start=time(start_h), end=time(min(start_h + length, 23), 30), holidays=holidays
    ),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC"]),
    st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, max_size=7, unique=True),
    st.integers(0, 20),
    st.integers(1, 12),
    st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20),
)
starts = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(timezone.utc))
slas = st.timedeltas(timedelta(seconds=1), timedelta(days=10))


@settings(max_examples=300, deadline=None)
@given(calendars, starts, slas)
def test_the_working_time_until_the_deadline_is_the_sla(calendar, start, sla):
    result = business_deadline(calendar, start, sla)
    assert result >= start
    assert working_time(calendar, start, result) == sla
    # No earlier moment would do: a second before, the SLA has not been used up.
    assert working_time(calendar, start, result - timedelta(seconds=1)) < sla


@settings(max_examples=200, deadline=None)
@given(calendars, starts, slas, slas)
def test_a_longer_sla_never_ends_sooner(calendar, start, a, b):
    assert business_deadline(calendar, start, min(a, b)) <= business_deadline(calendar, start, max(a, b))
