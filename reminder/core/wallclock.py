"""Wall-clock times that a daylight-saving change skips or shows twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ZERO = timedelta(0)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Gap:
    """`wall` is never shown in the zone: clocks jump from `before` to `after`."""

    wall: datetime
    before: datetime  # the last minute that exists before the jump
    after: datetime  # the first time that exists after it


@dataclass(frozen=True)
class Fold:
    """`wall` is shown twice; it means the first (fold 0), `other` the second."""

    wall: datetime
    other: datetime


def check_wall_time(wall: datetime) -> Gap | Fold | None:
    """Whether the aware `wall` (a zoneinfo datetime, fold 0) is shown once, never, or twice."""
    if _skipped(wall):
        # The jump is the difference between the offsets either side of the change.
        jump = abs((wall.replace(fold=1).utcoffset() or ZERO) - (wall.utcoffset() or ZERO))
        start = wall.replace(second=0, microsecond=0)
        while _skipped(start - MINUTE):  # wall-clock arithmetic: the same tzinfo
            start -= MINUTE
        return Gap(wall, start - MINUTE, start + jump)
    other = wall.replace(fold=1)
    if other.utcoffset() != wall.utcoffset():
        return Fold(wall, other)
    return None


def _skipped(wall: datetime) -> bool:
    """A skipped wall time reads differently once turned into an instant and back."""
    shown = wall.astimezone(UTC).astimezone(wall.tzinfo)
    return shown.replace(tzinfo=None) != wall.replace(tzinfo=None)
