"""The config's dates and times as the plain values the core expands into sessions."""

from __future__ import annotations

from ..core.errors import Problem
from ..core.model import Session
from ..core.schedule import CycleSchedule, DateEntry, HolidayPolicy, SemesterRule
from ..core.sessions import build_sessions
from .config import Config


def cycle_schedule(config: Config) -> CycleSchedule:
    """What `core.sessions` needs of the config, and nothing of pydantic."""
    schedule = config.schedule
    return CycleSchedule(
        zone=config.zone,
        rule=schedule.rule,
        start=schedule.start,
        end=schedule.end,
        semesters=tuple(SemesterRule(s.name, s.start, s.end, s.rule) for s in config.semesters),
        entries=tuple(
            DateEntry(**{**entry.model_dump(), "speakers": tuple(entry.speakers)})
            for entry in config.sessions
        ),
        holidays=HolidayPolicy(schedule.holidays),
        holiday_country=schedule.holiday_country,
        holiday_subdivision=schedule.holiday_subdivision,
        language=config.cycle.language,
        agenda=config.cycle.agenda,
    )


def load_sessions(config: Config) -> tuple[list[Session], list[Problem]]:
    """Every session of the cycle, and the warnings placed in config.toml; raise
    ConfigError naming file, line and key when the dates do not hold together."""
    return build_sessions(cycle_schedule(config), config.origin.locate_all)
