"""Lead times: parsing, and the instant each reminder falls due, across both DST changes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reminder.core.model import Lead, sort_leads

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("1d", timedelta(days=1)),
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("3j", timedelta(days=3)),
        (" 1 H ", timedelta(hours=1)),
    ],
)
def test_lead_parses_every_unit(text: str, expected: timedelta) -> None:
    assert Lead.parse(text).delta == expected


@pytest.mark.parametrize("text", ["", "7", "d", "1y", "-1d", "1.5h", "0d", "une heure"])
def test_a_bad_lead_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"(whole number and a unit|more than zero)"):
        Lead.parse(text)


def test_leads_sort_earliest_reminder_first() -> None:
    assert [str(x) for x in sort_leads([Lead.parse(t) for t in ("1h", "7d", "1d", "1d")])] == [
        "7d",
        "1d",
        "1h",
    ]


def test_day_leads_keep_the_wall_clock_across_spring_forward() -> None:
    # Sunday 26 March 2023 at 02:00 Paris went to 03:00: J-7 of 29 March 17:00 is 22 March 17:00.
    start = datetime(2023, 3, 29, 17, tzinfo=PARIS)
    due = Lead.parse("7d").before(start)
    assert due == datetime(2023, 3, 22, 17, tzinfo=PARIS)
    assert due.utcoffset() == timedelta(hours=1)
    assert start - due == timedelta(days=7)  # aware subtraction of same-zone values is wall time
    assert start.astimezone(UTC) - due.astimezone(UTC) == timedelta(days=6, hours=23)


def test_day_leads_keep_the_wall_clock_across_fall_back() -> None:
    # Sunday 29 October 2023 at 03:00 Paris went back to 02:00.
    start = datetime(2023, 10, 30, 17, tzinfo=PARIS)
    due = Lead.parse("1d").before(datetime(2023, 10, 30, 17, tzinfo=PARIS))
    assert due.isoformat() == "2023-10-29T17:00:00+01:00"
    week = Lead.parse("1w").before(start)
    assert week.isoformat() == "2023-10-23T17:00:00+02:00"
    assert start.astimezone(UTC) - week.astimezone(UTC) == timedelta(days=7, hours=1)


def test_hour_leads_are_elapsed_time_across_a_dst_change() -> None:
    # A session at 03:30 on 26 March 2023: 2 hours before is 00:30 (02:30 never existed).
    start = datetime(2023, 3, 26, 3, 30, tzinfo=PARIS)
    due = Lead.parse("2h").before(start)
    assert due.isoformat() == "2023-03-26T00:30:00+01:00"
    assert start.astimezone(UTC) - due.astimezone(UTC) == timedelta(hours=2)


def test_hour_lead_in_the_repeated_autumn_hour() -> None:
    start = datetime(2023, 10, 29, 3, 30, tzinfo=PARIS)  # after the change: UTC+1
    due = Lead.parse("1h").before(start)
    assert due.astimezone(UTC) == datetime(2023, 10, 29, 1, 30, tzinfo=UTC)
    assert (due.hour, due.fold, due.utcoffset()) == (2, 1, timedelta(hours=1))


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Lead.parse("1d").before(datetime(2023, 3, 1, 17))  # noqa: DTZ001
