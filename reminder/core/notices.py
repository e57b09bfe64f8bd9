"""Change notices: what each registrant was told, what they are owed now. Pure functions."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .declines import NO_DECLINES, Declines
from .mailing import DeliveryKey, MailKind
from .model import Registrant, Roster, Session

CONFIRMED, CANCELLED = "confirmed", "cancelled"
# The `since` of a session version that was there when the ledger first saw the session:
# nothing about it is settling.
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Facts:
    """What a mail says about a session that matters to the registrant who reads it."""

    start: datetime
    end: datetime
    join_url: str
    status: str = CONFIRMED
    topic: str = ""


@dataclass(frozen=True)
class Told:
    """The facts of the last mail a registrant received about a session, and its SEQUENCE."""

    facts: Facts
    sequence: int
    at: datetime


@dataclass(frozen=True)
class Notice:
    """A cancellation or an update owed to one registrant who was told an older version."""

    session: Session
    kind: MailKind
    registrant: Registrant
    told: Told
    facts: Facts
    sequence: int
    due_at: datetime
    not_after: datetime
    changes: tuple[str, ...]
    # One notice per version: a second change after the first notice went out owes
    # another one; two changes before it did owe one, with the final facts.
    key: DeliveryKey
    retry: bool = False
    declined: bool = False  # a cancellation for them only: they said they cannot come
    came_back: bool = False  # an update: they undid their decline ("finalement je viendrai")


def notice_key(appointment: str, kind: MailKind, version: int, recipient: str) -> DeliveryKey:
    return DeliveryKey(appointment, kind, "", recipient, version)


@dataclass(frozen=True)
class ToldGroup:
    """How many of a session's ledger rows tell these facts with this SEQUENCE."""

    facts: Facts
    sequence: int
    rows: int


@dataclass(frozen=True)
class NoticeView:
    """What the ledger holds that notices are derived from."""

    told: Mapping[str, Mapping[str, Told]] = field(default_factory=dict)  # session id -> who
    settled: frozenset[DeliveryKey] = frozenset()  # notices sent, failed or superseded
    # (session id, recipient) -> open notice claims and when each may be tried again
    claims: Mapping[tuple[str, str], Mapping[DeliveryKey, datetime]] = field(default_factory=dict)
    since: Mapping[str, datetime] = field(default_factory=dict)  # session id -> version since
    # Sessions whose `told` holds only the registrants read one by one: what the ledger's
    # counts say everybody else was told (the rows in flight, and those of their last
    # SEQUENCE), by facts.
    rest: Mapping[str, tuple[ToldGroup, ...]] = field(default_factory=dict)

    def completed(self, other: NoticeView, session_ids: Iterable[str]) -> NoticeView:
        """This view with these sessions as `other` read them (more registrants one by
        one, or every registrant's rows)."""
        ids = set(session_ids)
        return NoticeView(
            {k: v for k, v in self.told.items() if k not in ids}
            | {k: v for k, v in other.told.items() if k in ids},
            self.settled | other.settled,
            {k: v for k, v in self.claims.items() if k[0] not in ids}
            | {k: v for k, v in other.claims.items() if k[0] in ids},
            self.since,
            {k: v for k, v in self.rest.items() if k not in ids}
            | {k: v for k, v in other.rest.items() if k in ids},
        )


@dataclass(frozen=True)
class NoticePlan:
    owed: tuple[Notice, ...] = ()  # to send now
    waiting: tuple[Notice, ...] = ()  # owed once the change has settled (or a retry later)
    superseded: tuple[tuple[DeliveryKey, datetime], ...] = ()  # unsent notices now stale
    held: Mapping[str, datetime] = field(default_factory=dict)  # session key -> settles at
    sequences: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (id, who) -> SEQ

    def sequence(self, session: Session, recipient: str) -> int:
        return self.sequences.get((session.id, recipient), self.sequences.get((session.id, ""), 0))

    @property
    def quiet(self) -> bool:
        """Nothing owed, waiting, stale or settling: only sends change that."""
        return not (self.owed or self.waiting or self.superseded or self.held)


def join_link(session: Session, registrant: Registrant, default: str) -> str:
    return registrant.join_url or session.join_url or default


def facts_for(session: Session, registrant: Registrant, default_url: str, attending: bool) -> Facts:
    """What a mail sent now would tell this registrant."""
    cancelled = session.cancelled or not attending
    return Facts(
        session.start,
        session.end,
        join_link(session, registrant, default_url),
        CANCELLED if cancelled else CONFIRMED,
        session.topic,
    )


def changes(old: Facts, new: Facts, *, topic: bool = False) -> tuple[str, ...]:
    """The material differences, in the order a notice states them."""
    found = []
    if new.status != old.status:
        found.append("status")
    if new.start.date() != old.start.date():
        found.append("date")
    if (new.start.time(), new.end.time()) != (old.start.time(), old.end.time()):
        found.append("time")
    if new.join_url != old.join_url:
        found.append("link")
    if topic and new.topic != old.topic:
        found.append("topic")
    return tuple(found)


