"""Session dates: the rule per semester, per-date entries, and the public-holiday policy."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from .errors import ConfigError, KeyPath, Problem
from .holiday_calendar import public_holidays
from .model import Session
from .schedule import CycleSchedule, DateEntry, HolidayPolicy, Locator
from .wallclock import Gap, check_wall_time


def build_sessions(schedule: CycleSchedule, locate: Locator) -> tuple[list[Session], list[Problem]]:
    """Every session of the cycle in order, and warnings placed by `locate` in the file the
    schedule came from; raise ConfigError when inconsistent."""
    sessions, problems = expand_sessions(schedule)
    located = locate(problems)
    if any(p.severity == "error" for p in located):
        raise ConfigError(located)
    return sessions, located


def expand_sessions(schedule: CycleSchedule) -> tuple[list[Session], list[Problem]]:
    """Every session of the cycle in order, and what is wrong, by config key."""
    zone = schedule.zone
    problems: list[Problem] = []
    planned = _rule_sessions(schedule, zone, problems)
    entries: dict[date, tuple[int, DateEntry]] = {}
    for index, entry in enumerate(schedule.entries):
        if entry.date in entries:
            problems.append(
                _problem(
                    f"a second entry for {entry.date}; merge it with the one above "
                    f"(sessions[{entries[entry.date][0]}])",
                    ("sessions", index, "date"),
                )
            )
        entries[entry.date] = (index, entry)

    holidays = _holidays(schedule, planned, entries, problems)
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
            kept = _holiday_policy(schedule.holidays, session, name, holidays, problems)
            if kept is None:
                continue
            session = kept
        sessions.append(session)

    for day, (index, entry) in sorted(entries.items()):
        if entry.extra:
            semester = next((s.name for s in schedule.semesters if s.start <= day <= s.end), "")
            start = datetime.combine(day, entry.start or schedule.start, zone)
            end = datetime.combine(day, entry.end or schedule.end, zone)
            session = Session(
                day.isoformat(),
                start,
                end,
                semester or "hors semestre",
                agenda=schedule.agenda.strip(),
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

    skipped = {s.id for s in sessions if _times_missing(schedule, s, set_by, problems)}
    for position, session in enumerate(sessions):
        if session.id in skipped:
            continue
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


def _times_missing(
    schedule: CycleSchedule, session: Session, set_by: dict[str, int], problems: list[Problem]
) -> bool:
    """Whether the session starts or ends at a time the clocks skip (an error); a time they
    show twice is a warning saying which one is meant."""
    missing = False
    for name, wall in (("start", session.start), ("end", session.end)):
        found = check_wall_time(wall)
        if found is None:
            continue
        at = _time_key(schedule, set_by, session, name)
        verb = "starts" if name == "start" else "ends"
        when = f"the session of {session.id} {verb} at {wall:%H:%M} on {wall.date()}"
        if isinstance(found, Gap):
            missing = True
            problems.append(
                _problem(
                    f"{when}, a time that does not exist in {schedule.zone.key}: clocks jump "
                    f"from {found.before:%H:%M} to {found.after:%H:%M} that night (daylight "
                    f"saving time); the nearest valid times are {found.before:%H:%M} and "
                    f"{found.after:%H:%M}",
                    at,
                )
            )
        else:
            problems.append(
                _problem(
                    f"{when}, a time clocks show twice in {schedule.zone.key} (daylight saving "
                    f"time ends that night); the first is used, at offset "
                    f"{_offset(wall)}, not the second ({_offset(found.other)}); choose another "
                    "time to leave no doubt",
                    at,
                    severity="warning",
                )
            )
    return missing


def _offset(wall: datetime) -> str:
    return wall.isoformat(timespec="minutes")[-6:]


def _time_key(
    schedule: CycleSchedule, set_by: dict[str, int], session: Session, name: str
) -> KeyPath:
    """The key that gave the session this start or end: its entry's, or the schedule's."""
    index = set_by.get(session.id)
    if index is not None:
        entry = schedule.entries[index]
        if getattr(entry, name) is not None:
            return ("sessions", index, name)
        if entry.moved_to is not None or entry.extra:
            return ("sessions", index, "moved_to" if entry.moved_to else "date")
    return ("schedule", name)


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _weekday(day: date) -> str:
    return _WEEKDAYS[day.weekday()]


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


def _rule_sessions(
    schedule: CycleSchedule, zone: ZoneInfo, problems: list[Problem]
) -> list[Session]:
    sessions: list[Session] = []
    ordered = sorted(enumerate(schedule.semesters), key=lambda pair: pair[1].start)
    for (_, before), (index, after) in itertools.pairwise(ordered):
        if after.start <= before.end:
            problems.append(
                _problem(
                    f"semester {after.name!r} starts ({after.start}) before {before.name!r} ends "
                    f"({before.end}); each date belongs to one semester",
                    ("semesters", index, "start"),
                )
            )
    for semester in schedule.semesters:
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
                    agenda=schedule.agenda.strip(),
                )
            )
    return sessions


def _apply(session: Session, entry: DateEntry, zone: ZoneInfo) -> Session:
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
        speakers=entry.speakers,
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
    policy: HolidayPolicy,
    session: Session,
    name: str,
    holidays: dict[date, str],
    problems: list[Problem],
) -> Session | None:
    day = session.start.date()
    if policy is HolidayPolicy.WARN:
        _holiday_warning(session, name, problems)
        return replace(session, holiday=name)
    if policy is HolidayPolicy.SKIP:
        problems.append(
            _problem(
                f"no session on {day} ({name}): schedule.holidays = 'skip'",
                ("schedule", "holidays"),
                severity="warning",
            )
        )
        return None
    # The next same weekday that is not a holiday: a week later, or more when that day is
    # a holiday too (1 May 2024 moves to 15 May, 8 May being one).
    moved = session.start
    passed: list[str] = []
    while moved.date() in holidays:
        moved = moved + timedelta(days=7)  # wall-clock arithmetic: 17:00 stays 17:00
        if moved.date() in holidays:
            passed.append(f"{moved.date()} ({holidays[moved.date()]})")
    also = f", skipping {', '.join(passed)}, a public holiday too" if passed else ""
    problems.append(
        _problem(
            f"the session of {day} ({name}) moves to {moved.date()}, the next "
            f"{_weekday(day)} that is not a public holiday{also}: "
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
    schedule: CycleSchedule,
    planned: Iterable[Session],
    entries: dict[date, tuple[int, DateEntry]],
    problems: list[Problem],
) -> dict[date, str]:
    years = {s.start.year for s in planned} | {day.year for day in entries}
    years |= {year + 1 for year in years}  # a next-week move can cross into January
    try:
        return public_holidays(
            schedule.holiday_country,
            subdiv=schedule.holiday_subdivision,
            years=sorted(years),
            language=schedule.language,
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
