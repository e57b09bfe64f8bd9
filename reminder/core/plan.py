"""What is due, late, superseded or expired at `now`: pure functions of their inputs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from itertools import chain

from .declines import NO_DECLINES, Declines
from .mailing import DeliveryKey, DeliveryState, MailKind
from .model import Lead, Registrant, Roster, Session

_REMINDER = MailKind.REMINDER  # read for every delivery planned: once
# A wake-up a little behind its instant (a busy loop, a slow disk) is still on time.
ON_TIME_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Slot:
    """One reminder of one session: the instant it falls due for every attendee."""

    session: Session
    lead: Lead
    due_at: datetime

    def delivery_key(self, recipient: str) -> DeliveryKey:
        return DeliveryKey(self.session.appointment, _REMINDER, str(self.lead), recipient)


@dataclass(frozen=True)
class Delivery:
    """A mail to send now."""

    slot: Slot
    registrant: Registrant
    late: bool = False
    retry: bool = False  # an earlier claim, resent with its Message-ID
    sequence: int = 0  # the calendar SEQUENCE it carries (derived from the ledger)

    @cached_property  # claimed, composed, settled and counted under it: built once
    def key(self) -> DeliveryKey:
        return self.slot.delivery_key(self.registrant.key)


@dataclass(frozen=True)
class LedgerView:
    """What the ledger already holds for some sessions, shaped for set arithmetic."""

    # (session key, lead) -> recipients whose delivery is settled: sent, failed or superseded
    settled: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # (session key, lead) -> recipient -> when its unconfirmed claim may be tried again
    claims: dict[tuple[str, str], dict[str, datetime]] = field(default_factory=dict)

    def settled_for(self, slot: Slot) -> frozenset[str]:
        return self.settled.get((slot.session.appointment, str(slot.lead)), frozenset())

    def claims_for(self, slot: Slot) -> dict[str, datetime]:
        return self.claims.get((slot.session.appointment, str(slot.lead)), {})


@dataclass(frozen=True)
class Batch:
    """The outcome of one look at the plan: what to send, and what to record without sending."""

    sends: tuple[Delivery, ...] = ()
    superseded: tuple[tuple[DeliveryKey, datetime], ...] = ()  # with each one's due instant

    def __bool__(self) -> bool:
        return bool(self.sends or self.superseded)


def reminder_slots(sessions: Iterable[Session], leads: Sequence[Lead]) -> list[Slot]:
    """Every reminder of every session that is still to be held, in due order."""
    slots = [
        Slot(session, lead, lead.before(session.start))
        for session in sessions
        if not session.cancelled
        for lead in leads
    ]
    return sorted(slots, key=lambda slot: (slot.due_at, slot.session.start))


def deadline(session: Session, cutoff: timedelta) -> datetime:
    """After this instant nothing more is sent for `session`, not even late."""
    return session.start - cutoff


# Deliveries planned per chunk: the first chunk is claimed and sent while the rest of a
# batch of 1,000,000 is still to be planned.
PLAN_CHUNK = 256


def due_batch(
    now: datetime,
    slots: Sequence[Slot],
    roster: Roster,
    view: LedgerView,
    cutoff: timedelta = timedelta(0),
    suppressed: frozenset[str] = frozenset(),
    *,
    declines: Declines = NO_DECLINES,
) -> Batch:
    """What to do at `now`, in one piece: every chunk of `due_deliveries`."""
    sends: list[Delivery] = []
    superseded: list[tuple[DeliveryKey, datetime]] = []
    for chunk in due_deliveries(now, slots, roster, view, cutoff, suppressed, declines=declines):
        sends += chunk.sends
        superseded += chunk.superseded
    return Batch(tuple(sends), tuple(superseded))


def due_deliveries(
    now: datetime,
    slots: Sequence[Slot],
    roster: Roster,
    view: LedgerView,
    cutoff: timedelta = timedelta(0),
    suppressed: frozenset[str] = frozenset(),
    chunk: int = PLAN_CHUNK,
    *,
    declines: Declines = NO_DECLINES,
    turn: float = 0.0,
) -> Iterator[Batch]:
    """What to do at `now`, a chunk of about `chunk` deliveries at a time.

    Per session and attendee, only the most recent reminder that has fallen due is owed:
    when it was never sent, it goes out (late if its instant is past) and older unsettled
    ones are recorded as superseded; an unconfirmed claim of it is retried once its
    back-off has passed. Nothing goes out at or after the session's deadline, and
    nothing to an address in `suppressed` (the ledger's suppressions), nor about a
    session to whoever's decline of it stands (`declines`): undone, it lets the latest
    reminder go out, late if need be. Each attendee is in one chunk only; the caller
    may claim a chunk before asking for the next. With `turn` (in [0, 1)), each
    session's attendees are taken from that fraction of its list, round to its start:
    workers sharing a ledger each start at their own place instead of racing for the
    same rows, and nobody is always last.
    """
    sends: list[Delivery] = []
    superseded: list[tuple[DeliveryKey, datetime]] = []
    for session, session_slots in slots_by_session(slots).items():
        if now >= deadline(session, cutoff):
            continue
        fallen = [slot for slot in session_slots if slot.due_at <= now]
        if not fallen:
            continue
        latest, older = fallen[-1], fallen[:-1]
        settled, claims = view.settled_for(latest), view.claims_for(latest)
        late = now - latest.due_at > ON_TIME_TOLERANCE
        older_unsettled = [(slot, view.settled_for(slot)) for slot in older]
        declined = declines.standing(session) if declines else frozenset()
        skip = settled | suppressed | declined if suppressed or declined else settled
        for registrant in _from_turn(roster.attending(session), turn):
            who = registrant.key
            if who in skip:
                continue
            if claims and (retry_at := claims.get(who)) is not None:
                if retry_at <= now:
                    sends.append(Delivery(latest, registrant, late=late, retry=True))
            else:
                sends.append(Delivery(latest, registrant, late=late))
                if older_unsettled:
                    superseded += [
                        (slot.delivery_key(who), slot.due_at)
                        for slot, done in older_unsettled
                        if who not in done
                    ]
            if len(sends) >= chunk:
                yield Batch(tuple(sends), tuple(superseded))
                sends, superseded = [], []
    if sends or superseded:
        yield Batch(tuple(sends), tuple(superseded))


def _from_turn(attendees: tuple[Registrant, ...], turn: float) -> Iterable[Registrant]:
    """The attendees from the fraction `turn` of the list, then from its start."""
    at = int(turn * len(attendees))
    return chain(attendees[at:], attendees[:at]) if at else attendees


@dataclass(frozen=True)
class Progress:
    """Where one reminder stands for its attendees."""

    pending: int  # still to go out (the session's deadline has not passed)
    missed: int  # fell due, but the deadline passed before they went out


def progress(
    slot: Slot,
    attendees: int,
    counts: Mapping[DeliveryState, int],
    now: datetime,
    cutoff: timedelta,
) -> Progress:
    """`counts`: the slot's deliveries per state, as `Ledger.counts` gives them. Each
    state accounts for an attendee: done, or on its way."""
    left = max(0, attendees - sum(counts.values()))
    if now < deadline(slot.session, cutoff):
        return Progress(pending=left, missed=0)
    return Progress(pending=0, missed=left if slot.due_at <= now else 0)


def next_wakeups(
    now: datetime, slots: Sequence[Slot], view: LedgerView, cutoff: timedelta = timedelta(0)
) -> list[datetime]:
    """The future instants at which something may fall due: reminders and retries."""
    instants = {slot.due_at for slot in slots if now < slot.due_at < deadline(slot.session, cutoff)}
    for slot in slots:
        instants |= {
            at for at in view.claims_for(slot).values() if now < at < deadline(slot.session, cutoff)
        }
    return sorted(instants)


def slots_by_session(slots: Iterable[Slot]) -> dict[Session, list[Slot]]:
    """The reminders of each session, earliest first."""
    grouped: dict[Session, list[Slot]] = defaultdict(list)
    for slot in sorted(slots, key=lambda s: s.due_at):
        grouped[slot.session].append(slot)
    return grouped