def read_one_by_one(
    session: Session,
    roster: Roster,
    suppressed: Iterable[str],
    declines: Declines = NO_DECLINES,
) -> set[str]:
    """Whose rows the notice plan reads for this session, beside the ledger's counts:
    those a notice may be owed although the session's own facts did not change (no
    longer attending, a link of their own, a decline made or undone) or who are never
    mailed (suppressed)."""
    keys = {r.key for r in roster.absent(session)}
    keys.update(r.key for r in roster.with_own_link)
    keys.update(suppressed)
    keys.update(declines.of(session.id))
    return keys


def _level(session: Session, group: ToldGroup, default_url: str) -> int | None:
    """The SEQUENCE an attendee with the cycle's link who was told these facts is at,
    when they owe them nothing; None when they owe a notice."""
    plain = Facts(
        session.start,
        session.end,
        session.join_url or default_url,
        CANCELLED if session.cancelled else CONFIRMED,
        session.topic,
    )
    both_cancelled = group.facts.status == CANCELLED and plain.status == CANCELLED
    if changes(group.facts, plain, topic=session.notify_topic) and not both_cancelled:
        return None
    return max(group.sequence, session.sequence)


def rest_sequence(session: Session, groups: Iterable[ToldGroup], default_url: str) -> int | None:
    """The SEQUENCE of every registrant not read one by one, when none of them is owed a
    notice: whatever the ledger counts tells an attendee with the cycle's link nothing
    that differs from today's session, all at one SEQUENCE. None when it cannot be said
    (a change, several SEQUENCEs, counts that do not add up): the rows must be read."""
    levels = set()
    for group in groups:
        if group.rows < 0:
            return None
        if group.rows:
            levels.add(_level(session, group, default_url))
    if None in levels or len(levels) > 1:
        return None
    return levels.pop() if levels else session.sequence


def unsettling(
    session: Session, groups: Sequence[ToldGroup], default_url: str, most: int
) -> tuple[ToldGroup, ...]:
    """The few groups that keep `rest_sequence` from settling a session whose other
    counted rows tell nothing new at one SEQUENCE (a registrant who left the export
    before a change, one put back on a session, a notice that failed for good): read
    their registrants one by one and the counts may settle the rest. Empty when no
    such majority stands, or when they hold over `most` rows."""
    if any(group.rows < 0 for group in groups):
        return ()
    levels = {group: _level(session, group, default_url) for group in groups if group.rows}
    quiet: Counter[int] = Counter()
    for group, level in levels.items():
        if level is not None:
            quiet[level] += group.rows
    if not quiet:
        return ()
    usual = quiet.most_common(1)[0][0]
    found = tuple(group for group, level in levels.items() if level != usual)
    return found if sum(group.rows for group in found) <= most else ()


