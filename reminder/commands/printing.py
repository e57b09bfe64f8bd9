"""What the CLI prints: tables for people, JSON (and CSV) for scripts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from ..core.declines import NO_DECLINES, Declines, expected
from ..core.mailing import DeliveryState, MailKind
from ..core.model import Registrant, Roster, Session
from ..core.plan import Slot, deadline, progress, slots_by_session
from ..core.wording import long_date, time_range
from ..inputs.registrants import masked, redacted
from .attendance import attendance_data

if TYPE_CHECKING:  # types only: `reminder plan` must not import the ledger or the cluster
    from ..core.notices import NoticePlan
    from ..service.snapshot import Snapshot
    from ..storage.cluster import WorkerRow
    from ..storage.ledger import Row, Suppression


def iso(moment: datetime) -> str:
    """ISO 8601 with its offset: 2023-03-01T17:00:00+01:00."""
    return moment.isoformat(timespec="seconds")


def local(moment: datetime, zone: tzinfo) -> str:
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _as_text(typed: str) -> str:
    """A value a registrant typed, as a CSV cell a spreadsheet shows and never runs:
    Excel and LibreOffice would compute "=HYPERLINK(...)" typed in a public form."""
    return f"'{typed}" if typed.startswith(_FORMULA_START) else typed


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def notices_data(
    plan: NoticePlan | None, snapshot: Snapshot, now: datetime, zone: tzinfo | None = None
) -> list[dict[str, Any]]:
    """Notices owed, per session, kind and instant: how many, what changed, when they go."""
    if plan is None:
        return []
    groups: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
    for notice in (*plan.owed, *plan.waiting):
        at = max(notice.due_at, now) if notice in plan.owed else notice.due_at
        state = "retry" if notice.retry else ("due" if notice in plan.owed else "settling")
        key = (notice.session.id, notice.kind, state, at)
        group = groups.setdefault(
            key,
            {
                "session": notice.session.id,
                "kind": notice.kind,
                "state": state,
                "at": iso(at.astimezone(zone or snapshot.config.zone)),
                "registrants": 0,
                "changes": [],
                "sequence": notice.sequence,
            },
        )
        group["registrants"] += 1
        group["changes"] = sorted(set(group["changes"]) | set(notice.changes))
    return sorted(groups.values(), key=lambda g: (g["at"], g["session"], g["kind"]))


def notices_lines(items: Sequence[dict[str, Any]], indent: str = "  ") -> list[str]:
    lines = []
    for n in items:
        at = n["at"][:16].replace("T", " ")
        when = (
            f"goes at {at} once the change has settled"
            if n["state"] == "settling"
            else f"{n['state']} now ({at})"
        )
        lines.append(
            f"{indent}{n['session']}  {n['kind']} to {n['registrants']} registrant(s) "
            f"({', '.join(n['changes'])}; SEQUENCE {n['sequence']})  {when}"
        )
    return lines


def plan_data(
    snapshot: Snapshot,
    sessions: Sequence[Session],
    now: datetime,
    roster: Roster | None,
    notices: NoticePlan | None = None,
) -> dict[str, Any]:
    by_session = slots_by_session(snapshot.slots)
    owed = notices_data(notices, snapshot, now)
    items = []
    for session in sessions:
        reminders = [
            {
                "lead": str(slot.lead),
                "due_at": iso(slot.due_at),
                "status": "past" if slot.due_at <= now else "upcoming",
                "late_until": iso(deadline(session, snapshot.cutoff)),
            }
            for slot in by_session.get(session, [])
        ]
        items.append(
            {
                "id": session.id,
                "start": iso(session.start),
                "end": iso(session.end),
                "semester": session.semester,
                "topic": session.topic,
                "draft": session.draft,
                "status": session.flags(now),
                "cancelled_reason": session.cancelled_reason,
                "moved_from": iso(session.moved_from) if session.moved_from else None,
                "holiday": session.holiday or None,
                "speakers": list(session.speakers),
                "partner": session.partner,
                "join_url": session.join_url,
                "registrants": roster.count(session) if roster else None,
                "reminders": reminders,
                "notices": [n for n in owed if n["session"] == session.id],
            }
        )
    config = snapshot.config
    return {
        "cycle": config.cycle.id,
        "title": config.cycle.title,
        "timezone": config.cycle.timezone,
        "now": iso(now.astimezone(config.zone)),
        "sessions": items,
    }


def plan_text(
    snapshot: Snapshot,
    sessions: Sequence[Session],
    now: datetime,
    roster: Roster | None,
    notices: NoticePlan | None = None,
) -> str:
    owed = notices_data(notices, snapshot, now)
    config = snapshot.config
    language = config.cycle.language
    zone = config.zone
    by_session = slots_by_session(snapshot.slots)
    lines = [
        f"{config.cycle.title} ({config.cycle.id}): {len(sessions)} sessions, "
        f"{config.cycle.timezone}, now {now.astimezone(zone):%Y-%m-%d %H:%M}"
    ]
    semester = None
    for session in sessions:
        if session.semester != semester:
            semester = session.semester
            lines += ["", semester]
        flags = ", ".join(session.flags(now))
        count = f", {roster.count(session)} registrants" if roster else ""
        lines.append(
            f"  {long_date(session.start, language)}, "
            f"{time_range(session.start, session.end, language)}  [{flags}]{count}"
        )
        if session.topic:
            lines.append(f"    {session.topic}")
        if session.moved_from:
            lines.append(
                f"    moved from {long_date(session.moved_from, language)}, "
                f"{session.moved_from:%H:%M}"
            )
        if session.holiday:
            lines.append(f"    public holiday: {session.holiday}")
        lines += notices_lines([n for n in owed if n["session"] == session.id], "    notice ")
        if session.cancelled:
            reason = f": {session.cancelled_reason}" if session.cancelled_reason else ""
            lines.append(f"    cancelled{reason}")
            continue
        for slot in by_session.get(session, []):
            due = slot.due_at.astimezone(zone)
            state = "past" if due <= now else "upcoming"
            lines.append(f"    reminder {slot.lead!s:>4}  {due:%Y-%m-%d %H:%M} {due:%Z}  {state}")
    return "\n".join(lines)


def registrant_dict(registrant: Registrant, show: bool) -> dict[str, Any]:
    return {
        "email": registrant.email if show else masked(registrant.email),
        "first_name": registrant.first_name,
        "last_name": registrant.last_name,
        "role": registrant.role,
        "organisation": registrant.organisation,
        "sessions": sorted(registrant.sessions) if registrant.sessions is not None else "all",
        "join_url": registrant.join_url if show else bool(registrant.join_url),
        "language": registrant.language,
        "row": registrant.row,
    }


def suppression_dict(suppression: Suppression, show: bool, zone: tzinfo = UTC) -> dict[str, Any]:
    return {
        "address": suppression.address if show else masked(suppression.address),
        "source": suppression.source,
        "reason": suppression.reason,
        "reply": suppression.reply if show else redacted(suppression.reply),
        "at": iso(suppression.created_at.astimezone(zone)),
    }


def suppression_lines(
    suppressions: Sequence[Suppression], show: bool, zone: tzinfo = UTC
) -> list[str]:
    return [suppression_line(suppression_dict(s, show, zone)) for s in suppressions]


def suppression_line(d: dict[str, Any]) -> str:
    """Who, since when, by what, why, and the server's words for a bounce."""
    return (
        f"  {d['address']}  {d['at'][:16].replace('T', ' ')}{d['at'][19:]}  "
        f"{d['source']}: {d['reason']}" + (f" ({d['reply']})" if d["reply"] else "")
    )


