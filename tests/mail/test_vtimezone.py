"""The calendar's VTIMEZONE says what the zone database says, and nothing in English."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import vobject
from dateutil.rrule import rrulestr

from reminder.core.model import Session
from reminder.mail.ics import session_calendar
from reminder.mail.vtimezone import transitions, vtimezone
from tests.support.mail import ANNE
from tests.support.project import Project

PARIS = ZoneInfo("Europe/Paris")


def zoneinfo_transitions(first: int, last: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """Offset changes found by brute force, hour by hour, independently of the code under test."""
    found = []
    moment = datetime(first, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(PARIS).utcoffset()
    while moment.year <= last:
        moment += timedelta(hours=1)
        offset = moment.astimezone(PARIS).utcoffset()
        if offset != previous:
            assert offset is not None and previous is not None
            found.append((moment, previous, offset))
            previous = offset
    return found


def written_transitions(
    component: icalendar.Timezone, first: int, last: int
) -> list[tuple[datetime, timedelta, timedelta]]:
    """The changes a VTIMEZONE states for the years `first` to `last`, as UTC instants."""
    written = []
    for part in component.subcomponents:
        offset_from = part["TZOFFSETFROM"].td
        offset_to = part["TZOFFSETTO"].td
        start = part.decoded("DTSTART")
        local = [start]
        if "RDATE" in part:
            local += [d.dt for d in part["RDATE"].dts]
        if "RRULE" in part:
            rule = rrulestr(part["RRULE"].to_ical().decode(), dtstart=start)
            local = rule.between(datetime(first, 1, 1), datetime(last + 1, 1, 1))  # noqa: DTZ001
        # RFC 5545: DTSTART and RDATE are local times in the offset before the change.
        written += [
            ((t - offset_from).replace(tzinfo=UTC), offset_from, offset_to)
            for t in local
            if first <= t.year <= last
        ]
    return sorted(written)


def test_every_transition_2023_to_2030_matches_zoneinfo() -> None:
    expected = zoneinfo_transitions(2023, 2030)
    assert len(expected) == 16
    component = vtimezone("Europe/Paris", 2023, 2030)
    assert written_transitions(component, 2023, 2030) == expected
    # The summer change: 02:00 local, +01:00 -> +02:00, i.e. 01:00 UTC, not an hour late.
    spring = next(p for p in component.subcomponents if p.name == "DAYLIGHT")
    assert spring.decoded("DTSTART") == datetime(1996, 3, 31, 2, 0)  # noqa: DTZ001
    assert "TZOFFSETFROM:+0100" in spring.to_ical().decode()
    assert "T030000" not in spring.to_ical().decode()


def test_the_zone_s_yearly_rule_is_the_same_definition_in_every_file() -> None:
    """Europe/Paris has changed on the last Sundays of March and October since 1996: one
    RRULE each, whatever years a file asks for."""
    assert (
        vtimezone("Europe/Paris", 2023, 2023).to_ical()
        == vtimezone("Europe/Paris", 2030, 2031).to_ical()
    )
    text = vtimezone("Europe/Paris", 2023, 2023).to_ical().decode()
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3" in text
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10" in text
    later = zoneinfo_transitions(2023, 2060)
    assert written_transitions(vtimezone("Europe/Paris", 2023, 2023), 2023, 2060) == later


def test_a_zone_without_a_yearly_rule_gets_the_dates_of_the_years_asked() -> None:
    # Morocco leaves summer time for Ramadan: the dates move every year.
    casablanca = ZoneInfo("Africa/Casablanca")
    component = vtimezone("Africa/Casablanca", 2023, 2030)
    assert "RRULE" not in component.to_ical().decode()
    expected = [
        (instant, before, after)
        for instant, before, after, _, _ in transitions(casablanca, 2023, 2030)
    ]
    assert written_transitions(component, 2023, 2030) == sorted(expected)


def test_no_english_and_clients_read_the_offsets_back() -> None:
    calendar = icalendar.Calendar()
    calendar.add_component(vtimezone("Europe/Paris", 2023, 2030))
    text = calendar.to_ical().decode()
    assert "COMMENT" not in text
    assert {line for line in text.splitlines() if line.startswith("TZNAME")} == {
        "TZNAME:CET",
        "TZNAME:CEST",
    }
    zone = calendar.walk("VTIMEZONE")[0].to_tz()
    for instant, before, after in zoneinfo_transitions(2023, 2030):
        assert (instant - timedelta(minutes=1)).astimezone(zone).utcoffset() == before
        assert (instant + timedelta(minutes=1)).astimezone(zone).utcoffset() == after


def test_transitions_are_found_to_the_minute() -> None:
    first = transitions(PARIS, 2023, 2023)[0]
    assert first[0] == datetime(2023, 3, 26, 1, 0, tzinfo=UTC)
    assert first[3] == "CEST" and first[4]


def test_a_client_keeping_the_first_definition_reads_2030_right(project: Project) -> None:
    """vobject registers the first VTIMEZONE of a TZID it parses and reads every later
    file by it: a 2023 file's definition must still give summer 2030 its +02:00."""
    snapshot = project.snapshot()
    july_2023 = next(s for s in snapshot.slots if s.session.id == "2023-07-05")
    file_2023 = snapshot.composer.compose(july_2023, ANNE, july_2023.due_at).ics
    start = datetime(2030, 7, 3, 17, tzinfo=PARIS)
    session_2030 = Session("2030-07-03", start, start + timedelta(hours=2), "Été 2030")
    file_2030 = session_calendar(
        snapshot.config, session_2030, None, "", stamp=start, years=(2030, 2030)
    ).to(ANNE.email)
    vobject.icalendar.__dict__["__tzidMap"].pop("Europe/Paris", None)  # a fresh client
    try:
        first = vobject.readOne(file_2023.decode())
        later = vobject.readOne(file_2030.decode())
        assert first.vevent.dtstart.value.utcoffset() == timedelta(hours=2)
        assert later.vevent.dtstart.value.utcoffset() == timedelta(hours=2)
        assert later.vevent.dtstart.value.astimezone(UTC) == datetime(2030, 7, 3, 15, tzinfo=UTC)
    finally:
        vobject.icalendar.__dict__["__tzidMap"].pop("Europe/Paris", None)
