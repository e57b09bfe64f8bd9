"""The calendar entry of every mail: an iTIP message (RFC 5546) carried by mail (RFC 6047).

The model, chosen from what Outlook, Gmail, Apple Calendar and Thunderbird do (README,
"Calendar entries"): the sender is the organizer, the registrant the one attendee, and
- every reminder is a REQUEST at the session's current SEQUENCE: the first adds the
  entry, the others find it up to date;
- an update is a REQUEST with the same UID and a higher SEQUENCE: clients move the entry;
- a cancellation is a CANCEL with the same UID and a higher SEQUENCE, STATUS:CANCELLED
  when the session is called off, without STATUS when only this registrant is taken off
  it (RFC 5546 3.2.5: uninviting one attendee).
`reminders.calendar_method = "publish"` sends reminders and updates as PUBLISH without
an attendee instead, for cycles whose registrants' clients apply those in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from icalendar import Alarm, Calendar, Event, vCalAddress

from ..core.model import Session
from ..core.notices import Facts
from ..core.typography import french
from ..inputs.config import Config
from .vtimezone import vtimezone

PRODID = "-//reminder//Rappels de cycle//FR"
FOLD = 75  # RFC 5545 3.1: content lines are folded at 75 octets
# A CAL-ADDRESS is a mailto URI: characters of an address that a URI may not hold bare
# are percent-encoded (none of an ordinary address's are).
_MAILTO_SAFE = "@!$&'*+=^_`{|}~.-"


def event_uid(session: Session, cycle: str, domain: str) -> str:
    """One UID per session, kept through moves, so calendars update the entry in place."""
    return f"{session.id}.{cycle}@{domain}"


def calendar_method(config: Config, withdrawn: Facts | None) -> str:
    """CANCEL to withdraw the entry; otherwise REQUEST, or PUBLISH where staff chose it."""
    return "CANCEL" if withdrawn is not None else config.reminders.calendar_method.upper()


@dataclass(frozen=True)
class Entry:
    """A session's calendar, cut where each registrant's ATTENDEE line goes: every
    registrant of a session shares `head` and `tail`, built and encoded once."""

    method: str
    head: bytes
    tail: bytes

    def to(self, address: str) -> bytes:
        """The calendar as `address` receives it."""
        if self.method == "PUBLISH":  # RFC 5546 3.2.1: a PUBLISH names no attendee
            return self.head + self.tail
        return self.head + attendee_line(address) + self.tail


def attendee_line(address: str) -> bytes:
    """The registrant as the one attendee: no reply asked (RSVP=FALSE), no name (it is
    theirs already, and a name typed in a form has no place in a parameter)."""
    line = (
        "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE:"
        f"mailto:{quote(address, safe=_MAILTO_SAFE)}"
    ).encode()
    return folded(line)


def folded(line: bytes) -> bytes:
    """`line` and its CRLF, folded at 75 octets and never inside a UTF-8 character."""
    pieces = []
    room = FOLD
    while len(line) > room:
        cut = room
        while line[cut] & 0xC0 == 0x80:  # a continuation byte: back off to its start
            cut -= 1
        pieces.append(line[:cut])
        line, room = line[cut:], FOLD - 1  # a continuation line starts with a space
    pieces.append(line)
    return b"\r\n ".join(pieces) + b"\r\n"


def session_calendar(
    config: Config,
    session: Session,
    join_url: str | None,
    description: str,
    stamp: datetime,
    *,
    sequence: int = 0,
    withdrawn: Facts | None = None,
    uninvited: bool = False,
    years: tuple[int, int] | None = None,
) -> Entry:
    """One VEVENT and its VTIMEZONE: the entry the registrant holds.

    The UID never changes; `sequence` rises with each material change. `withdrawn`, the
    facts the registrant was last told, makes it a CANCEL at those times, so clients
    find and withdraw the entry they hold; `uninvited` when only this registrant
    is taken off a session that still takes place. `years` are the first and last of the
    cycle's sessions.
    """
    method = calendar_method(config, withdrawn)
    start, end = (withdrawn.start, withdrawn.end) if withdrawn else (session.start, session.end)
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
    event.add("uid", event_uid(session, config.cycle.id, config.sender.domain))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", text(session.topic or config.cycle.title))
    event.add("description", text(description))
    event.add("location", join_url or config.cycle.location)
    if join_url:
        event.add("url", join_url)
    event.add("sequence", sequence)
    if method != "CANCEL":
        event.add("status", "CONFIRMED")
    elif not uninvited:  # RFC 5546 3.2.5: no STATUS when uninviting an attendee
        event.add("status", "CANCELLED")
    event.add("transp", "OPAQUE")
    # The organizer is the From address: clients that apply a CANCEL or an update only
    # from the entry's organizer find the mail's sender to be it.
    organizer = vCalAddress(f"mailto:{config.sender.address}")
    organizer.params["cn"] = config.sender.name or config.organizer.name
    event.add("organizer", organizer)
    if config.reminders.calendar_alarm and method != "CANCEL":
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
    data = bytes(calendar.to_ical())
    # The attendee goes among the event's properties, before its alarm (RFC 5545 3.6.1).
    cut = data.find(b"BEGIN:VALARM\r\n")
    cut = cut if cut >= 0 else data.find(b"END:VEVENT\r\n")
    return Entry(method, data[:cut], data[cut:])
