"""The calendar entry attached to every mail (RFC 5545, published and cancelled per RFC 5546)."""

from __future__ import annotations

from datetime import UTC, datetime

from icalendar import Alarm, Calendar, Event, vCalAddress

from ..core.model import Session
from ..core.notices import CANCELLED, Facts
from ..core.typography import french
from ..inputs.config import Config
from .vtimezone import vtimezone

PRODID = "-//reminder//Rappels de cycle//FR"


def event_uid(session: Session, cycle: str, domain: str) -> str:
    """One UID per session, kept through moves, so calendars update the entry in place."""
    return f"{session.id}.{cycle}@{domain}"


def calendar_method(facts: Facts | None) -> str:
    """PUBLISH for an entry and its updates; CANCEL to withdraw it (RFC 5546 3.2.1, 3.2.5)."""
    return "CANCEL" if facts is not None and facts.status == CANCELLED else "PUBLISH"


def session_calendar(
    config: Config,
    session: Session,
    join_url: str | None,
    description: str,
    stamp: datetime,
    *,
    sequence: int = 0,
    facts: Facts | None = None,
    years: tuple[int, int] | None = None,
) -> bytes:
    """One VEVENT and its VTIMEZONE, no RSVP, no attendee: the entry the registrant holds.

    The UID never changes; `sequence` rises with each material change. `years` are the
    first and last of the cycle's sessions. With `facts` cancelled, the calendar is
    METHOD:CANCEL, STATUS:CANCELLED at the times the registrant was told, so clients
    find and withdraw the entry they imported.
    """
    method = calendar_method(facts)
    start, end = (facts.start, facts.end) if facts is not None else (session.start, session.end)
    start, end = start.astimezone(config.zone), end.astimezone(config.zone)  # TZID, not offset
    french_text = config.cycle.language == "fr"

    def text(value: str) -> str:
        return french(value) if french_text else value

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", event_uid(session, config.cycle.id, config.smtp.sender_domain))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", text(session.topic or config.cycle.title))
    event.add("description", text(description))
    event.add("location", join_url or config.cycle.location)
    if join_url:
        event.add("url", join_url)
    event.add("sequence", sequence)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    organizer_email = config.contact.email or config.organizer.email
    if organizer_email:
        organizer = vCalAddress(f"mailto:{organizer_email}")
        organizer.params["cn"] = (
            config.contact.name if config.contact.email else (config.organizer.name)
        )
        event.add("organizer", organizer)
    if config.reminders.calendar_alarm and method == "PUBLISH":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", text(session.topic or config.cycle.title))
        alarm.add("trigger", -config.reminders.calendar_alarm)
        event.add_component(alarm)
    # The VTIMEZONE first (RFC 5545 asks it be present; clients read it before the event),
    # built from the zone database, right for the cycle's `years` and this entry's: some
    # clients keep the first definition of a TZID they see and read every later file by it.
    first, last = years or (start.year, end.year)
    calendar.add_component(
        vtimezone(config.cycle.timezone, min(first, start.year), max(last, end.year))
    )
    calendar.add_component(event)
    return bytes(calendar.to_ical())