def among(roster: Roster, suppressions: Sequence[Suppression]) -> list[Suppression]:
    """The ledger's suppressions that stop a registrant of this export."""
    if not suppressions:
        return []  # without building the roster's index by key
    keys = roster.by_key
    return [s for s in suppressions if s.address in keys]


def mapping_lines(roster: Roster) -> list[str]:
    if roster.mapping is None:
        return [f"{roster.source}: no export yet, so no columns"]
    return [f"{roster.source}: {roster.mapping.lines()[0]}", *roster.mapping.lines()[1:]]


def suppressed_summary(roster: Roster, ledger: Sequence[Suppression]) -> str:
    return (
        f"{len(roster.suppressed)} suppressed by the list file, "
        f"{len(among(roster, ledger))} in the ledger"
    )


def registrants_output(
    snapshot: Snapshot,
    people: Sequence[Registrant],
    fmt: str,
    show: bool,
    suppressions: Sequence[Suppression] = (),
    declines: Declines = NO_DECLINES,
    session: Session | None = None,
) -> str:
    """The mapping, counts, suppressions, problems and the list; with `session`, the
    list is who is expected at it (its registrants less their standing declines)."""
    roster = snapshot.roster
    stopped = among(roster, suppressions)
    mapping = roster.mapping
    zone = snapshot.config.zone
    attendance = attendance_data(
        snapshot.sessions, roster, declines, frozenset(s.address for s in stopped), zone, show
    )
    if session is not None:
        people = expected(session, roster, declines)  # the speakers' list
    if fmt == "json":
        return json.dumps(
            {
                "source": roster.source,
                "columns": None
                if mapping is None
                else {
                    "header_row": mapping.header_row,
                    "sheet": mapping.sheet or None,
                    "fields": {field: header for field, header, _ in mapping.fields},
                    "options": dict(mapping.options),
                    "ignored": list(mapping.ignored),
                    "notes": list(mapping.notes),
                },
                "counts": {s.id: roster.count(s) for s in snapshot.sessions},
                # Per session: registered, declined (standing), to be mailed, and who declined.
                "sessions": attendance,
                "suppressed": len(roster.suppressed),
                "suppressed_in_ledger": [
                    suppression_dict(x, show, snapshot.config.zone) for x in stopped
                ],
                "problems": [str(p) for p in roster.problems],
                "registrants": [registrant_dict(r, show) for r in people],
                "expected_at": session.id if session else None,
            },
            ensure_ascii=False,
            indent=2,
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["email", "first_name", "last_name", "role", "organisation", "sessions", "row"]
        )
        for r in people:
            d = registrant_dict(r, show)
            sessions = d["sessions"] if d["sessions"] == "all" else " ".join(d["sessions"])
            typed = [_as_text(v) for v in (r.first_name, r.last_name, r.role, r.organisation)]
            writer.writerow([d["email"], *typed, sessions, r.row])
        return out.getvalue().rstrip("\n")
    counts = table(
        [
            (
                s.id,
                f"{s.start:%H:%M}",
                a["registered"],
                a["declined"],
                "cancelled" if s.cancelled else "",
            )
            for s, a in zip(snapshot.sessions, attendance, strict=True)
        ],
        ["session", "time", "registrants", "declined", ""],
    )
    listing = table(
        [
            (
                registrant_dict(r, show)["email"],
                r.name,
                r.role,
                r.organisation,
                "all" if r.sessions is None else " ".join(sorted(r.sessions)),
            )
            for r in people
        ],
        ["email", "name", "role", "organisation", "sessions"],
    )
    parts = [
        f"{roster.source}: {len(roster.registrants) - len(stopped)} registrants served, "
        f"{suppressed_summary(roster, suppressions)}, {len(roster.problems)} problems",
        "",
        *mapping_lines(roster),
        "",
        counts,
    ]
    if stopped:
        parts += [
            "",
            "suppressed in the ledger (not mailed):",
            *suppression_lines(stopped, show, snapshot.config.zone),
        ]
    for a in attendance:
        if a["declines"] and (session is None or a["session"] == session.id):
            parts += ["", f"declined {a['session']} (not mailed about it, not expected):"]
            parts += [f"  {x['recipient']}  {_when(x['declined_at'])}" for x in a["declines"]]
    if roster.problems:
        parts += ["", *[str(p) for p in roster.problems]]
    if session is not None:
        parts += ["", f"expected at {session.id}: {len(people)}"]
    parts += ["", listing]
    return "\n".join(parts)


