"""A VTIMEZONE built from the zone database itself, transition by transition, in no language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

Transition = tuple[datetime, timedelta, timedelta, str, bool]  # UTC instant, from, to, name, DST


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


def vtimezone(name: str, first_year: int, last_year: int) -> Timezone:
    """VTIMEZONE for `name`: one DAYLIGHT and one STANDARD with explicit RDATEs.

    RFC 5545 3.6.5: DTSTART and RDATE are local times in the offset in force *before*
    the transition (TZOFFSETFROM). Explicit dates, not an RRULE, so what is written is
    what the zone database says for every year covered.
    """
    zone = ZoneInfo(name)
    component = Timezone()
    component.add("tzid", name)
    changes = transitions(zone, first_year, last_year)
    if not changes:
        offset = _offset(zone, datetime(first_year, 1, 1, tzinfo=UTC))
        standard = TimezoneStandard()
        standard.add("dtstart", datetime(1970, 1, 1))  # noqa: DTZ001 - local by definition
        standard.add("tzoffsetfrom", offset)
        standard.add("tzoffsetto", offset)
        component.add_component(standard)
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
        part.add("tzoffsetfrom", offset_from)
        part.add("tzoffsetto", offset_to)
        if tzname:
            part.add("tzname", tzname)
        component.add_component(part)
    return component
