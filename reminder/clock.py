"""The real clock, apart from the worker so commands read it without importing the service."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
