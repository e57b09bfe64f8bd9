"""A registrant's own choices: the page of their sessions, and a decline recorded or undone.

What the HTTP face shows and does for the address behind a signed token, as plain
values and one function that writes; the handlers only parse and render.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum

from ..core.declines import Declines
from ..core.model import Registrant, Session
from ..core.wording import date_at_time, long_date, time_range
from ..inputs.registrants import masked
from ..storage.ledger import Ledger
from .snapshot import Snapshot

log = logging.getLogger("reminder")


class Choice(StrEnum):
    """What a registrant's button asks."""

    DECLINE = "decline"  # "je ne pourrai pas assister à cette séance"
    ATTEND = "attend"  # "finalement je viendrai"


class Outcome(Enum):
    """What came of a choice; the page says it in French."""

    DECLINED = "declined"  # recorded (or already standing)
    ATTENDING = "attending"  # undone (or there was nothing to undo)
    STARTED = "started"  # the session has started: too late to change anything
    CANCELLED = "cancelled"  # called off for everyone: nothing to decline
    NOT_REGISTERED = "not registered"  # the export does not register them for it


@dataclass(frozen=True)
class SessionLine:
    """One session as its registrant's page shows it."""

    id: str
    date: str  # "mercredi 1er mars 2023"
    time: str  # "17h00 – 19h00"
    topic: str
    draft: bool
    status: str  # à venir, annulée, déplacée
    moved_from: str  # "mercredi 1er mars 2023 à 17h00" for a moved session, else ""
    registered: bool  # the export registers them for it
    declined: bool  # their decline of it stands
    declined_on: str  # when they declined it, in French, while it stands
    open: bool  # they may still decline it, or come after all
    started: bool


@dataclass(frozen=True)
class SessionsPage:
    """The page of one registrant's sessions: the address masked, never written out."""

    title: str
    who: str
    organizer: str
    contact: dict[str, str]
    known: bool  # in today's export
    unsubscribed: bool
    sessions: tuple[SessionLine, ...]


def find_session(snapshot: Snapshot, session_id: str) -> Session | None:
    return next((s for s in snapshot.sessions if s.id == session_id), None)


def session_line(
    snapshot: Snapshot,
    session: Session,
    registrant: Registrant | None,
    declines: Declines,
    now: datetime,
) -> SessionLine:
    zone = snapshot.config.zone
    start = session.start.astimezone(zone)
    registered = registrant is not None and registrant.attends(session)
    decline = declines.find(session.id, registrant.key) if registrant else None
    declined = decline is not None and decline.stands(session)
    status = "annulée" if session.cancelled else "déplacée" if session.moved else "à venir"
    return SessionLine(
        id=session.id,
        date=long_date(start, "fr"),
        time=time_range(session.start, session.end, "fr"),
        topic=session.topic,
        draft=session.draft,
        status=status,
        moved_from=date_at_time(session.moved_from, "fr") if session.moved_from else "",
        registered=registered,
        declined=declined,
        declined_on=long_date(decline.declined_at.astimezone(zone), "fr")
        if decline and declined
        else "",
        # Undoing stays possible for a session called off since: it costs nothing.
        open=now < session.start and (declined or (registered and not session.cancelled)),
        started=now >= session.start,
    )


def sessions_page(
    snapshot: Snapshot,
    declines: Declines,
    suppressed: bool,
    address: str,
    now: datetime,
    only: Session | None = None,
) -> SessionsPage:
    """The cycle's sessions still to come (or `only` that one), and where this
    registrant stands for each."""
    config = snapshot.config
    registrant = snapshot.roster.find(address)
    contact = config.contact
    return SessionsPage(
        title=config.cycle.title,
        who=masked(address),
        organizer=config.organizer.name,
        contact={
            "name": contact.name,
            "role": contact.role or "",
            "email": contact.email or "",
            "phone": contact.phone or "",
        },
        known=registrant is not None,
        unsubscribed=suppressed,
        sessions=tuple(
            session_line(snapshot, s, registrant, declines, now)
            for s in ((only,) if only else snapshot.sessions)
            if only or now < s.end
        ),
    )


def choose(
    ledger: Ledger,
    snapshot: Snapshot,
    address: str,
    session: Session,
    choice: Choice,
    now: datetime,
) -> tuple[Outcome, bool]:
    """Record `choice` of the registrant at `address` for `session`; return what came of
    it, and whether the ledger changed (a pass is then due: an undone decline lets a
    reminder still owed go out at once).

    The export stays the source of registrations: a decline is recorded only for a
    session it registers them for, and only before the session starts.
    """
    if now >= session.start:
        return Outcome.STARTED, False
    if choice is Choice.ATTEND:
        changed = ledger.undo_decline(session.id, address, now)
        if changed:
            log.info("%s comes to the session of %s after all", masked(address), session.id)
        return Outcome.ATTENDING, changed
    if session.cancelled:
        return Outcome.CANCELLED, False
    registrant = snapshot.roster.find(address)
    if registrant is None or not registrant.attends(session):
        return Outcome.NOT_REGISTERED, False
    changed = ledger.decline(session.id, address, session.start.date(), now)
    if changed:
        log.info("%s declined the session of %s", masked(address), session.id)
    return Outcome.DECLINED, changed
