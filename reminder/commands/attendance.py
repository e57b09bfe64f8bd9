"""Who is expected at each session and who said they cannot come, as data for
`status`, `registrants` and `history` (printing formats it).

The export stays the source of registrations; a decline is an override the ledger
keeps beside it, moot once the export drops the person or the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from ..core.declines import Decline, Declines, declined
from ..core.model import Roster, Session
from ..inputs.registrants import masked


def _iso(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def attendance_data(
    sessions: Iterable[Session],
    roster: Roster,
    declines: Declines,
    stopped: frozenset[str],
    zone: tzinfo,
    show: bool = False,
) -> list[dict[str, Any]]:
    """Per session: registered in the export, declined, and to be mailed (neither
    declined nor suppressed), with each standing decline and its date."""
    found = []
    # The few registrants who chose or are suppressed, found in one pass over the export.
    people = roster.having(declines.recipients() | stopped) if declines or stopped else {}
    for session in sessions:
        gone = declined(session, people, declines)
        away = {d.recipient for d in gone}
        away.update(key for key in stopped if key in people and people[key].attends(session))
        registered = roster.count(session)
        found.append(
            {
                "session": session.id,
                "registered": registered,
                "declined": len(gone),
                "to_be_mailed": registered - len(away),
                "declines": [
                    {
                        "recipient": d.recipient if show else masked(d.recipient),
                        "declined_at": _iso(d.declined_at, zone),
                    }
                    for d in gone
                ],
            }
        )
    return found


def decline_entries(
    declines: Declines,
    zone: tzinfo,
    *,
    show: bool = False,
    session_id: str = "",
    recipient: str = "",
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The declines recorded, as `history` lists them beside the deliveries: when each
    was made, and undone if it was; optionally one session's, one address's, or those
    chosen since an instant."""
    wanted = recipient.strip().casefold()
    chosen: list[Decline] = [
        d
        for d in declines
        if (not session_id or d.session_id == session_id)
        and (not wanted or d.recipient == wanted)
        and (since is None or d.changed_at >= since)
    ]
    return [
        {
            "kind": "decline",
            "session": d.session_id,
            "recipient": d.recipient if show else masked(d.recipient),
            "status": "undone" if d.undone_at else "declined",
            "declined_at": _iso(d.declined_at, zone),
            "undone_at": _iso(d.undone_at, zone) if d.undone_at else None,
        }
        for d in sorted(chosen, key=lambda d: (d.declined_at, d.session_id, d.recipient))
    ]
