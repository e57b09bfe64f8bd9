"""The real clock, apart from the worker so commands read it without importing the service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What every part that reads the time takes, so that tests and `simulate` can move it.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