def history_output(
    rows: Sequence[Row],
    fmt: str,
    show: bool,
    zone: tzinfo,
    declines: Sequence[dict[str, Any]] = (),
) -> str:
    """The history; times in `zone` (the cycle's, or UTC), with their offset in JSON.
    `declines` (attendance.decline_entries) follow the deliveries, of kind "decline"."""

    def who(row: Row) -> str:
        return row.recipient if show else masked(row.recipient)

    def at(moment: datetime) -> str:
        return iso(moment.astimezone(zone))

    if fmt == "json":
        return json.dumps(
            [
                {
                    "session": row.appointment,
                    "kind": row.kind,
                    "lead": row.lead,
                    "recipient": who(row),
                    "status": row.state,
                    "message_id": row.message_id,
                    "due_at": at(row.due_at),
                    "attempts": row.attempts,
                    "sent_at": at(row.sent_at) if row.sent_at else None,
                    "updated_at": at(row.updated_at),
                    "reply": row.last_reply if show else redacted(row.last_reply),
                    "configuration_fault": row.fault or None,
                }
                for row in rows
            ]
            + list(declines),
            ensure_ascii=False,
            indent=2,
        )
    if not rows:
        return "\n".join(["no delivery recorded yet", *decline_lines(declines)])
    body = table(
        [
            (
                local(row.due_at, zone),
                row.appointment[:16].replace("T", " "),
                row.lead if row.kind == MailKind.REMINDER else f"{row.kind} {row.lead}",
                who(row),
                row.state,
                row.attempts,
                local(row.sent_at, zone) if row.sent_at else "",
                (row.last_reply if show else redacted(row.last_reply))[:60],
            )
            for row in rows
        ],
        ["due", "session", "lead", "recipient", "status", "tries", "sent", "reply"],
    )
    totals: dict[str, int] = {}
    for row in rows:
        state = (
            "waiting on a configuration fault"
            if row.state is DeliveryState.WAITING
            else str(row.state)
        )
        totals[state] = totals.get(state, 0) + 1
    return "\n".join(
        [
            body,
            "",
            f"times in {zone}; " + ", ".join(f"{n} {state}" for state, n in sorted(totals.items())),
            *decline_lines(declines),
        ]
    )


