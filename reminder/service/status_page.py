"""What the staff status page shows, as plain values: the plan, the counts, what went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..core.declines import declined
from ..core.mailing import DeliveryState, MailKind
from ..core.plan import ON_TIME_TOLERANCE, Slot, progress, slots_by_session
from ..core.wording import date_at_time, lead_words, long_date, time_of_day, time_range
from ..inputs.registrants import masked, redacted
from ..storage.ledger import Ledger
from .snapshot import SAMPLE_REGISTRANT, Snapshot

FLAGS = {
    "cancelled": "annulée",
    "past": "passée",
    "upcoming": "à venir",
    "moved": "déplacée",
    "holiday": "jour férié",
    "extra": "séance supplémentaire",
    "draft": "thème envisagé",
}
SOURCES = {
    "staff": "équipe",
    "bounce": "adresse en erreur",
    "unsubscribe": "lien de désinscription",
}


@dataclass(frozen=True)
class LeadLine:
    lead: str
    words: str
    due: str
    sent: int
    owed: int
    failed: int
    late: int
    superseded: int
    in_flight: int


@dataclass(frozen=True)
class SessionView:
    id: str
    date: str
    time: str
    topic: str
    flags: tuple[str, ...]
    registrants: int  # mailed: registered, not suppressed, not declined
    leads: tuple[LeadLine, ...]
    registered: int = 0  # in the export
    declines: tuple[tuple[str, str], ...] = ()  # (when, who masked): their declines stand


@dataclass(frozen=True)
class StatusPage:
    title: str
    cycle: str
    now: str
    ready: bool
    reasons: tuple[str, ...]
    next_wakeup: str
    sessions: tuple[SessionView, ...]
    errors: tuple[tuple[str, str, str, str], ...]  # when, what, who (masked), reply
    problems: tuple[str, ...]
    suppressions: tuple[tuple[str, str, str], ...]  # when, who (masked), why
    preview_subject: str
    notices: tuple[str, ...] = field(default=())


def french(moment: datetime, snapshot: Snapshot) -> str:
    return date_at_time(moment.astimezone(snapshot.config.zone), "fr")


def short(moment: datetime, snapshot: Snapshot) -> str:
    """22/02 17h00: fits a table cell on a phone (the session above gives the year)."""
    local = moment.astimezone(snapshot.config.zone)
    return f"{local:%d/%m} {time_of_day(local, 'fr')}"


def status_page(
    snapshot: Snapshot,
    ledger: Ledger,
    now: datetime,
    wakeups: tuple[datetime, ...],
    reasons: tuple[str, ...],
) -> StatusPage:
    """The page's content at `now`; addresses are masked even behind the staff login."""
    counts = ledger.counts()
    late = ledger.late_counts(ON_TIME_TOLERANCE)
    stopped = ledger.suppressed_addresses()
    declines = ledger.declines()
    people = snapshot.roster.having(declines.recipients()) if declines else {}
    by_session = slots_by_session(snapshot.slots)
    sessions = []
    for session in snapshot.sessions:
        gone = declined(session, people, declines)
        away = {d.recipient for d in gone}
        attendees = [
            r
            for r in snapshot.roster.attending(session)
            if r.key not in stopped and r.key not in away
        ]
        lines = []
        for slot in by_session.get(session, []):
            key = (session.appointment, MailKind.REMINDER, str(slot.lead))
            found = counts.get(key, {})
            lines.append(
                LeadLine(
                    lead=str(slot.lead),
                    words=lead_words(slot.lead, "fr"),
                    due=short(slot.due_at, snapshot),
                    sent=found.get(DeliveryState.SENT, 0),
                    owed=progress(slot, len(attendees), found, now, snapshot.cutoff).pending,
                    failed=found.get(DeliveryState.FAILED, 0),
                    late=late.get(key, 0),
                    superseded=found.get(DeliveryState.SUPERSEDED, 0),
                    in_flight=found.get(DeliveryState.CLAIMED, 0),
                )
            )
        sessions.append(
            SessionView(
                id=session.id,
                date=long_date(session.start.astimezone(snapshot.config.zone), "fr"),
                time=time_range(session.start, session.end, "fr"),
                topic=session.topic,
                flags=tuple(FLAGS[f] for f in session.flags(now)),
                registrants=len(attendees),
                leads=tuple(lines),
                registered=snapshot.roster.count(session),
                declines=tuple(
                    (french(d.declined_at, snapshot), masked(d.recipient)) for d in gone
                ),
            )
        )
    return StatusPage(
        title=snapshot.config.cycle.title,
        cycle=snapshot.config.cycle.id,
        now=french(now, snapshot),
        ready=not reasons,
        reasons=reasons,
        next_wakeup=french(wakeups[0], snapshot) if wakeups else "aucun : plus rien à envoyer",
        sessions=tuple(sessions),
        errors=tuple(
            (
                french(row.updated_at, snapshot),
                f"{row.appointment[:10]} {row.lead}",
                masked(row.recipient),
                redacted(row.last_reply),
            )
            for row in ledger.errors()
        ),
        problems=tuple(str(p) for p in snapshot.roster.problems),
        suppressions=tuple(
            (french(s.created_at, snapshot), masked(s.address), SOURCES.get(s.source, s.source))
            for s in ledger.suppressions()[:20]
        ),
        preview_subject=next_mail(snapshot, now)[1],
    )


def next_slot(snapshot: Snapshot, now: datetime) -> Slot | None:
    upcoming = [s for s in snapshot.slots if s.due_at > now]
    return upcoming[0] if upcoming else (snapshot.slots[-1] if snapshot.slots else None)


def next_mail(snapshot: Snapshot, now: datetime) -> tuple[str, str]:
    """(HTML, subject) of the next reminder as registrants will see it, for a sample person."""
    slot = next_slot(snapshot, now)
    if slot is None:
        return "<p>Aucun rappel prévu.</p>", ""
    composed = snapshot.composer.compose(slot, SAMPLE_REGISTRANT, slot.due_at)
    return composed.html, composed.subject
