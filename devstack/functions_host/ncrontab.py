"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, seconds first.

``{second} {minute} {hour} {day} {month} {day-of-week}``; each field takes ``*``, numbers, ranges ``a-b``,
steps ``*/n``, ``a-b/n`` and ``a/n``, and comma lists; months and weekdays also take names (``Jan``, ``Mon``).
Day-of-week runs 0-6 from Sunday. As in NCrontab, a time must match the day-of-month AND the day-of-week field.
A ``hh:mm:ss`` TimeSpan (a constant interval) is accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, low, high, names whose index + offset is the value)
_FIELDS = (
    ("second", 0, 59, (), 0),
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day", 1, 31, (), 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day-of-week", 0, 6, _DAYS, 0),
)
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")
# Far enough to see every weekday/leap-day combination; a schedule with no time in it never fires.
_SEARCH_DAYS = 366 * 8


class ScheduleError(ValueError):
    """The expression is not a valid NCRONTAB (or TimeSpan) schedule."""


def _value(token: str, low: int, high: int, names: tuple[str, ...], offset: int, field: str) -> int:
    lowered = token.lower()
    if names:
        for index, name in enumerate(names):
            if lowered == name or (len(lowered) > 3 and _full_name_matches(lowered, name)):
                return index + offset
    if not token.isdigit():
        raise ScheduleError(f"{field} field: '{token}' is not a number")
    number = int(token)
    if not low <= number <= high:
        raise ScheduleError(f"{field} field: {number} is outside {low}-{high}")
    return number


def _full_name_matches(lowered: str, short: str) -> bool:
    full = {
        "sun": "sunday", "mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday",
        "fri": "friday", "sat": "saturday", "jan": "january", "feb": "february", "mar": "march",
        "apr": "april", "jun": "june", "jul": "july", "aug": "august", "sep": "september",
        "oct": "october", "nov": "november", "dec": "december",
    }  # fmt: skip
    return full.get(short) == lowered


def parse_field(text: str, index: int) -> frozenset[int]:
    field, low, high, names, offset = _FIELDS[index]
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{field} field: empty list item in '{text}'")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field} field: step '{step_text}' must be a positive number")
            step = int(step_text)
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, low, high, names, offset, field)
            stop = _value(last, low, high, names, offset, field)
            if start > stop:
                raise ScheduleError(f"{field} field: range '{base}' runs backwards")
        else:
            start = _value(base, low, high, names, offset, field)
            stop = high if step_text else start
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def _day_matches(self, day: date) -> bool:
        # Python's weekday() is Monday=0; NCRONTAB counts from Sunday=0.
        return day.month in self.months and day.day in self.days and (day.weekday() + 1) % 7 in self.weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after ``moment`` that matches (same tzinfo as ``moment``), or None."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        for offset in range(_SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if not self._day_matches(current):
                continue
            found = self._first_time(start if offset == 0 else None)
            if found is not None:
                hour, minute, second = found
                return datetime(current.year, current.month, current.day, hour, minute, second, tzinfo=moment.tzinfo)
        return None

    def _first_time(self, not_before: datetime | None) -> tuple[int, int, int] | None:
        floor = (not_before.hour, not_before.minute, not_before.second) if not_before else (0, 0, 0)
        for hour in sorted(self.hours):
            if hour < floor[0]:
                continue
            for minute in sorted(self.minutes):
                if (hour, minute) < floor[:2]:
                    continue
                for second in sorted(self.seconds):
                    if (hour, minute, second) >= floor:
                        return hour, minute, second
        return None


@dataclass(frozen=True)
class IntervalSchedule:
    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime | None:
        return moment + self.interval


Schedule = CronSchedule | IntervalSchedule


def parse(expression: str) -> Schedule:
    text = expression.strip()
    timespan = _TIMESPAN.match(text)
    if timespan:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in timespan.groups())
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ScheduleError(f"'{expression}': a TimeSpan schedule must be positive")
        return IntervalSchedule(expression, interval)
    parts = text.split()
    if len(parts) != 6:
        raise ScheduleError(
            f"'{expression}' has {len(parts)} fields; NCRONTAB needs 6 "
            "({second} {minute} {hour} {day} {month} {day-of-week})"
        )
    try:
        fields = [parse_field(part, index) for index, part in enumerate(parts)]
    except ScheduleError as exc:
        raise ScheduleError(f"'{expression}': {exc}") from None
    return CronSchedule(text, *fields)
