"""A registrant's "je ne pourrai pas venir" for one session, as plain values the plan reads.

The export stays the source of registrations: a decline is an override kept in the
ledger beside it. It keeps its registrant from one session's reminders and change
notices while it stands: not undone ("finalement je viendrai"), and the session still
held on the day they declined. A session moved to another day asks them again: they
are told of the move like everyone else, and may decline the new date.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from .model import Registrant, Roster, Session


@dataclass(frozen=True)
class Decline:
    """One registrant's decline of one session, and its undoing if they came back on it."""

    session_id: str  # the session's planned date (Session.id): stable through a move
    recipient: str  # the canonical address, as the ledger keys deliveries
    day: date  # the day the session was held on when they declined
    declined_at: datetime
    undone_at: datetime | None = None  # "finalement je viendrai"

    @property
    def changed_at(self) -> datetime:
        """When they last chose: a notice their choice owes settles from then on."""
        return self.undone_at or self.declined_at

    def stands(self, session: Session) -> bool:
        """Whether it keeps them from `session` now."""
        return (
            self.undone_at is None
            and session.id == self.session_id
            and session.start.date() == self.day
        )


class Declines:
    """Every decline the ledger holds (undone ones too), by session."""

    def __init__(self, declines: Iterable[Decline] = ()) -> None:
        self._by_session: dict[str, dict[str, Decline]] = {}
        for decline in declines:
            self._by_session.setdefault(decline.session_id, {})[decline.recipient] = decline

    def __bool__(self) -> bool:
        return bool(self._by_session)

    def __iter__(self) -> Iterator[Decline]:
        for by_recipient in self._by_session.values():
            yield from by_recipient.values()

    def of(self, session_id: str) -> Mapping[str, Decline]:
        """The declines recorded for a session, by recipient, standing or not."""
        return self._by_session.get(session_id, {})

    def find(self, session_id: str, recipient: str) -> Decline | None:
        return self._by_session.get(session_id, {}).get(recipient)

    def recipients(self) -> set[str]:
        """Everyone who declined a session, or undid it."""
        return {who for by_recipient in self._by_session.values() for who in by_recipient}

    def standing(self, session: Session) -> frozenset[str]:
        """Who must not be mailed about `session`: their decline of it stands."""
        return frozenset(
            who for who, decline in self.of(session.id).items() if decline.stands(session)
        )


NO_DECLINES = Declines()


def declined(
    session: Session, people: Mapping[str, Registrant], declines: Declines
) -> list[Decline]:
    """The declines of a session that stand, of those the export registers for it (the
    decline of someone it dropped, from the session or the cycle, is moot), oldest first.
    `people`: the export's registrants among those who declined, by key
    (`Roster.having(declines.recipients())`, found once for every session)."""
    found = [
        decline
        for key, decline in declines.of(session.id).items()
        if decline.stands(session) and key in people and people[key].attends(session)
    ]
    return sorted(found, key=lambda d: (d.declined_at, d.recipient))


def expected(session: Session, roster: Roster, declines: Declines) -> list[Registrant]:
    """Who is expected at a session: its registrants in the export, less those whose
    decline of it stands (the speakers' list)."""
    gone = declines.standing(session)
    attendees = roster.attending(session)
    return [r for r in attendees if r.key not in gone] if gone else list(attendees)
