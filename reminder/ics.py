"""The calendar entry attached to every reminder (RFC 5545, published per RFC 5546)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Alarm, Calendar, Event, vCalAddress

from .config import Config
from .leads import Lead
from .sessions import Session

PRODID = "-//reminder//Rappels de cycle//FR"


def event_uid(config: Config, session: Session) -> str:
    """One UID per session, kept through moves, so calendars update the entry in place."""
    domain = config.smtp.sender.rpartition("@")[2]
    return f"{session.id}.{config.cycle.id}@{domain}"


def session_calendar(
    config: Config, session: Session, join_url: str | None, description: str, stamp: datetime
) -> bytes:
    """A METHOD:PUBLISH calendar with one VEVENT and its VTIMEZONE: no RSVP, no attendee."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")

    event = Event()
    event.add("uid", event_uid(config, session))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", session.start)
    event.add("dtend", session.end)
    event.add("summary", session.topic or config.cycle.title)
    event.add("description", description)
    event.add("location", join_url or config.cycle.location)
    if join_url:
        event.add("url", join_url)
    event.add("sequence", session.sequence)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    organizer_email = config.contact.email or config.organizer.email
    if organizer_email:
        organizer = vCalAddress(f"mailto:{organizer_email}")
        organizer.params["cn"] = (
            config.contact.name if config.contact.email else (config.organizer.name)
        )
        event.add("organizer", organizer)
    if config.reminders.calendar_alarm:
        lead = Lead.parse(config.reminders.calendar_alarm, allow_zero=True)
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", session.topic or config.cycle.title)
        alarm.add("trigger", -lead.delta)
        event.add_component(alarm)
    calendar.add_component(event)
    # A VTIMEZONE covering the session's year, not the library's default of decades.
    calendar.add_missing_timezones(
        first_date=(session.start - timedelta(days=366)).date(),
        last_date=(session.end + timedelta(days=366)).date(),
    )
    return bytes(calendar.to_ical())