def status_data(
    snapshot: Snapshot,
    now: datetime,
    wakeups: Sequence[datetime],
    counts: dict[tuple[str, str, str], dict[DeliveryState, int]],
    last_error: Row | None,
    faults: Sequence[Row] = (),
    suppressions: Sequence[Suppression] = (),
    notices: NoticePlan | None = None,
    *,
    zone: tzinfo | None = None,
    window: datetime | None = None,
    declines: Declines = NO_DECLINES,
) -> dict[str, Any]:
    """What `status` shows; `trouble` (its exit status) says whether a reminder due in
    the window was missed or failed, or claims wait on a configuration fault."""
    zone = zone or snapshot.config.zone
    owed = notices_data(notices, snapshot, now, zone)
    # Nobody suppressed in the ledger, nor about a session they declined, is mailed: not
    # owed, so never "missed" either.
    stopped = frozenset(s.address for s in suppressions)
    attendance = attendance_data(snapshot.sessions, snapshot.roster, declines, stopped, zone)
    mailed = {a["session"]: a["to_be_mailed"] for a in attendance}

    def attending(session: Session) -> int:
        return int(mailed[session.id])

    slots: list[Slot] = list(snapshot.slots)
    by_instant: dict[datetime, list[Slot]] = {}
    for slot in slots:
        by_instant.setdefault(slot.due_at, []).append(slot)
    upcoming = []
    for instant in wakeups[:10]:
        what = by_instant.get(instant, [])
        at = iso(instant.astimezone(zone))
        upcoming.append(
            {
                "at": at,
                "reminders": [
                    {
                        "session": s.session.id,
                        "lead": str(s.lead),
                        "registrants": attending(s.session),
                    }
                    for s in what
                ]
                or ("change notices" if any(n["at"] == at for n in owed) else "retries"),
            }
        )
    lines = []
    ordered = sorted(slots, key=lambda s: (s.session.start, -s.lead.delta))
    for slot in ordered:
        found = counts.get((slot.session.appointment, MailKind.REMINDER, str(slot.lead)), {})
        attendees = attending(slot.session)
        standing = progress(slot, attendees, found, now, snapshot.cutoff)
        lines.append(
            {
                "session": slot.session.id,
                "lead": str(slot.lead),
                "due_at": iso(slot.due_at.astimezone(zone)),
                "registrants": attendees,
                "sent": found.get(DeliveryState.SENT, 0),
                "failed": found.get(DeliveryState.FAILED, 0),
                "superseded": found.get(DeliveryState.SUPERSEDED, 0),
                "in_flight": found.get(DeliveryState.CLAIMED, 0),
                "waiting_on_fault": found.get(DeliveryState.WAITING, 0),
                "pending": standing.pending,
                "missed": standing.missed,
            }
        )
    told = [
        {
            "session": session,
            "kind": kind,
            "version": lead,
            "sent": found.get(DeliveryState.SENT, 0),
            "failed": found.get(DeliveryState.FAILED, 0),
            "superseded": found.get(DeliveryState.SUPERSEDED, 0),
            "in_flight": found.get(DeliveryState.CLAIMED, 0),
        }
        for (session, kind, lead), found in sorted(counts.items())
        if kind != MailKind.REMINDER
    ]
    error = None
    if last_error is not None:
        error = {
            "at": iso(last_error.updated_at.astimezone(zone)),
            "session": last_error.appointment,
            "lead": last_error.lead,
            "recipient": masked(last_error.recipient),
            "status": last_error.state,
            "reply": redacted(last_error.last_reply),
        }
    fault = None
    if faults:
        fault = {
            "deliveries": len(faults),
            "since": iso(faults[-1].updated_at.astimezone(zone)),
            "reply": faults[0].fault,
        }
    since = window or now
    troubled = [
        line
        for line, slot in zip(lines, ordered, strict=True)
        # A reminder whose span (due instant to deadline) overlaps the window.
        if (line["missed"] or line["failed"])
        and slot.due_at <= now
        and deadline(slot.session, snapshot.cutoff) >= since
    ]
    trouble = bool(faults) or bool(troubled)
    reasons = [f"{len(faults)} deliveries wait on a configuration fault"] if faults else []
    reasons += [
        f"{line['session']} {line['lead']}: {line['failed']} failed, {line['missed']} missed"
        for line in troubled
    ]
    return {
        "now": iso(now.astimezone(zone)),
        "window_start": iso(since.astimezone(zone)),
        "next_wakeups": upcoming,
        "reminders": lines,
        "configuration_fault": fault,
        "notices": owed,
        "notices_recorded": told,
        "last_error": error,
        "trouble": trouble,
        "trouble_reason": "; ".join(reasons),
        "suppressed": [suppression_dict(x, False, zone) for x in suppressions],
        "sessions": attendance,
    }


