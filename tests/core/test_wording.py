"""French dates and times written without Babel are Babel's, day by day and minute by minute."""

import subprocess
import sys
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date, format_time

from reminder.core.wording import date_at_time, long_date, time_of_day, time_range

PARIS = ZoneInfo("Europe/Paris")


def babel_long_date(day: date, year: bool) -> str:
    """What long_date gave in French when Babel wrote it."""
    pattern = "d'er'" if day.day == 1 else "d"
    return format_date(day, f"EEEE {pattern} MMMM{' y' if year else ''}", locale="fr")


def test_every_french_date_of_a_decade_is_babels() -> None:
    day, different = date(2020, 1, 1), []
    while day < date(2031, 1, 1):
        moment = datetime.combine(day, time(17), PARIS)
        for year in (True, False):
            if long_date(moment, "fr", year=year) != babel_long_date(day, year):
                different.append((day, year))
        day += timedelta(days=1)
    assert different == []
    assert long_date(datetime(2023, 3, 1, 17, tzinfo=PARIS), "fr") == "mercredi 1er mars 2023"
    assert long_date(datetime(2023, 8, 2, tzinfo=PARIS), "fr", year=False) == "mercredi 2 août"


def test_every_french_minute_is_babels() -> None:
    for minutes in range(24 * 60):
        moment = datetime(2023, 3, 1, minutes // 60, minutes % 60, tzinfo=PARIS)
        assert time_of_day(moment, "fr") == format_time(moment.time(), "H'h'mm", locale="fr")
    start = datetime(2023, 3, 1, 9, 5, tzinfo=PARIS)
    assert time_range(start, start + timedelta(hours=2), "fr") == "9h05 – 11h05"
    assert date_at_time(start, "fr") == "mercredi 1er mars 2023 à 9h05"


@pytest.mark.parametrize(
    ("language", "expected", "babel_loaded"),
    [
        ("fr", "mercredi 1er mars 2023 à 17h00", False),
        ("fr_FR", "mercredi 1 mars 2023, 17:00", True),  # not "fr": Babel, as before
        ("en", "Wednesday, March 1, 2023, 5:00\u202fPM", True),
    ],
)
def test_babel_is_loaded_for_other_languages_only(
    language: str, expected: str, babel_loaded: bool
) -> None:
    probe = (
        "import sys; from datetime import datetime; from zoneinfo import ZoneInfo; "
        "from reminder.core.wording import date_at_time; "
        f"print(date_at_time(datetime(2023, 3, 1, 17, tzinfo=ZoneInfo('Europe/Paris')), "
        f"{language!r})); print('babel' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert found == [expected, str(babel_loaded)]
