"""What staff say about when sessions take place, as plain values: the rule, the semesters,
the per-date entries and the holiday policy. `sessions.build_sessions` expands them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from .errors import Problem

# Places problems found by config key in the file the values came from (`Origin.locate_all`).
Locator = Callable[[Sequence[Problem]], list[Problem]]


class HolidayPolicy(StrEnum):
    """What a rule date on a public holiday becomes."""

    WARN = "warn"  # kept, and flagged
    SKIP = "skip"  # no session that day
    NEXT_WEEK = "next-week"  # the next same weekday that is not a holiday


@dataclass(frozen=True)
class SemesterRule:
    name: str
    start: date
    end: date
    rule: str | None = None  # an RFC 5545 RRULE without DTSTART; None: the schedule's


Day = date  # DateEntry has a field named `date`


@dataclass(frozen=True)
class DateEntry:
    """One `[[sessions]]` entry: what differs on that date from the rule."""

    date: date
    topic: str = ""
    draft: bool = False
    speakers: tuple[str, ...] = ()
    partner: str = ""
    agenda: str = ""
    join_url: str | None = None
    cancelled: bool = False
    cancelled_reason: str = ""
    moved_to: Day | None = None
    start: time | None = None
    end: time | None = None
    extra: bool = False
    notify_topic: bool = False
    sequence: int | None = None


@dataclass(frozen=True)
class CycleSchedule:
    """Everything the expansion into sessions reads, in the cycle's zone."""

    zone: ZoneInfo
    rule: str
    start: time
    end: time
    semesters: tuple[SemesterRule, ...]
    entries: tuple[DateEntry, ...] = ()
    holidays: HolidayPolicy = HolidayPolicy.WARN
    holiday_country: str = "FR"
    holiday_subdivision: str | None = None
    language: str = "fr"
    agenda: str = ""  # the cycle's agenda, for sessions whose entry gives none
