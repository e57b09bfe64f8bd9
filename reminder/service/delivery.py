"""One pass of delivery: plan at `now`, claim, compose, send, record. Used by run and simulate."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from ..core.errors import ReminderError, TransportConfigError
from ..core.model import UPDATE, DeliveryKey
from ..core.notices import Notice, NoticePlan, Told
from ..core.plan import PLAN_CHUNK, Batch, Delivery, Slot, deadline, due_deliveries
from ..core.replies import Refusal, classify
from ..inputs.registrants import masked, redacted
from ..mail.transport import Envelope, Result, Transport, Verdict
from ..storage.backend import DeliveryLedger
from ..storage.ledger import Claim, Outcome, Status
from .composing import NotComposed, compose_all
from .logs import log_time
from .pending import notice_plan, wakeup_instants
from .snapshot import Snapshot

log = logging.getLogger("reminder")

# Between passes a transient failure waits this long (jittered) before the next try.
RETRY_AFTER = timedelta(minutes=5)
# On a shared ledger, deliveries claimed per transaction: a few seconds of sending.
SHARED_CLAIM_STEP = 32
# On a ledger of its own, reminders are claimed this many at a time, each chunk just
# before it is composed and sent: the first message of a batch of 1,000,000 leaves as
# soon as that of a batch of 300.
CLAIM_CHUNK = 256
Clock = Callable[[], datetime]


class Observer(Protocol):
    """Told of messages handed to the transport and of each outcome (metrics, readiness)."""

    def in_flight(self, change: int) -> None: ...

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None: ...


class NoObserver:
    def in_flight(self, change: int) -> None:
        pass

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None:
        pass


@dataclass
class Tally:
    """What one pass did, for the one log line it earns."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    superseded: int = 0
    late: int = 0
    expired: int = 0
    notices: int = 0  # of those sent, change notices
    left: int = 0  # claimed, not attempted: a stop or a fault came first; owed at the next pass
    fault: str = ""  # the configuration fault that stopped the pass, as the server put it
    # (session, lead, late) -> messages sent, as the one log line reports them
    lines: dict[tuple[str, str, bool], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.sent or self.failed or self.retrying or self.superseded or self.expired
        ) or bool(self.left)

    def __str__(self) -> str:
        text = (
            f"sent {self.sent}, failed {self.failed}, retrying {self.retrying}, "
            f"superseded {self.superseded}"
        )
        if self.late:
            text += f" ({self.late} late)"
        if self.expired:
            text += f", expired {self.expired}"
        if self.left:
            text += f", still owed {self.left}"
        if self.notices:
            text += f"; {self.notices} change notices"
        return text + "".join(
            f"; {session} {lead}: {count} sent{' late' if late else ''}"
            for (session, lead, late), count in self.lines.items()
        )


def reminders_owed(
    ledger: DeliveryLedger,
    snapshot: Snapshot,
    now: datetime,
    notices: NoticePlan | None = None,
    chunk: int = PLAN_CHUNK,
) -> Iterator[Batch]:
    """The reminders owed at `now`, a chunk at a time: the caller claims and sends the
    first while the rest of a large batch is still to be planned.

    Reminders of a session whose change is still settling wait with its notices; an
    update owed now stands in for a late reminder of the new date to the same person.
    The ledger is read once, before the first chunk.
    """
    notices = notices or notice_plan(ledger, snapshot, now)
    slots = [slot for slot in snapshot.slots if slot.session.appointment not in notices.held]
    active = {
        slot.session.appointment
        for slot in slots
        if slot.due_at <= now < deadline(slot.session, snapshot.cutoff)
    }
    # Read at every pass: another command (or the HTTP endpoint) may have suppressed someone.
    planned = due_deliveries(
        now,
        slots,
        snapshot.roster,
        ledger.view(active),
        snapshot.cutoff,
        ledger.suppressed_addresses(),
        chunk,
    )
    updated = {(n.session.appointment, n.registrant.key) for n in notices.owed if n.kind == UPDATE}
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