def status_text(data: dict[str, Any]) -> str:
    lines = [f"now {data['now']}", "", "next wake-ups:"]
    for wake in data["next_wakeups"]:
        what = wake["reminders"]
        text = (
            what
            if isinstance(what, str)
            else ", ".join(
                f"{r['lead']} reminder of {r['session']} ({r['registrants']} registrants)"
                for r in what
            )
        )
        lines.append(f"  {wake['at']}  {text}")
    if not data["next_wakeups"]:
        lines.append("  none: no reminder left to send")
    rows = [
        (
            r["session"],
            r["lead"],
            r["due_at"][:16].replace("T", " "),
            r["registrants"],
            r["sent"],
            r["failed"],
            r["superseded"],
            r["in_flight"],
            r["waiting_on_fault"],
            r["pending"],
            r["missed"],
        )
        for r in data["reminders"]
    ]
    lines += [
        "",
        table(
            rows,
            [
                "session",
                "lead",
                "due",
                "registrants",
                "sent",
                "failed",
                "superseded",
                "in flight",
                "waiting",
                "pending",
                "missed",
            ],
        ),
    ]
    lines += ["", "per session:", *attendance_lines(data.get("sessions", []))]
    fault = data["configuration_fault"]
    if fault:
        lines += [
            "",
            f"CONFIGURATION FAULT: {fault['deliveries']} waiting on a configuration fault "
            f"since {fault['since']}: {fault['reply']}; fix "
            "the configuration and reload (SIGHUP): they are sent at once",
        ]
    lines += ["", "change notices owed:"]
    lines += notices_lines(data["notices"]) or ["  none"]
    if data["notices_recorded"]:
        lines += [
            "",
            table(
                [
                    (
                        n["session"][:16].replace("T", " "),
                        f"{n['kind']} {n['version']}",
                        n["sent"],
                        n["failed"],
                        n["superseded"],
                        n["in_flight"],
                    )
                    for n in data["notices_recorded"]
                ],
                ["session", "notice", "sent", "failed", "superseded", "in flight"],
            ),
        ]
    error = data["last_error"]
    lines += [
        "",
        f"last error: {error['at']} {error['session']} {error['lead']} "
        f"{error['recipient']} ({error['status']}): {error['reply']}"
        if error
        else "last error: none",
    ]
    stopped = data.get("suppressed", [])
    lines += ["", f"suppressed in the ledger: {len(stopped)}"]
    lines += [suppression_line(d) for d in stopped]
    return "\n".join(lines)