def version(session: Session, roster: Roster, default_url: str) -> str:
    """A digest of what staff can change about a session; its change starts the settling delay."""
    parts = [
        session.start.isoformat(),
        session.end.isoformat(),
        str(session.cancelled),
        session.join_url or default_url,
        session.topic if session.notify_topic else "",
    ]
    # Registrants' own links come from the export: a changed one is a change of the session.
    parts += sorted(f"{r.key}={r.join_url}" for r in roster.with_own_link if r.attends(session))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def plan_notices(
    now: datetime,
    sessions: Iterable[Session],
    roster: Roster,
    view: NoticeView,
    delay: timedelta,
    default_url: str,
    suppressed: frozenset[str] = frozenset(),
    declines: Declines = NO_DECLINES,
) -> NoticePlan:
    """Notices owed at `now`, those waiting for the settling delay, and each calendar SEQUENCE.

    A registrant is owed a notice when the facts of the last mail they received about a
    session differ from today's: a cancellation when the session is cancelled or they no
    longer attend it, an update otherwise. It goes out once the session's current version
    has stood for `delay`; a change undone within that time owes nothing. Registrants no
    longer in the export, or `suppressed` (the ledger's suppressions), are not mailed.

    A registrant whose decline of the session stands no longer attends it: if they were
    told of it, one cancellation for them alone takes it out of their calendar, and the
    session's later changes owe them nothing (told cancelled, still cancelled for them).
    Undone, they attend again: an update puts it back. Either waits `delay` from their
    choice, so a click taken back at once sends nothing.

    For a session in `view.rest`, `view.told` lists only some registrants; everybody
    else was told what today's session says, at the one SEQUENCE `rest_sequence` finds
    (the caller reads the session in full when it finds none). A registrant never told
    then gets that SEQUENCE rather than the highest: either is right for a first entry.
    """
    owed: list[Notice] = []
    waiting: list[Notice] = []
    superseded: list[tuple[DeliveryKey, datetime]] = []
    held: dict[str, datetime] = {}
    sequences: dict[tuple[str, str], int] = {}
    for session in sessions:
        since = view.since.get(session.id, ALWAYS)
        settles_at = since + delay
        if since != ALWAYS and now < settles_at:
            held[session.appointment] = settles_at
        told = view.told.get(session.id, {})
        # The registrants told of the session, under their keys.
        people = roster.having(told.keys()) if told else {}
        top = session.sequence
        rest = view.rest.get(session.id)
        if rest is not None:
            plain = rest_sequence(session, rest, default_url)
            if plain is None:
                raise ValueError(f"read {session.id} in full: its counts do not settle it")
            top = plain
        appointment = session.appointment
        # Told times carry the offset they were stored with, i.e. the session's wall-clock
        # time: comparing their dates and times needs no conversion to the zone.
        for who, last in told.items():
            registrant = None if who in suppressed else people.get(who)
            wanted: DeliveryKey | None = None
            if registrant is not None:
                decline = declines.find(session.id, who) if declines else None
                declined = decline is not None and decline.stands(session)
                attending = registrant.attends(session) and not declined
                facts = facts_for(session, registrant, default_url, attending)
                found = changes(last.facts, facts, topic=session.notify_topic)
                if last.facts.status == CANCELLED and facts.status == CANCELLED:
                    found = ()
                sequence = max(last.sequence + bool(found), session.sequence)
                sequences[session.id, who] = sequence
                if rest is None:
                    top = max(top, sequence)
                if found:
                    kind = MailKind.CANCELLATION if facts.status == CANCELLED else MailKind.UPDATE
                    notice = Notice(
                        session,
                        kind,
                        registrant,
                        last,
                        facts,
                        sequence,
                        max(since, last.at, decline.changed_at if decline else ALWAYS) + delay,
                        last.facts.start if kind == MailKind.CANCELLATION else facts.start,
                        found,
                        notice_key(appointment, kind, sequence, who),
                        # Called off for everyone: the mail says so, not that they declined.
                        declined=declined and not session.cancelled,
                        came_back=kind == MailKind.UPDATE
                        and "status" in found
                        and decline is not None
                        and decline.undone_at is not None,
                    )
                    wanted = notice.key
                    _place(notice, now, view, owed, waiting)
            for key, retry_at in view.claims.get((session.id, who), {}).items():
                if key != wanted:
                    superseded.append((key, retry_at))
        sequences[session.id, ""] = top
    return NoticePlan(tuple(owed), tuple(waiting), tuple(superseded), held, sequences)


def _place(
    notice: Notice, now: datetime, view: NoticeView, owed: list[Notice], waiting: list[Notice]
) -> None:
    key = notice.key
    if key in view.settled or now >= notice.not_after:
        return
    claim = view.claims.get((notice.session.id, notice.registrant.key), {}).get(key)
    if claim is not None:
        retry = replace(notice, retry=True, due_at=max(notice.due_at, claim))
        (owed if retry.due_at <= now else waiting).append(retry)
        return
    (owed if notice.due_at <= now else waiting).append(notice)


def notice_wakeups(now: datetime, plan: NoticePlan) -> set[datetime]:
    """Future instants when a held session settles or a waiting notice falls due."""
    instants = {at for at in plan.held.values() if at > now}
    instants |= {n.due_at for n in plan.waiting if now < n.due_at < n.not_after}
    return instants


def since_as_of(
    known: Mapping[str, tuple[str, datetime]], versions: Mapping[str, str], now: datetime
) -> dict[str, datetime]:
    """What `Ledger.observe` would record at `now`, for commands that only read the ledger."""
    found = {}
    for session_id, current in versions.items():
        if session_id not in known:
            found[session_id] = ALWAYS
        else:
            digest, since = known[session_id]
            found[session_id] = since if digest == current else now
    return found


def sample_notice(
    session: Session,
    registrant: Registrant,
    kind: MailKind,
    default_url: str,
    told: Told | None,
    now: datetime,
) -> Notice:
    """The notice `registrant` would get, for `reminder preview --kind`.

    Without what the ledger says they were told, the old facts are the session as first
    planned (before a move) with the cycle's link.
    """
    facts = facts_for(session, registrant, default_url, attending=kind != MailKind.CANCELLATION)
    if kind == MailKind.UPDATE and facts.status == CANCELLED:
        facts = replace(facts, status=CONFIRMED)
    if told is None:
        before = session.moved_from or session.start
        link = registrant.join_url or default_url
        old = Facts(before, before + (session.end - session.start), link, CONFIRMED, session.topic)
        told = Told(old, 0, now)
    found = changes(told.facts, facts, topic=session.notify_topic)
    sequence = max(told.sequence + 1, session.sequence)  # as `plan_notices` gives it
    key = notice_key(session.appointment, kind, sequence, registrant.key)
    return Notice(session, kind, registrant, told, facts, sequence, now, session.start, found, key)
