"""NCRONTAB parsing and next-occurrence computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.functions_host.ncrontab import CronSchedule, IntervalSchedule, ScheduleError, parse


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_every_five_minutes_at_second_zero() -> None:
    schedule = parse("0 */5 * * * *")
    assert schedule.next_after(at(2024, 1, 1, 10, 2, 30)) == at(2024, 1, 1, 10, 5, 0)
    assert schedule.next_after(at(2024, 1, 1, 10, 5, 0)) == at(2024, 1, 1, 10, 10, 0)
    assert schedule.next_after(at(2024, 1, 1, 23, 58, 0)) == at(2024, 1, 2, 0, 0, 0)


def test_every_second_and_steps_in_the_seconds_field() -> None:
    assert parse("* * * * * *").next_after(at(2024, 1, 1, 0, 0, 0)) == at(2024, 1, 1, 0, 0, 1)
    schedule = parse("*/15 * * * * *")
    assert schedule.next_after(at(2024, 1, 1, 0, 0, 44)) == at(2024, 1, 1, 0, 0, 45)
    assert schedule.next_after(at(2024, 1, 1, 0, 0, 45, 500000)) == at(2024, 1, 1, 0, 1, 0)


def test_ranges_lists_and_names() -> None:
    # 09:30 on weekdays (Mon-Fri); 2024-01-06 is a Saturday.
    schedule = parse("0 30 9 * * Mon-Fri")
    assert schedule.next_after(at(2024, 1, 5, 9, 30, 0)) == at(2024, 1, 8, 9, 30, 0)
    listed = parse("0 0 8,12,18 * * *")
    assert listed.next_after(at(2024, 1, 1, 12, 0, 0)) == at(2024, 1, 1, 18, 0, 0)
    monthly = parse("0 0 0 1 jan,JUL *")
    assert monthly.next_after(at(2024, 2, 1)) == at(2024, 7, 1)
    stepped_range = parse("0 10-20/5 * * * *")
    assert isinstance(stepped_range, CronSchedule)
    assert stepped_range.minutes == frozenset({10, 15, 20})
    from_value_step = parse("5/20 * * * * *")
    assert isinstance(from_value_step, CronSchedule)
    assert from_value_step.seconds == frozenset({5, 25, 45})


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # The 13th that is a Friday: 2024-09-13.
    schedule = parse("0 0 0 13 * 5")
    assert schedule.next_after(at(2024, 1, 1)) == at(2024, 9, 13)


def test_leap_day_and_never() -> None:
    assert parse("0 0 0 29 2 *").next_after(at(2025, 3, 1)) == at(2028, 2, 29)
    assert parse("0 0 0 30 2 *").next_after(at(2025, 3, 1)) is None


def test_timespan_schedule() -> None:
    schedule = parse("00:05:00")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(at(2024, 1, 1)) == at(2024, 1, 1) + timedelta(minutes=5)
    assert parse("1.02:00:00").next_after(at(2024, 1, 1)) == at(2024, 1, 2, 2)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 */5 * * *", "6"),
        ("60 * * * * *", "second field: 60 is outside 0-59"),
        ("0 0 24 * * *", "hour"),
        ("0 0 0 0 * *", "day field"),
        ("0 0 0 * 13 *", "month field"),
        ("0 0 0 * * 7", "day-of-week field"),
        ("*/0 * * * * *", "step"),
        ("0 30-10 * * * *", "backwards"),
        ("0 x * * * *", "'x' is not a number"),
        ("0 1,,2 * * * *", "empty"),
        ("00:00:00", "positive"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(expression)
    assert message in str(caught.value)
