"""Registration times as form tools write them, read as the instant they mean."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from reminder.core.timestamps import parse_timestamp

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023/12/01 9:12:44 AM UTC+1", datetime(2023, 12, 1, 8, 12, 44, tzinfo=UTC)),
        ("2023/12/01 12:05:00 AM UTC+1", datetime(2023, 11, 30, 23, 5, tzinfo=UTC)),
        ("2023/12/01 12:05:00 PM UTC-5", datetime(2023, 12, 1, 17, 5, tzinfo=UTC)),
        ("2023/12/01 9:12:44 PM GMT+5:30", datetime(2023, 12, 1, 15, 42, 44, tzinfo=UTC)),
        ("2023/12/01 9:12:44 AM UTC", datetime(2023, 12, 1, 9, 12, 44, tzinfo=UTC)),
        ("2023/12/01 09:12:44", datetime(2023, 12, 1, 9, 12, 44, tzinfo=PARIS)),
        ("01/12/2023 09:12", datetime(2023, 12, 1, 9, 12, tzinfo=PARIS)),
        ("Dec 01, 2023 09:12:44 AM", datetime(2023, 12, 1, 9, 12, 44, tzinfo=PARIS)),
        # Framaforms (Drupal's short date), one warning a row before it was read.
        ("01/02/2023 - 10:13", datetime(2023, 2, 1, 10, 13, tzinfo=PARIS)),
        ("01/02/2023 - 10:13:05", datetime(2023, 2, 1, 10, 13, 5, tzinfo=PARIS)),
        (
            "2023-12-01 09:12:44-05:00",
            datetime(2023, 12, 1, 9, 12, 44, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
)
def test_form_tools_timestamps(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, PARIS) == expected


@pytest.mark.parametrize("text", ["hier", "2023/13/01 9:12:44 AM UTC+1", "31/02/2023"])
def test_what_is_not_a_timestamp_is_none(text: str) -> None:
    assert parse_timestamp(text, PARIS) is None
