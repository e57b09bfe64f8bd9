"""The staff's read-only commands (check, plan, registrants, history, status, suppressed).

Each takes the config file and typed options, reads the clock it is given, and returns
an Answer; nothing here prints or exits.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path

from ..core.answer import Answer
from ..core.clock import Clock, utc_now
from ..core.declines import Declines
from ..core.errors import ReminderError
from ..core.mailing import DeliveryState
from ..core.model import Lead, Session
from ..inputs.config import Config
from ..service.logs import use_zone
from ..service.snapshot import Snapshot, load_snapshot
from ..storage.backend import ledger_target, open_ledger
from ..storage.ledger import Suppression
from . import printing, values
from .attendance import decline_entries

DEFAULT_WINDOW = Lead.parse(values.DEFAULT_WINDOW)


def at(snapshot: Snapshot, given: datetime | None, clock: Clock = utc_now) -> datetime:
    """`given` (naive: in the cycle's zone), or the clock's now."""
    if given is None:
        return clock()
    return given if given.tzinfo else given.replace(tzinfo=snapshot.config.zone)


def session_on(snapshot: Snapshot, day: date) -> Session:
    from ..core.sessions import find_session

    found = find_session(snapshot.sessions, day)
    if found is None:
        days = ", ".join(s.id for s in snapshot.sessions)
        raise ReminderError(f"no session on {day}; the sessions are {days}")
    return found


def suppressions(config: Config) -> list[Suppression]:
    """The ledger's suppressions; none before the ledger exists."""
    return stops(config)[0]


def stops(config: Config) -> tuple[list[Suppression], Declines]:
    """The ledger's suppressions and registrants' declines; none before the ledger exists."""
    target = ledger_target(config)
    if isinstance(target, Path) and not target.exists():
        return [], Declines()
    with open_ledger(config, readonly=True) as ledger:
        return ledger.suppressions(), ledger.declines()


def shown_zone(config: Config, utc: bool) -> tzinfo:
    """The zone times are shown in, log lines included."""
    zone: tzinfo = UTC if utc else config.zone
    use_zone(zone)
    return zone


def _window_start(since: Lead | datetime | None, now: datetime, zone: tzinfo) -> datetime:
    since = since or DEFAULT_WINDOW
    if isinstance(since, Lead):
        return now - since.delta
    return since if since.tzinfo else since.replace(tzinfo=zone)


def check(
    config_path: Path, *, now: datetime | None = None, strict: bool = False, clock: Clock = utc_now
) -> Answer:
    """Every problem of the input files; then what would be served and the notices owed."""
    from ..service.lookahead import notices_in
    from ..service.snapshot import check as check_files

    answer = Answer()
    snapshot, problems = check_files(config_path)
    for problem in problems:
        answer.note(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    if errors or snapshot is None:
        return answer.note(
            f"{len(errors)} error(s), {warnings} warning(s): fix the errors above; "
            "nothing is sent from an invalid configuration"
        ).fail()
    roster = snapshot.roster
    stopped_by = suppressions(snapshot.config)
    stopped = printing.among(roster, stopped_by)
    for line in printing.mapping_lines(roster):
        answer.say(line)
    if stopped:
        answer.say("suppressed in the ledger (not mailed):")
        for line in printing.suppression_lines(stopped, False, snapshot.config.zone):
            answer.say(line)
    cancelled = sum(s.cancelled for s in snapshot.sessions)
    instant = at(snapshot, now, clock)
    owed = printing.notices_data(notices_in(snapshot.config, snapshot, instant), snapshot, instant)
    if owed:
        answer.say("change notices these files would cause, against the ledger:")
        answer.say("\n".join(printing.notices_lines(owed)))
    answer.say(
        f"{config_path}: OK: {len(snapshot.sessions)} sessions ({cancelled} cancelled), "
        f"leads {', '.join(map(str, snapshot.config.reminders.leads))}; "
        f"{len(roster.registrants) - len(stopped)} registrants served, "
        f"{printing.suppressed_summary(roster, stopped_by)}; templates OK; "
        f"state folder writable; {warnings} warning(s)"
    )
    if warnings and strict:
        answer.note(f"{warnings} warning(s) and --strict: exit 1").fail()
    return answer


def plan(
    config_path: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    now: datetime | None = None,
    output: str = "table",
    clock: Clock = utc_now,
) -> Answer:
    """The sessions between `start` and `end`, and when each reminder and notice goes out."""
    from ..service.lookahead import notices_in

    snapshot = load_snapshot(config_path, compose=False)
    instant = at(snapshot, now, clock)
    sessions = [
        s
        for s in snapshot.sessions
        if (start is None or s.start.date() >= start) and (end is None or s.start.date() <= end)
    ]
    notices = notices_in(snapshot.config, snapshot, instant)
    if output == "json":
        data = printing.plan_data(snapshot, sessions, instant, snapshot.roster, notices)
        return Answer().say(json.dumps(data, ensure_ascii=False, indent=2))
    return Answer().say(printing.plan_text(snapshot, sessions, instant, snapshot.roster, notices))


def registrants(
    config_path: Path,
    *,
    session: date | None = None,
    output: str = "table",
    show_addresses: bool = False,
) -> Answer:
    """Who attends (one session, or any), and every row that was skipped; for one
    session, who is expected at it (less those who declined it)."""
    snapshot = load_snapshot(config_path, compose=False)
    stopped, declines = stops(snapshot.config)
    return Answer().say(
        printing.registrants_output(
            snapshot,
            snapshot.roster.registrants,
            output,
            show_addresses,
            stopped,
            declines,
            session_on(snapshot, session) if session else None,
        )
    )


def history(
    config_path: Path,
    *,
    since: Lead | datetime | None = None,
    session: date | None = None,
    recipient: str | None = None,
    output: str = "table",
    show_addresses: bool = False,
    utc: bool = False,
    clock: Clock = utc_now,
) -> Answer:
    """What was sent, failed or superseded; failed if anything failed in the window."""
    snapshot = load_snapshot(config_path, compose=False)
    zone = shown_zone(snapshot.config, utc)
    found = session_on(snapshot, session) if session else None
    window = _window_start(since, clock(), zone)
    with open_ledger(snapshot.config, readonly=True) as ledger:
        rows = ledger.rows(
            session_prefix=found.appointment if found else "",
            recipient=recipient or "",
            since=window if since else None,
        )
        declines = decline_entries(
            ledger.declines(),
            zone,
            show=show_addresses,
            session_id=found.id if found else "",
            recipient=recipient or "",
            since=window if since else None,
        )
    answer = Answer().say(printing.history_output(rows, output, show_addresses, zone, declines))
    # For monitoring: what failed in the window, or waits on a configuration fault now.
    held = sum(bool(row.fault) for row in rows)
    failed = sum(row.state is DeliveryState.FAILED and row.updated_at >= window for row in rows)
    if held or failed:
        said = [f"{failed} failed since {window:%Y-%m-%d %H:%M} UTC"] if failed else []
        said += [f"{held} wait on a configuration fault"] if held else []
        answer.note(f"exit 1: {'; '.join(said)}").fail()
    return answer


def status(
    config_path: Path,
    *,
    now: datetime | None = None,
    output: str = "table",
    since: Lead | datetime | None = None,
    utc: bool = False,
    clock: Clock = utc_now,
) -> Answer:
    """The next wake-ups and, per session and lead, what was sent; failed on trouble."""
    from ..service.lookahead import notice_plan, wakeup_instants
    from ..storage.cluster import workers

    snapshot = load_snapshot(config_path, compose=False)
    zone = shown_zone(snapshot.config, utc)
    instant = at(snapshot, now, clock)
    window = _window_start(since, instant, zone)
    with open_ledger(snapshot.config, readonly=True) as ledger:
        data = printing.status_data(
            snapshot,
            instant,
            wakeup_instants(ledger, snapshot, instant),
            ledger.counts(),
            ledger.last_error(),
            ledger.faults(),
            ledger.suppressions(),
            notice_plan(ledger, snapshot, instant),
            zone=zone,
            window=window,
            declines=ledger.declines(),
        )
        data["workers"] = printing.workers_data(workers(ledger), instant)
    text = (
        json.dumps(data, ensure_ascii=False, indent=2)
        if output == "json"
        else printing.status_text(data) + "\n\n" + printing.workers_text(data["workers"])
    )
    answer = Answer().say(text)
    if data["trouble"]:
        answer.note(f"exit 1: {data['trouble_reason']}").fail()
    return answer


def suppressed(
    config_path: Path, *, output: str = "table", show_addresses: bool = False, utc: bool = False
) -> Answer:
    """Who is never mailed: the ledger's suppressions and the suppression list's lines."""
    from ..inputs.config import load_config
    from ..inputs.registrants import load_suppression

    config = load_config(config_path)
    listed = sorted(load_suppression(config.paths.suppression))
    zone = UTC if utc else config.zone
    return Answer().say(
        printing.suppressed_output(suppressions(config), listed, output, show_addresses, zone)
    )
