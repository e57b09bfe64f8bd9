"""A VTIMEZONE built from the zone database itself, in no language, that a client which
keeps the first definition of a TZID it sees (vobject does) cannot misread later.

Where the zone has followed one yearly rule (Europe/Paris: last Sunday of March and of
October) through the years asked and long after, the VTIMEZONE states that rule as an
RRULE from the year it began: every file then carries the same definition, right for any
year. A zone without such a rule gets explicit dates (RDATE) for the years asked.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

Transition = tuple[datetime, timedelta, timedelta, str, bool]  # UTC instant, from, to, name, DST
EARLIEST = 1970  # no calendar of ours names an earlier year
HORIZON = 30  # years after the last asked that a rule must hold to be written as one
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def transitions(zone: ZoneInfo, first_year: int, last_year: int) -> list[Transition]:
    """Every offset change of `zone` from 1 January `first_year` to 31 December `last_year`."""
    found: list[Transition] = []
    moment = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(days=7)  # zones change offset at most a few times a year
    while moment < end:
        after = min(moment + step, end)
        if _offset(zone, moment) != _offset(zone, after):
            low, high = moment, after
            while high - low > timedelta(minutes=1):  # transitions fall on whole minutes
                middle = low + (high - low) / 2
                if _offset(zone, middle) == _offset(zone, low):
                    low = middle
                else:
                    high = middle
            instant = high.replace(second=0, microsecond=0)
            local = instant.astimezone(zone)
            dst = local.dst() or timedelta(0)
            found.append(
                (
                    instant,
                    _offset(zone, low),
                    _offset(zone, instant),
                    local.tzname() or "",
                    bool(dst),
                )
            )
        moment = after
    return found


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


@dataclass(frozen=True)
class _Rule:
    """One kind of change (to summer time, or back) on the same day of every year."""

    dst: bool
    first: datetime  # its first occurrence, local time in the offset before it
    month: int
    byday: str  # "-1SU": the last Sunday; "2SU": the second
    offset_from: timedelta
    offset_to: timedelta
    name: str


YearlyKey = tuple[bool, int, int, int, time, timedelta, timedelta, str]


def _yearly_key(change: Transition) -> YearlyKey:
    """What must be the same every year for a change to follow a yearly rule."""
    instant, offset_from, offset_to, name, dst = change
    local = (instant + offset_from).replace(tzinfo=None)
    last = local.day + 7 > calendar.monthrange(local.year, local.month)[1]
    nth = -1 if last else (local.day - 1) // 7 + 1
    return (dst, local.month, local.weekday(), nth, local.time(), offset_from, offset_to, name)


@lru_cache(maxsize=16)
def _yearly_rules(name: str, first_year: int, last_year: int) -> tuple[_Rule, ...] | None:
    """The zone's rules as RRULEs, when one per kind of change has held every year from
    before `first_year` through `last_year` and HORIZON years more; None otherwise."""
    changes = transitions(ZoneInfo(name), EARLIEST, last_year + HORIZON)
    by_year: dict[tuple[bool, int], list[Transition]] = {}
    for change in changes:
        by_year.setdefault((change[4], change[0].year), []).append(change)
    began = {}
    for dst in (True, False):
        # Back from the horizon, while every year has exactly one such change, alike.
        year = last_year + HORIZON
        if len(by_year.get((dst, year), [])) != 1:
            return None
        key = _yearly_key(by_year[dst, year][0])
        while (
            len(earlier := by_year.get((dst, year - 1), [])) == 1 and _yearly_key(earlier[0]) == key
        ):
            year -= 1
        began[dst] = year
    since = max(began.values())  # the first year both rules hold
    if since > first_year:
        return None  # the rules changed within the years asked: dates, not rules
    rules = []
    for dst in (True, False):
        change = by_year[dst, since][0]
        instant, offset_from, offset_to, tzname, _ = change
        _, month, weekday, nth, _, _, _, _ = _yearly_key(change)
        local = (instant + offset_from).replace(tzinfo=None)
        rules.append(
            _Rule(dst, local, month, f"{nth}{_DAYS[weekday]}", offset_from, offset_to, tzname)
        )
    return tuple(rules)


def vtimezone(name: str, first_year: int, last_year: int) -> Timezone:
    """VTIMEZONE for `name`, right for every date from `first_year` to `last_year`.

    RFC 5545 3.6.5: DTSTART and RDATE are local times in the offset in force *before*
    the transition (TZOFFSETFROM), so the spring change reads T020000 with +0100.
    """
    zone = ZoneInfo(name)
    component = Timezone()
    component.add("tzid", name)
    changes = transitions(zone, first_year, last_year)
    if not changes:
        offset = _offset(zone, datetime(first_year, 1, 1, tzinfo=UTC))
        standard = TimezoneStandard()
        standard.add("dtstart", datetime(EARLIEST, 1, 1))  # noqa: DTZ001 - local by definition
        standard.add("tzoffsetfrom", offset)
        standard.add("tzoffsetto", offset)
        component.add_component(standard)
        return component
    rules = _yearly_rules(name, first_year, last_year)
    if rules is not None:
        for rule in rules:
            part = TimezoneDaylight() if rule.dst else TimezoneStandard()
            part.add("dtstart", rule.first)
            part.add("rrule", {"freq": "yearly", "bymonth": rule.month, "byday": rule.byday})
            _offsets(part, rule.offset_from, rule.offset_to, rule.name)
            component.add_component(part)
        return component
    for dst in (True, False):
        chosen = [c for c in changes if c[4] is dst]
        if not chosen:
            continue
        part = TimezoneDaylight() if dst else TimezoneStandard()
        _, offset_from, offset_to, tzname, _ = chosen[0]
        local = [(i + f).replace(tzinfo=None) for i, f, _, _, _ in chosen]
        part.add("dtstart", local[0])
        if len(local) > 1:
            part.add("rdate", local[1:])
        _offsets(part, offset_from, offset_to, tzname)
        component.add_component(part)
    return component


def _offsets(
    part: TimezoneDaylight | TimezoneStandard, before: timedelta, after: timedelta, name: str
) -> None:
    part.add("tzoffsetfrom", before)
    part.add("tzoffsetto", after)
    if name:
        part.add("tzname", name)
