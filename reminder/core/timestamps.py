"""When someone registered, as the form tools write it: ISO 8601, French, Framaforms,
Google, Zoom."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_GOOGLE_TIMESTAMP = re.compile(
    r"(\d{4})/(\d{1,2})/(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})(?: (?P<half>[AaPp][Mm]))?"
    r"(?: (?P<utc>UTC|GMT)(?:(?P<sign>[+-])(?P<oh>\d{1,2})(?::?(?P<om>\d{2}))?)?)?"
)
_TIMESTAMP_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y - %H:%M",  # Framaforms (Drupal's short date): 01/02/2023 - 10:13
    "%d/%m/%Y - %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y",
    "%b %d, %Y %I:%M:%S %p",  # Zoom reports: Feb 03, 2023 09:12:44 AM
    "%b %d, %Y %I:%M %p",
    "%b %d, %Y %H:%M:%S",
)


def parse_timestamp(text: str, zone: tzinfo) -> datetime | None:
    """An aware instant; a time written without an offset is the cycle's local time."""
    try:
        written = datetime.fromisoformat(text)  # fast, and the commonest form
        return written if written.tzinfo else written.replace(tzinfo=zone)
    except ValueError:
        pass
    if (google := _GOOGLE_TIMESTAMP.fullmatch(text.strip())) is not None:
        return _google(google, zone)
    for pattern in _TIMESTAMP_FORMATS:
        try:
            # Form tools write the local time of the cycle, without an offset.
            return datetime.strptime(text, pattern).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


def _google(match: re.Match[str], zone: tzinfo) -> datetime | None:
    """Google Forms in an English locale: 2023/12/01 9:12:44 AM UTC+1."""
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if (half := match.group("half")) is not None:
        hour = hour % 12 + (12 if half.upper() == "PM" else 0)
    where: tzinfo = zone
    if (sign := match.group("sign")) is not None:
        offset = timedelta(hours=int(match.group("oh")), minutes=int(match.group("om") or 0))
        where = timezone(-offset if sign == "-" else offset)
    elif match.group("utc"):
        where = UTC
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=where)
    except ValueError:
        return None
