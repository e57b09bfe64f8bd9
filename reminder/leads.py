"""Lead times ("7d", "1h"): parsing and the instant a reminder falls due."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# French staff write "j" (jours) and "sem"; both mean the same as d and w.
_ALIASES = {"j": "d", "sem": "w"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Lead:
    """How long before a session a reminder goes out."""

    amount: int
    unit: str  # one of s, m, h, d, w

    @classmethod
    def parse(cls, text: str, *, allow_zero: bool = False) -> Lead:
        match = _PATTERN.match(str(text).lower())
        unit = _ALIASES.get(match.group(2), match.group(2)) if match else ""
        if not match or unit not in _UNITS:
            raise ValueError(
                f"{text!r} is not a lead time: write a whole number and a unit, "
                "s (seconds), m (minutes), h (hours), d (days) or w (weeks), e.g. '7d' or '1h'"
            )
        amount = int(match.group(1))
        if amount == 0 and not allow_zero:
            raise ValueError(f"{text!r}: a lead time must be more than zero")
        return cls(amount, unit)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def delta(self) -> timedelta:
        return timedelta(**{_UNITS[self.unit]: self.amount})

    @property
    def is_calendar(self) -> bool:
        """Days and weeks count on the wall clock; hours and less are elapsed time."""
        return self.unit in ("d", "w")

    def before(self, start: datetime) -> datetime:
        """The instant this lead falls before an aware `start`.

        J-1 before a 17:00 session is 17:00 the day before even across a DST change
        (aware arithmetic on a zoneinfo datetime is wall-clock arithmetic), while
        "1h" is sixty real minutes before, whatever the clock says.
        """
        if start.tzinfo is None:
            raise ValueError("session start must be timezone-aware")
        if self.is_calendar:
            wall = start - self.delta
            # Round-trip through UTC to resolve a wall time that a DST jump skipped.
            return wall.astimezone(UTC).astimezone(start.tzinfo)
        return (start.astimezone(UTC) - self.delta).astimezone(start.tzinfo)


def sort_leads(leads: list[Lead]) -> list[Lead]:
    """Earliest reminder first (7d before 1d before 1h)."""
    return sorted(set(leads), key=lambda lead: lead.delta, reverse=True)
