"""Logging for people (one line per event) or for machines (JSON lines)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime, tzinfo

# C0 and C1 controls (but newline and tab) and the bidi overrides and isolates: what an
# export can carry to turn a terminal's colours, title or text direction.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text safe to show on a terminal: every control character written as \\uXXXX."""
    return _CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class _Zone:
    """The zone log timestamps are written in: the cycle's once known (or UTC with --utc)."""

    zone: tzinfo = UTC
    fixed = False  # --utc: the cycle's zone does not replace it


def use_zone(zone: tzinfo, *, force: bool = False) -> None:
    if force or not _Zone.fixed:
        _Zone.zone = zone
        _Zone.fixed = _Zone.fixed or force


def stamp(created: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(created, _Zone.zone).isoformat(timespec=timespec)


def log_time(moment: datetime) -> str:
    """An instant named in a log message, in the logs' zone with its offset, like the stamp."""
    return moment.astimezone(_Zone.zone).isoformat(timespec="seconds")


class HumanLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{stamp(record.created)} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return printable(line)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": stamp(record.created, "milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return printable(json.dumps(entry, ensure_ascii=False))


def setup_logging(style: str = "human", level: str = "info", *, utc: bool = False) -> None:
    _Zone.zone, _Zone.fixed = UTC, utc
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if style == "json" else HumanLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler narrates every job run at INFO; ours is the line that matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
