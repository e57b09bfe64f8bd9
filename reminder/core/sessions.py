"""Session dates: the rule per semester, per-date entries, and the public-holiday policy."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from .errors import ConfigError, KeyPath, Problem
from .holiday_calendar import public_holidays
from .model import Session

if TYPE_CHECKING:  # the expansion reads the config's values; it needs no schema to run
    from ..inputs.config import Config, SessionEntry


def build_sessions(config: Config) -> tuple[list[Session], list[Problem]]:
    """Every session of the cycle in order, and warnings placed in the config's file;
    raise ConfigError when inconsistent."""
    sessions, problems = expand_sessions(config)
    located = config.origin.locate_all(problems)
    if any(p.severity == "error" for p in located):
        raise ConfigError(located)
    return sessions, located


def expand_sessions(config: Config) -> tuple[list[Session], list[Problem]]:
    """Every session of the cycle in order, and what is wrong, by config key."""
    zone = config.zone
    problems: list[Problem] = []
    planned = _rule_sessions(config, zone, problems)
    entries: dict[date, tuple[int, SessionEntry]] = {}
    for index, entry in enumerate(config.sessions):
        if entry.date in entries:
            problems.append(
                _problem(
                    f"a second entry for {entry.date}; merge it with the one above "
                    f"(sessions[{entries[entry.date][0]}])",
                    ("sessions", index, "date"),
                )
            )
        entries[entry.date] = (index, entry)

    holidays = _holidays(config, planned, entries, problems)
    set_by: dict[str, int] = {}  # session id -> the [[sessions]] entry that shapes it
    sessions: list[Session] = []
    for session in planned:
        day = session.start.date()
        if (found := entries.pop(day, None)) is not None:
            index, entry = found
            if entry.extra:
                problems.append(
                    _problem(
                        f"{day} is already a session of the rule ({session.semester}): "
                        "remove extra = true",
                        ("sessions", index, "extra"),
                    )
                )
            session = _apply(session, entry, zone)
            set_by[session.id] = index
        if not session.moved and not session.cancelled and (name := holidays.get(day)):
            kept = _holiday_policy(config, session, name, holidays, problems)
            if kept is None:
                continue
            session = kept
        sessions.append(session)

    for day, (index, entry) in sorted(entries.items()):
        if entry.extra:
            semester = next((s.name for s in config.semesters if s.start <= day <= s.end), "")
            start = datetime.combine(day, entry.start or config.schedule.start, zone)
            end = datetime.combine(day, entry.end or config.schedule.end, zone)
            session = Session(
                day.isoformat(),
                start,
                end,
                semester or "hors semestre",
                agenda=config.cycle.agenda.strip(),
                extra=True,
            )
            sessions.append(_apply(session, entry, zone))
            set_by[session.id] = index
            continue
        hint = ""
        if planned:
            near = min(planned, key=lambda s: abs((s.start.date() - day).days))
            hint = f"; did you mean {near.id}?"
        problems.append(
            _problem(
                f"{day} is not a session date of any semester{hint} To add a one-off session "
                "on that day, set extra = true",
                ("sessions", index, "date"),
            )
        )

    for position, session in enumerate(sessions):
        if session.end <= session.start:
            problems.append(
                _problem(
                    f"the session of {session.id} ends ({session.end:%H:%M}) before it starts "
                    f"({session.start:%H:%M})",
                    _entry(set_by, session, "end"),
                )
            )
        name = holidays.get(session.start.date())
        if (
            name
            and not session.holiday
            and not session.cancelled
            and (session.moved or session.extra)
        ):
            _holiday_warning(session, name, problems)
            sessions[position] = replace(session, holiday=name)
    _no_two_at_once(sessions, set_by, problems)
    return sorted(sessions, key=lambda s: s.start), problems


def _problem(message: str, at: KeyPath, severity: str = "error") -> Problem:
    return Problem.of_key(at, message, severity)


def _holiday_warning(session: Session, name: str, problems: list[Problem]) -> None:
    problems.append(
        _problem(
            f"the session of {session.start.date()} falls on a public holiday ({name}); keep "
            "it, or set holidays = 'skip' or 'next-week', or move or cancel it in a "
            "[[sessions]] entry",
            ("schedule", "holidays"),
            severity="warning",
        )
    )


def _rule_sessions(config: Config, zone: ZoneInfo, problems: list[Problem]) -> list[Session]:
    schedule = config.schedule
    sessions: list[Session] = []
    ordered = sorted(enumerate(config.semesters), key=lambda pair: pair[1].start)
    for (_, before), (index, after) in itertools.pairwise(ordered):
        if after.start <= before.end:
            problems.append(
                _problem(
                    f"semester {after.name!r} starts ({after.start}) before {before.name!r} ends "
                    f"({before.end}); each date belongs to one semester",
                    ("semesters", index, "start"),
                )
            )
    for semester in config.semesters:
        first = datetime.combine(semester.start, schedule.start, zone)
        last = datetime.combine(semester.end, time(23, 59, 59), zone)
        # An aware dtstart makes rrule yield aware wall-clock times in the same zone,
        # so the 17:00 session stays 17:00 on both sides of a DST change.
        rule = rrulestr(f"RRULE:{semester.rule or schedule.rule}", dtstart=first)
        for start in rule.between(first, last, inc=True):
            sessions.append(
                Session(
                    start.date().isoformat(),
                    start,
                    datetime.combine(start.date(), schedule.end, zone),
                    semester.name,
                    agenda=config.cycle.agenda.strip(),
                )
            )
    return sessions


def _apply(session: Session, entry: SessionEntry, zone: ZoneInfo) -> Session:
    day = entry.moved_to or session.start.date()
    start = datetime.combine(day, entry.start or session.start.time(), zone)
    end = datetime.combine(day, entry.end or session.end.time(), zone)
    moved_from = session.start if start != session.start and not session.extra else None
    return replace(
        session,
        start=start,
        end=end,
        topic=entry.topic,
        draft=entry.draft,
        speakers=tuple(entry.speakers),
        partner=entry.partner,
        agenda=entry.agenda.strip() or session.agenda,
        join_url=entry.join_url,
        cancelled=entry.cancelled,
        cancelled_reason=entry.cancelled_reason,
        moved_from=moved_from,
        sequence=entry.sequence or 0,
        notify_topic=entry.notify_topic,
    )


def _holiday_policy(
    config: Config,
    session: Session,
    name: str,
    holidays: dict[date, str],
    problems: list[Problem],
) -> Session | None:
    policy = config.schedule.holidays
    day = session.start.date()
    if policy == "warn":
        _holiday_warning(session, name, problems)
        return replace(session, holiday=name)
    if policy == "skip":
        problems.append(
            _problem(
                f"no session on {day} ({name}): schedule.holidays = 'skip'",
                ("schedule", "holidays"),
                severity="warning",
            )
        )
        return None
    moved = session.start
    while moved.date() in holidays:
        moved = moved + timedelta(days=7)  # wall-clock arithmetic: 17:00 stays 17:00
    problems.append(
        _problem(
            f"the session of {day} ({name}) moves to {moved.date()}: "
            "schedule.holidays = 'next-week'",
            ("schedule", "holidays"),
            severity="warning",
        )
    )
    return replace(
        session,
        start=moved,
        end=session.end + (moved - session.start),
        moved_from=session.start,
    )


def _holidays(
    config: Config,
    planned: Iterable[Session],
    entries: dict[date, tuple[int, SessionEntry]],
    problems: list[Problem],
) -> dict[date, str]:
    years = {s.start.year for s in planned} | {day.year for day in entries}
    years |= {year + 1 for year in years}  # a next-week move can cross into January
    schedule = config.schedule
    try:
        return public_holidays(
            schedule.holiday_country,
            subdiv=schedule.holiday_subdivision,
            years=sorted(years),
            language=config.cycle.language,
        )
    except NotImplementedError as exc:
        problems.append(
            _problem(
                f"the holidays package does not know this country or subdivision ({exc}); "
                "use an ISO 3166 code such as 'FR'",
                ("schedule", "holiday_country"),
            )
        )
        return {}


def _entry(set_by: dict[str, int], session: Session, key: str | None = None) -> KeyPath:
    """The key of the [[sessions]] entry that shapes `session`, for a problem about it."""
    index = set_by.get(session.id)
    if index is None:
        return ("sessions",)
    return ("sessions", index) if key is None else ("sessions", index, key)


def _no_two_at_once(
    sessions: list[Session], set_by: dict[str, int], problems: list[Problem]
) -> None:
    seen: dict[datetime, Session] = {}
    for session in sessions:
        if session.cancelled:
            continue
        if (other := seen.get(session.start)) is not None:
            problems.append(
                _problem(
                    f"the sessions planned on {other.id} and {session.id} would both take place at "
                    f"{session.start:%Y-%m-%d %H:%M}; move or cancel one of them",
                    _entry(set_by, session if session.id in set_by else other),
                )
            )
        seen[session.start] = session


def find_session(sessions: Iterable[Session], day: date) -> Session | None:
    """The session held or planned on `day`, preferring one actually held that day."""
    candidates = [s for s in sessions if s.matches(day)]
    candidates.sort(key=lambda s: s.start.date() != day)
    return candidates[0] if candidates else None
