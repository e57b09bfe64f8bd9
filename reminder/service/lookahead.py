"""What is owed now and what falls due ahead, read from today's files and the ledger
without sending anything: the reminders and change notices owed, and the instants ahead
when something falls due.

Apart from delivery so that `plan`, `check` and `status` reach them without importing
the composing and sending code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ..core.declines import NO_DECLINES, Declines
from ..core.mailing import NOTICE_KINDS, DeliveryKey, MailKind
from ..core.model import Roster, Session
from ..core.notices import (
    NoticePlan,
    NoticeView,
    Told,
    notice_wakeups,
    plan_notices,
    read_one_by_one,
    rest_sequence,
    since_as_of,
    unsettling,
    version,
)
from ..core.plan import PLAN_CHUNK, Batch, Delivery, deadline, due_deliveries, next_wakeups
from ..inputs.config import Config
from ..storage.backend import DeliveryLedger, ledger_target, open_ledger
from .snapshot import Snapshot

# Rows told something else that are still looked up one by one, rather than reading a
# whole session: finding them scans the session's rows (0.6 s at 1,000,000).
UNSETTLING_ROWS = 50_000

__all__ = [
    "notice_plan",
    "notice_view",
    "notices_in",
    "owed_count",
    "reminders_owed",
    "still_owed",
    "told",
    "wakeup_instants",
]


def notice_plan(
    ledger: DeliveryLedger, snapshot: Snapshot, now: datetime, *, observe: bool = False
) -> NoticePlan:
    """Change notices owed at `now`. With `observe`, the sessions' current versions are
    recorded first (the worker); without, the ledger is only read (plan, status, check)."""
    default = snapshot.config.cycle.join_url or ""
    live = [
        s
        for s in snapshot.sessions
        if now < s.start or (s.moved_from is not None and now < s.moved_from)
    ]
    versions = {s.id: version(s, snapshot.roster, default) for s in live}
    since = (
        ledger.observe(versions, now) if observe else since_as_of(ledger.versions(), versions, now)
    )
    delay = snapshot.config.reminders.notice_delay
    # Nobody suppressed in the ledger is owed a notice: the worker would never send it,
    # so status, plan, check and the stop line must not count it as owed either.
    stopped = ledger.suppressed_addresses()
    # Read at every plan, like the suppressions: a registrant may have declined or come
    # back through the HTTP face since the last one.
    declines = ledger.declines()
    view = notice_view(ledger, live, snapshot.roster, since, default, stopped, declines)
    return plan_notices(now, live, snapshot.roster, view, delay, default, stopped, declines)


def notice_view(
    ledger: DeliveryLedger,
    sessions: Sequence[Session],
    roster: Roster,
    since: dict[str, datetime],
    default_url: str,
    stopped: frozenset[str],
    declines: Declines = NO_DECLINES,
) -> NoticeView:
    """What the ledger says these sessions' registrants were told, read as little as it can.

    The ledger's counts settle most registrants; the rows of those whose facts may differ
    from the session's are read one by one; a session the counts do not settle (a change
    not yet told to everybody) is read in full.
    """
    listed = {s.id: read_one_by_one(s, roster, stopped, declines) for s in sessions}
    view = ledger.notice_view([s.id for s in sessions], since, listed)
    unsettled = []
    for session in sessions:
        rest = view.rest.get(session.id)
        if rest is None or rest_sequence(session, rest, default_url) is not None:
            continue
        # A few registrants told something else (who left the export before a change,
        # who was put back on the session): found through their facts, read one by one.
        few = unsettling(session, rest, default_url, UNSETTLING_ROWS)
        if few:
            more = listed[session.id] | ledger.recipients_told(session.id, few)
            again = ledger.notice_view([session.id], since, {session.id: more})
            if rest_sequence(session, again.rest.get(session.id, ()), default_url) is not None:
                view = view.completed(again, [session.id])
                continue
        unsettled.append(session.id)
    if unsettled:
        view = view.completed(ledger.notice_view(unsettled, since), unsettled)
    return view


def _no_ledger_yet(config: Config) -> bool:
    target = ledger_target(config)
    return isinstance(target, Path) and not target.exists()


def notices_in(config: Config, snapshot: Snapshot, now: datetime) -> NoticePlan | None:
    """The notices the configured ledger and these files make owed, without writing
    anything (None when there is no ledger yet: nobody has been told anything)."""
    if _no_ledger_yet(config):
        return None
    with open_ledger(config, readonly=True) as ledger:
        return notice_plan(ledger, snapshot, now)


def told(config: Config, session_id: str, recipient: str) -> Told | None:
    """What the configured ledger says `recipient` was last told about a session."""
    if _no_ledger_yet(config):
        return None
    with open_ledger(config, readonly=True) as ledger:
        view = ledger.notice_view([session_id], {}, {session_id: {recipient}})
        return view.told.get(session_id, {}).get(recipient)


def wakeup_instants(
    ledger: DeliveryLedger, snapshot: Snapshot, now: datetime, notices: NoticePlan | None = None
) -> list[datetime]:
    """The future instants when something may be owed: reminders, notices, retries of claims.

    `notices` is the notice plan already computed at this instant, if any: reading it
    again costs seconds at 100,000 registrants.
    """
    # Only open claims matter here; reading every settled row of every future session
    # after each wake-up would cost seconds at 100,000 registrants.
    active = {slot.session.appointment for slot in snapshot.slots if now < slot.session.start}
    found = next_wakeups(
        now, snapshot.slots, ledger.view(active, claims_only=True), snapshot.cutoff
    )
    # Notice claims put back for a retry are read from the ledger; a cancelled session
    # has no reminder slots, so its key comes from the sessions.
    told = {s.appointment for s in snapshot.sessions if now < s.start}
    retries = {
        at
        for kind in NOTICE_KINDS
        for claims in ledger.view(told, kind, claims_only=True).claims.values()
        for at in claims.values()
        if at > now
    }
    notices = notices or notice_plan(ledger, snapshot, now)
    return sorted(set(found) | retries | notice_wakeups(now, notices))


def reminders_owed(
    ledger: DeliveryLedger,
    snapshot: Snapshot,
    now: datetime,
    notices: NoticePlan | None = None,
    chunk: int = PLAN_CHUNK,
    *,
    turn: float = 0.0,
) -> Iterator[Batch]:
    """The reminders owed at `now`, a chunk at a time: the caller claims and sends the
    first while the rest of a large batch is still to be planned.

    Reminders of a session whose change is still settling wait with its notices; an
    update owed now stands in for a late reminder of the new date to the same person.
    The ledger is read once, before the first chunk. `turn`: where in each session's
    attendees the batch starts (`due_deliveries`).
    """
    notices = notices or notice_plan(ledger, snapshot, now)
    slots = [slot for slot in snapshot.slots if slot.session.appointment not in notices.held]
    active = {
        slot.session.appointment
        for slot in slots
        if slot.due_at <= now < deadline(slot.session, snapshot.cutoff)
    }
    # Read at every pass: another command (or the HTTP endpoint) may have suppressed
    # someone, or a registrant declined a session.
    planned = due_deliveries(
        now,
        slots,
        snapshot.roster,
        ledger.view(active),
        snapshot.cutoff,
        ledger.suppressed_addresses(),
        chunk,
        declines=ledger.declines(),
        turn=turn,
    )
    updated = {
        (n.session.appointment, n.registrant.key) for n in notices.owed if n.kind == MailKind.UPDATE
    }
    # Almost always every calendar SEQUENCE is 0, as a planned delivery carries it.
    sequences = any(notices.sequences.values())
    for batch in planned:
        if not updated and not sequences:
            yield batch
            continue
        sends: list[Delivery] = []
        replaced: list[tuple[DeliveryKey, datetime]] = []
        for delivery in batch.sends:
            who = delivery.registrant.key
            if updated and delivery.late and (delivery.slot.session.appointment, who) in updated:
                replaced.append((delivery.key, delivery.slot.due_at))
                continue
            sequence = notices.sequence(delivery.slot.session, who)
            # Copied only when it changes: a million copies cost seconds.
            sends.append(
                delivery if sequence == delivery.sequence else replace(delivery, sequence=sequence)
            )
        yield Batch(tuple(sends), batch.superseded + tuple(replaced))


def still_owed(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> int:
    """Deliveries a next start would owe: open claims, and what is due but not claimed."""
    notices = notice_plan(ledger, snapshot, now)
    fresh = sum(
        not delivery.retry
        for batch in reminders_owed(ledger, snapshot, now, notices)
        for delivery in batch.sends
    )
    return ledger.open_claims(now) + fresh + len(notices.owed)


def owed_count(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> int:
    """How many reminders are owed at `now`, counted a chunk at a time (never all held)."""
    return sum(len(batch.sends) for batch in reminders_owed(ledger, snapshot, now))