def _when(text: str) -> str:
    """2023-02-25T10:00:00+01:00 as 2023-02-25 10:00+01:00: a line's width, its offset."""
    return f"{text[:16].replace('T', ' ')}{text[19:]}"


def attendance_lines(data: Sequence[dict[str, Any]]) -> list[str]:
    """The per-session counts, then each standing decline under its session."""
    lines = [
        table(
            [(d["session"], d["registered"], d["declined"], d["to_be_mailed"]) for d in data],
            ["session", "registered", "declined", "to be mailed"],
        )
    ]
    for d in data:
        if d["declines"]:
            lines.append(f"declined {d['session']}:")
            lines += [f"  {x['recipient']}  {_when(x['declined_at'])}" for x in d["declines"]]
    return lines


def decline_lines(entries: Sequence[dict[str, Any]]) -> list[str]:
    """`history`'s declines, after its deliveries."""
    if not entries:
        return []
    lines = ["", "registrants' choices (a decline stands until undone):"]
    for e in entries:
        undone = f", came after all {_when(e['undone_at'])}" if e["undone_at"] else ""
        lines.append(
            f"  {_when(e['declined_at'])}  {e['session']}  {e['recipient']}  declined{undone}"
        )
    return lines


def suppressed_output(
    suppressions: Sequence[Suppression],
    listed: Sequence[str],
    fmt: str,
    show: bool,
    zone: tzinfo = UTC,
) -> str:
    """`reminder suppressed`: the ledger's suppressions, newest first, then the list file's."""
    if fmt == "json":
        return json.dumps(
            {
                "ledger": [suppression_dict(s, show, zone) for s in suppressions],
                "list_file": [a if show else masked(a) for a in listed],
            },
            ensure_ascii=False,
            indent=2,
        )
    lines = [f"suppressed in the ledger: {len(suppressions)}"]
    lines += suppression_lines(suppressions, show, zone)
    lines += ["", f"in the suppression list file: {len(listed)}"]
    lines += [f"  {a if show else masked(a)}" for a in listed]
    return "\n".join(lines)


def workers_data(found: Sequence[WorkerRow], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "host": w.host,
            "pid": w.pid,
            "since": iso(w.since),
            "last_heartbeat": iso(w.heartbeat_at),
            "lease_until": iso(w.lease_until),
            "alive": w.lease_until > now,
            "in_flight": w.in_flight,
        }
        for w in found
    ]


def workers_text(found: list[dict[str, Any]]) -> str:
    if not found:
        return "workers: none running"
    rows = [
        (
            w["host"],
            w["pid"],
            w["since"][:19].replace("T", " "),
            w["last_heartbeat"][:19].replace("T", " "),
            "yes" if w["alive"] else "expired",
            w["in_flight"],
        )
        for w in found
    ]
    return "workers:\n" + table(
        rows, ["host", "pid", "since (UTC)", "last heartbeat", "lease", "in flight"]
    )
