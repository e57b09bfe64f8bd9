"""The calendar's VTIMEZONE says what the zone database says, and nothing in English."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from reminder.mail.vtimezone import transitions, vtimezone

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


def test_every_transition_2023_to_2030_matches_zoneinfo() -> None:
    expected = zoneinfo_transitions(2023, 2030)
    assert len(expected) == 16
    component = vtimezone("Europe/Paris", 2023, 2030)
    written: list[tuple[datetime, timedelta, timedelta]] = []
    for part in component.subcomponents:
        offset_from = part["TZOFFSETFROM"].td
        offset_to = part["TZOFFSETTO"].td
        local = [part.decoded("DTSTART")]
        if "RDATE" in part:
            local += [d.dt for d in part["RDATE"].dts]
        # RFC 5545: DTSTART and RDATE are local times in the offset before the change.
        written += [((t - offset_from).replace(tzinfo=UTC), offset_from, offset_to) for t in local]
    assert sorted(written) == expected
    # The summer change: 02:00 local, +01:00 -> +02:00, i.e. 01:00 UTC, not an hour late.
    spring = next(p for p in component.subcomponents if p.name == "DAYLIGHT")
    assert spring.decoded("DTSTART") == datetime(2023, 3, 26, 2, 0)  # noqa: DTZ001
    assert "TZOFFSETFROM:+0100" in spring.to_ical().decode()
    assert "T030000" not in spring.to_ical().decode()


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
