"""Links that add a session to a web calendar (Google Agenda, Outlook.com) in one click.

On web mail an `.ics` attachment is two clicks away while a link is one. Neither
service documents these links; their form is the one the services have accepted for
years (the InteractionDesignFoundation's "add-event-to-calendar-docs" records both).
Times go in UTC with their `Z`, so no service guesses the zone, and Google is also told
the cycle's zone (`ctz`) to show the entry in it. The entry such a link makes is the
registrant's own: our updates and cancellations reach it only as mail, where the `.ics`
entry is updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

GOOGLE = "https://calendar.google.com/calendar/render"
OUTLOOK = "https://outlook.live.com/calendar/0/deeplink/compose"
# Spaces as %20, not "+": Outlook.com shows a "+" as it is.
# A description past this is cut: links in mail stay well under the 2,000 characters
# every browser and mail client opens.
MAX_DETAILS = 1000


@dataclass(frozen=True)
class WebEvent:
    """What a web calendar is given: the entry the `.ics` describes."""

    title: str
    start: datetime  # aware
    end: datetime
    details: str
    location: str
    timezone: str  # the IANA name of the cycle's zone, e.g. Europe/Paris


def _details(text: str) -> str:
    return text if len(text) <= MAX_DETAILS else text[: MAX_DETAILS - 1].rstrip() + "…"


def google_link(event: WebEvent) -> str:
    def utc(moment: datetime) -> str:
        return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"

    query = {
        "action": "TEMPLATE",
        "text": event.title,
        "dates": f"{utc(event.start)}/{utc(event.end)}",
        "ctz": event.timezone,
        "details": _details(event.details),
        "location": event.location,
    }
    return f"{GOOGLE}?{urlencode(query, quote_via=quote)}"


def outlook_link(event: WebEvent) -> str:
    def utc(moment: datetime) -> str:
        return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"

    query = {
        "path": "/calendar/action/compose",
        "rru": "addevent",
        "subject": event.title,
        "startdt": utc(event.start),
        "enddt": utc(event.end),
        "body": _details(event.details),
        "location": event.location,
    }
    return f"{OUTLOOK}?{urlencode(query, quote_via=quote)}"


def web_calendar_links(event: WebEvent) -> dict[str, str]:
    """The links a template shows as "Ajouter à Google Agenda" and "Ajouter à Outlook.com"."""
    return {"google": google_link(event), "outlook": outlook_link(event)}