class Dispatcher:
    """Turns the plan at an instant into deliveries, each recorded in the ledger once."""

    def __init__(
        self,
        ledger: DeliveryLedger,
        transport: Transport,
        clock: Clock,
        *,
        helpers: int = 0,
        lease: Callable[[], int | None] = lambda: 0,
        observer: Observer | None = None,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.clock = clock
        self.helpers = helpers  # processes that help compose a large batch
        # The lease's term while this worker holds it, None while it does not; the term
        # changes when a lapsed lease is renewed (another worker may have adopted claims).
        self.lease = lease
        self.unsettled: set[DeliveryKey] = set()  # claimed by this pass, not yet settled
        self.observer = observer or NoObserver()
        # The last notice plan: of which files, and the ledger's mark of outside writes
        # read just before it was made.
        self._notices: tuple[Snapshot, NoticePlan, int | None] | None = None

    def wakeups(self, snapshot: Snapshot, now: datetime) -> list[datetime]:
        # The notice plan of the pass that just ran still names every instant that matters.
        cached = self._notices[1] if self._notices and self._notices[0] is snapshot else None
        return wakeup_instants(self.ledger, snapshot, now, cached)

    def _notice_plan(self, snapshot: Snapshot, now: datetime) -> NoticePlan:
        """The change notices owed now.

        Making the plan reads what every registrant was last told: seconds at 1,000,000.
        A plan that owed, awaited, superseded and held nothing stays true while the files
        are the same and no other process has written to the ledger since (what this
        worker sent meanwhile told today's facts), so the pass at a batch's instant does
        not make its first message wait for it.
        """
        mark = self.ledger.outside_writes()
        if self._notices is not None:
            files, cached, before = self._notices
            if files is snapshot and cached.quiet and mark is not None and mark == before:
                return cached
        notices = notice_plan(self.ledger, snapshot, now, observe=True)
        self._notices = (snapshot, notices, mark)
        return notices

    async def run(self, snapshot: Snapshot, stopping: asyncio.Event | None = None) -> Tally:
        """Send everything owed at the clock's now; return what happened."""
        now = self.clock()
        term = self.lease()

        def may_send() -> bool:
            # After a lapse, another worker may have adopted (and sent) this pass's claims.
            return term is not None and self.lease() == term

        tally = Tally(expired=self.ledger.expire(now))
        notices = self._notice_plan(snapshot, now)
        if notices.superseded:
            self._supersede(tally, notices.superseded, now)
        # notice_plan already leaves out whoever the ledger suppresses.
        plan = _Planned(reminders_owed(self.ledger, snapshot, now, notices, CLAIM_CHUNK))
        if self.ledger.shared:
            plan = plan.spread(SHARED_CLAIM_STEP)
        if not plan.start(lambda found: self._supersede(tally, found, now)) and not notices.owed:
            return tally
        config = snapshot.config
        composer = snapshot.composer
        cutoff = snapshot.cutoff
        wire = self.transport.takes_wired  # reminders come composed for the wire

        told: dict[tuple[int, str | None, int], tuple[Told, datetime]] = {}  # by session

        def claim_of(d: Delivery) -> Claim:
            session = d.slot.session
            shared = (id(session), d.registrant.join_url, d.sequence)
            if shared not in told:  # what most of a batch is told, and its deadline: once
                facts = composer.facts(session, d.registrant)
                told[shared] = Told(facts, d.sequence, now), deadline(session, cutoff)
            what, not_after = told[shared]
            return Claim(
                d.key,
                composer.message_id(d.key),
                d.slot.due_at,
                not_after,
                session.id,
                what,
            )

        notice_claims = [
            Claim(
                n.key,
                composer.message_id(n.key),
                n.due_at,
                n.not_after,
                n.session.id,
                Told(n.facts, n.sequence, now),
            )
            for n in notices.owed
        ]
        # The ledger hands back the Message-ID recorded at the first claim: a resend
        # carries it whatever changed in the config since.
        won = self.ledger.claim(notice_claims, now) if notice_claims else []
        claims = {claim.key: claim for claim in won}
        changes = [n for n in notices.owed if n.key in claims]
        unsettled = {n.key for n in changes}
        self.unsettled = unsettled

        def reminders() -> Iterator[Delivery]:
            """The batch's reminders, planned and claimed a chunk at a time as composing
            reaches them: the first leaves after one chunk's plan and claim, not the
            whole batch's."""
            for part in plan.chunks(lambda found: self._supersede(tally, found, now)):
                if not may_send():
                    plan.put_back(part)
                    return  # the lease lapsed: another worker may hold these claims now
                taken = {c.key: c for c in self.ledger.claim([claim_of(d) for d in part], now)}
                claims.update(taken)
                unsettled.update(taken)
                # Settled claims are let go: at 1,000,000 the batch's claims would not fit.
                for key in [k for k in claims if k not in unsettled]:
                    del claims[key]
                yield from (d for d in part if d.key in taken)

        def envelope(sent: _Sent, claim: Claim, data: bytes, wired: bool = False) -> Envelope:
            self.observer.in_flight(1)
            return Envelope(
                (sent, claim),
                config.smtp.sender,
                sent.email,
                claim.message_id,
                data,
                claim.not_after,
                wired,
            )

        async def envelopes() -> AsyncIterator[Envelope]:
            # Notices first: a cancellation must not wait behind a large reminder batch.
            for notice in changes:
                if not may_send():
                    return
                claim = claims[notice.key]
                try:
                    data = composer.compose_notice(notice, self.clock(), claim.message_id).data
                except ReminderError as exc:
                    self._report_failure(
                        unsettled, tally, _Sent.of(notice), f"cannot compose: {exc}"
                    )
                    continue
                yield envelope(_Sent.of(notice), claim, data)
            async for delivery, composed in compose_all(
                snapshot,
                reminders(),
                self.clock,
                helpers=self.helpers,
                size=plan.size_hint,
                message_ids=_MessageIds(claims),
                wire=wire,
            ):
                if not may_send():
                    return
                if isinstance(composed, NotComposed):
                    self._report_failure(unsettled, tally, _Sent.of(delivery), composed.reason)
                    continue
                yield envelope(_Sent.of(delivery), claims[delivery.key], composed, wire)

        def report(result: Result) -> None:
            sent, claim = result.envelope.token
            self.observer.in_flight(-1)
            self._settle(unsettled, tally, sent, claim, result)

        try:
            await self.transport.deliver(envelopes(), report, stopping)
        except TransportConfigError as exc:
            # Nothing is stranded: what the fault stopped waits on it, visibly, and is
            # due again as soon as a fixed configuration is loaded.
            tally.fault = exc.reply or str(exc)
            self.ledger.hold(sorted(unsettled), f"configuration fault: {tally.fault}", self.clock())
            tally.left = len(unsettled) + plan.left()
            raise
        tally.left = len(unsettled) + plan.left()
        if unsettled:
            # Claimed, never attempted (a stop, or the lease lapsed): due again at once for
            # whichever worker holds a lease; an adopter's claims are left alone.
            self.ledger.release(sorted(unsettled), self.clock())
        return tally

    def _supersede(
        self, tally: Tally, superseded: Sequence[tuple[DeliveryKey, datetime]], now: datetime
    ) -> None:
        """Older deliveries that a more recent one replaces: recorded, never sent."""
        self.ledger.supersede(superseded, now)
        tally.superseded += len(superseded)
        for key, _ in superseded:
            self.observer.settled(key, "superseded")

    def _settle(
        self,
        unsettled: set[DeliveryKey],
        tally: Tally,
        sent: _Sent,
        claim: Claim,
        result: Result,
    ) -> None:
        """The one place an attempt's outcome is decided and made durable.

        It is written before the transport starts its connection's next transaction
        (report() is called in between), so a crash resends at most what was in flight.
        """
        now = self.clock()
        if result.verdict is Verdict.SENT:
            self.ledger.record([Outcome(sent.key, Status.SENT, result.reply, now)], now)
            unsettled.discard(sent.key)
            tally.sent += 1
            tally.late += sent.late
            tally.notices += sent.notice
            line = (sent.session, sent.lead, sent.late)
            tally.lines[line] = tally.lines.get(line, 0) + 1
            self.observer.settled(sent.key, "late" if sent.late else "sent", claim.due_at)
            return
        if result.verdict is Verdict.RETRY:
            retry_at = now + RETRY_AFTER * random.uniform(0.8, 1.2)  # noqa: S311
            if retry_at < claim.not_after:
                tally.retrying += 1
                log.info(
                    "will retry %s for %s at %s: %s",
                    sent.what,
                    masked(sent.email),
                    log_time(retry_at),
                    redacted(result.reply),
                )
                outcome = Outcome(sent.key, Status.CLAIMED, result.reply, now, retry_at)
                self.ledger.record([outcome], now)
                unsettled.discard(sent.key)
                return
            reply = f"not delivered before the session started: {result.reply}"
        else:
            reply = result.reply
            self._refused(sent, reply, now)
        self._report_failure(unsettled, tally, sent, reply)

    def _refused(self, sent: _Sent, reply: str, now: datetime) -> None:
        """A mailbox that does not exist is never mailed again in the cycle; a policy
        refusal (5.7.x) says nothing about the address, so it is only reported."""
        refusal = classify(reply)
        if refusal is Refusal.NO_MAILBOX:
            self.ledger.suppress(
                sent.email,
                reason="the mailbox does not exist (refused at sending)",
                source="bounce",
                at=now,
                reply=reply,
            )
            log.warning(
                "suppressed %s: the server says the mailbox does not exist: %s",
                masked(sent.email),
                redacted(reply),
            )
        elif refusal is Refusal.POLICY:
            log.warning(
                "refused by the receiving server's policy, not suppressed (check the "
                "sender's SPF/DKIM/DMARC and the content): %s for %s",
                redacted(reply),
                masked(sent.email),
            )

    def _report_failure(
        self, unsettled: set[DeliveryKey], tally: Tally, sent: _Sent, reply: str
    ) -> None:
        now = self.clock()
        self.ledger.record([Outcome(sent.key, Status.FAILED, reply, now)], now)
        unsettled.discard(sent.key)
        tally.failed += 1
        log.warning(
            "failed: %s of %s for %s: %s",
            sent.what,
            sent.session,
            masked(sent.email),
            redacted(reply),
        )
        self.observer.settled(sent.key, "failed")


@dataclass(slots=True)
class _Sent:
    """What the outcome of one mail is recorded, counted and logged under."""

    key: DeliveryKey
    what: str  # "1d reminder", "cancellation"
    session: str
    email: str
    lead: str  # the lead, or the notice's kind, as the pass's log line counts it
    late: bool = False
    notice: bool = False

    @classmethod
    def of(cls, item: Delivery | Notice) -> _Sent:
        if isinstance(item, Notice):
            return cls(
                item.key, item.kind, item.session.id, item.registrant.email, item.kind, notice=True
            )
        what, session, lead = _slot_words(item.slot)
        return cls(item.key, what, session, item.registrant.email, lead, item.late)


_WORDS: dict[int, tuple[Slot, tuple[str, str, str]]] = {}


def _slot_words(slot: Slot) -> tuple[str, str, str]:
    """What a reminder of `slot` is logged and counted under: the same for its whole batch
    (looked up by identity: hashing a slot hashes its whole session)."""
    found = _WORDS.get(id(slot))
    if found is None or found[0] is not slot:
        if len(_WORDS) >= 64:
            _WORDS.clear()
        lead = str(slot.lead)
        found = _WORDS[id(slot)] = (slot, (f"{lead} reminder", slot.session.id, lead))
    return found[1]


class _Planned:
    """The reminders owed by one pass, planned a chunk at a time as sending reaches them."""

    def __init__(self, chunks: Iterator[Batch]) -> None:
        self._chunks = chunks
        self._ahead: list[tuple[Delivery, ...]] = []  # planned, not handed out yet
        self.size_hint: int | None = 0  # how many to send, while it is known
        self.total: int | None = None  # how many, when planned in full beforehand

    def spread(self, step: int) -> _Planned:
        """On a shared ledger: the whole batch, in small steps from a random place, so
        that workers sharing it send a large batch together instead of racing."""
        superseded: list[tuple[DeliveryKey, datetime]] = []
        sends: list[Delivery] = []
        for batch in self._chunks:
            sends += batch.sends
            superseded += batch.superseded
        if sends:
            turn = random.randrange(len(sends))  # noqa: S311 - spreading load, not a secret
            sends = sends[turn:] + sends[:turn]
        parts = [tuple(sends[at : at + step]) for at in range(0, len(sends), step)]
        spread = _Planned(iter([Batch((), tuple(superseded))] + [Batch(p) for p in parts]))
        spread.total = len(sends)
        return spread

    def start(self, supersede: Callable[[Sequence[tuple[DeliveryKey, datetime]]], None]) -> bool:
        """Plan up to the first chunk with something to send; False when there is none."""
        for batch in self._chunks:
            if batch.superseded:
                supersede(batch.superseded)
            if batch.sends:
                self._ahead.append(batch.sends)
                # A full first chunk says more may follow: the size is not known yet.
                if self.total is not None:
                    self.size_hint = self.total
                elif len(batch.sends) >= CLAIM_CHUNK:
                    self.size_hint = None
                else:
                    self.size_hint = len(batch.sends)
                return True
        return False

    def chunks(
        self, supersede: Callable[[Sequence[tuple[DeliveryKey, datetime]]], None]
    ) -> Iterator[tuple[Delivery, ...]]:
        while self._ahead:
            yield self._ahead.pop()
        for batch in self._chunks:
            if batch.superseded:
                supersede(batch.superseded)
            if batch.sends:
                yield batch.sends
            while self._ahead:
                yield self._ahead.pop()

    def put_back(self, part: tuple[Delivery, ...]) -> None:
        self._ahead.append(part)

    def left(self) -> int:
        """What is still owed and not claimed: planned to the end to count it."""
        count = sum(len(part) for part in self._ahead)
        return count + sum(len(batch.sends) for batch in self._chunks)


class _MessageIds(Mapping[DeliveryKey, str]):
    """The Message-ID of each claim made so far, read as composing reaches it."""

    def __init__(self, claims: dict[DeliveryKey, Claim]) -> None:
        self.claims = claims

    def __getitem__(self, key: DeliveryKey) -> str:
        return self.claims[key].message_id

    def __iter__(self) -> Iterator[DeliveryKey]:
        return iter(self.claims)

    def __len__(self) -> int:
        return len(self.claims)
