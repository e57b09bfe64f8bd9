"""One pass of delivery: claim what is owed at `now`, compose it, send it, settle each
result. The `Dispatcher` (dispatcher.py) runs one after another.

Every ledger call of a pass runs in the ledger's thread (`self.thread.call`), awaited:
the event loop never waits on the database (invariant 13).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..core.errors import ReminderError, TransportConfigError
from ..core.mailing import DeliveryKey, DeliveryState
from ..core.notices import Notice, NoticePlan, Told
from ..core.plan import Delivery, deadline
from ..core.planned import ClaimStep, PlannedMail, ReminderChunks, Tally
from ..core.replies import Refusal, classify
from ..inputs.registrants import masked, redacted
from ..mail.transport import Envelope, Result, Verdict
from ..storage.ledger import Claim, Outcome
from .composing import NotComposed, compose_all
from .logs import log_time
from .lookahead import reminders_owed, still_owed
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

log = logging.getLogger("reminder")

# Between passes a transient failure waits RETRY_FIRST, doubled for every try the ledger
# recorded before this pass, at most RETRY_AFTER (jittered); or half the time left before
# its deadline when that is shorter. A relay that refused for ten seconds is tried again
# seconds after, a relay down for an hour every five minutes, and a relay down for a
# minute must not turn a reminder due shortly before the session into a failure.
RETRY_FIRST = timedelta(seconds=5)
RETRY_AFTER = timedelta(minutes=5)
# Below this, no time is left for another try: the delivery fails.
RETRY_AT_LEAST = timedelta(seconds=1)
# Retries fall on instants an eighth of their back-off apart (`_retry_at`).
RETRY_STEPS = 8
# On a shared ledger, reminders are claimed in steps of about CLAIM_SECONDS of sending
# (ClaimStep): from SHARED_CLAIM_STEP at the start of a batch up to SHARED_CLAIM_MOST
# while the connections keep up, never longer than the lease (what a killed worker
# leaves to adopt).
SHARED_CLAIM_STEP = 32
SHARED_CLAIM_MOST = 1024
CLAIM_SECONDS = 0.5
# On a ledger of its own, reminders are claimed this many at a time, each chunk just
# before it is composed and sent: the first message of a batch of 1,000,000 leaves as
# soon as that of a batch of 300.
CLAIM_CHUNK = 256


# A step of reminders planned, and those of it this worker won the claims of.
_Step = tuple[tuple[Delivery, ...], dict[DeliveryKey, Claim]]


class DeliveryPass:
    """One pass: claim what is owed at `now`, compose it, send it, settle each result.

    Its ledger calls sit in named methods: `_expire`, `_supersede` and `_claim` as the
    plan is read (the plan's own reads are in `lookahead`), `_record` and `_suppress` as
    results come in (`settle`), `_finish` when the transport is done; each runs in the
    ledger's thread. Invariant 2 holds because a mail is composed only from a claim
    `_claim` returned; invariant 9 because the transport awaits `settle` before the next
    transaction on that connection.
    """

    def __init__(self, dispatcher: Dispatcher, snapshot: Snapshot, now: datetime) -> None:
        self.dispatcher = dispatcher
        self.ledger = dispatcher.ledger
        self.thread = dispatcher.thread
        self.clock = dispatcher.clock
        self.observer = dispatcher.observer
        self.snapshot = snapshot
        self.now = now
        self.sender = snapshot.config.sender.address  # every envelope's
        self.term = dispatcher.lease()  # the lease's term as the pass began
        self.tally = Tally()
        self.reminders = ReminderChunks(iter(()), CLAIM_CHUNK)
        self.step = claim_step(dispatcher.ledger.shared, snapshot.config.ledger.lease)
        self.notices: list[Notice] = []  # claimed: sent before the reminders
        # Won and not yet let go: the Message-ID recorded at each claim, which a resend
        # carries whatever changed in the config since.
        self.claims: dict[DeliveryKey, Claim] = {}
        self.unsettled: set[DeliveryKey] = set()  # claimed by this pass, not yet settled
        # The next step of reminders, being planned and claimed while this one is sent.
        self.ahead: asyncio.Future[_Step | None] | None = None
        # What most of a batch is told, and its deadline, by (session, link, SEQUENCE).
        self._told: dict[tuple[int, str | None, int], tuple[Told, datetime]] = {}

    def may_send(self) -> bool:
        # After a lapse, another worker may have adopted (and sent) this pass's claims.
        return self.term is not None and self.dispatcher.lease() == self.term

    async def run(self, stopping: asyncio.Event | None) -> Tally:
        call = self.thread.call
        await call(self._expire)
        notices = await self.dispatcher.notice_plan(self.snapshot, self.now)
        if notices.superseded:
            await call(self._supersede, notices.superseded)
        if not await call(self._plan, notices) and not notices.owed:
            return self.tally
        if notices.owed:
            won = self._won(await call(self._claim_notices, notices.owed, itertools.count()))
            self.notices = [n for n in notices.owed if n.key in won]
        try:
            await self.send(stopping)
        except TransportConfigError as exc:
            # Nothing is stranded: what the fault stopped waits on it, visibly, and is
            # due again as soon as a fixed configuration is loaded.
            self.tally.fault = exc.reply or str(exc)
            await call(self._finish, self.tally.fault)
            raise
        await call(self._finish)
        return self.tally

    def _plan(self, notices: NoticePlan) -> bool:
        """Plan the reminders owed (their first chunk); False when none is."""
        # notice_plan already leaves out whoever the ledger suppresses. On a shared
        # ledger each worker starts from a place of its own in the batch (`turn`), still
        # planning a chunk at a time: workers share a large batch instead of racing for
        # the same rows, and its first message waits for one chunk, not for all.
        turn = random.random() if self.ledger.shared else 0.0  # noqa: S311 - not a secret
        owed = reminders_owed(self.ledger, self.snapshot, self.now, notices, CLAIM_CHUNK, turn=turn)
        self.reminders = ReminderChunks(owed, CLAIM_CHUNK)
        return self.reminders.start(self._supersede)

    # -- claim: durably, before anything is composed -----------------------------------

    def _expire(self) -> None:
        """Claims still open at their deadline can no longer be sent: they failed."""
        self.tally.expired = self.ledger.expire(self.now)

    def _claim_notices(self, owed: Sequence[Notice], tries: Iterator[int]) -> list[Claim]:
        """Claim the change notices owed: they go first, before any reminder."""
        return self._claim(
            tries,
            [
                Claim(
                    n.key,
                    self.snapshot.composer.message_id(n.key),
                    n.due_at,
                    n.not_after,
                    n.session.id,
                    Told(n.facts, n.sequence, self.now),
                )
                for n in owed
            ],
        )

    async def claimed_reminders(self) -> AsyncIterator[Delivery]:
        """The batch's reminders, planned and claimed a step at a time as composing
        reaches them: the first leaves after one chunk's plan and claim, not the whole
        batch's. Both run in the ledger's thread, one step ahead: the next step is
        claimed while this one is sent, so the connections do not wait on a claim's
        commit (20-40 ms for 1,024 claims on PostgreSQL) between two steps."""
        handed = 0
        self.ahead = asyncio.ensure_future(self._claim_step(handed))
        while (step := await self.ahead) is not None:
            part, won = step
            # Settled claims are let go: at 1,000,000 the batch's claims would not fit.
            for key in [k for k in self.claims if k not in self.unsettled]:
                del self.claims[key]
            # `handed`: the step before this one, all gone to sending since it was claimed.
            self.ahead = asyncio.ensure_future(self._claim_step(handed))
            handed = 0
            for delivery in part:
                if delivery.key in won:
                    handed += 1
                    yield delivery

    async def _claim_step(self, handed: int) -> _Step | None:
        """Plan and claim the next step, sized by the pace at which `handed` went to
        sending; None when nothing more is owed, or the lease lapsed."""
        part = await self.thread.call(
            self.reminders.take, self._supersede, self.step.next(time.monotonic(), handed)
        )
        if not part:
            return None
        if not self.may_send():
            self.reminders.put_back(part)
            return None  # the lease lapsed: another worker may hold these claims now
        claimed = await self.thread.call(self._claim_reminders, part, itertools.count())
        return part, self._won(claimed)

    async def _claimed_ahead(self, wait: bool) -> None:
        """The step claimed ahead, once sending stopped: awaited, so that `_finish`
        hands back what it won; or, when the pass failed, cancelled (a claim that had
        not started never runs; one that had is due again after its lease)."""
        ahead, self.ahead = self.ahead, None
        if ahead is None:
            return
        if not wait:
            ahead.cancel()
        # Waited for, not awaited: its failure, if any, stopped sending already or comes
        # again, and a cancellation of this pass itself still reaches the pass.
        await asyncio.wait({ahead})
        if not ahead.cancelled():
            ahead.exception()  # seen: asyncio does not log it as never retrieved

    def _claim_reminders(self, part: Sequence[Delivery], tries: Iterator[int]) -> list[Claim]:
        return self._claim(tries, [self._reminder_claim(d) for d in part])

    def _reminder_claim(self, delivery: Delivery) -> Claim:
        session = delivery.slot.session
        shared = (id(session), delivery.registrant.join_url, delivery.sequence)
        if shared not in self._told:
            facts = self.snapshot.composer.facts(session, delivery.registrant)
            self._told[shared] = (
                Told(facts, delivery.sequence, self.now),
                deadline(session, self.snapshot.cutoff),
            )
        told, not_after = self._told[shared]
        return Claim(
            delivery.key,
            self.snapshot.composer.message_id(delivery.key),
            delivery.slot.due_at,
            not_after,
            session.id,
            told,
        )

    def _claim(self, tries: Iterator[int], claims: list[Claim]) -> list[Claim]:
        """Claim in the ledger: those this worker won.

        `tries` counts the calls: the ledger's thread calls again while the database is
        unreachable, and a try that failed may have committed its claims (the answer
        lost with the connection): a later try wins this worker's own open claims too,
        or they would wait out the claim's lease (10 minutes), unsent."""
        return self.ledger.claim(claims, self.now, ours=next(tries) > 0)

    def _won(self, claims: list[Claim]) -> dict[DeliveryKey, Claim]:
        """Claims won are this pass's to send (kept on the loop's side, which settles them)."""
        won = {claim.key: claim for claim in claims}
        self.claims.update(won)
        self.unsettled.update(won)
        return won

    def _supersede(self, superseded: Sequence[tuple[DeliveryKey, datetime]]) -> None:
        """Older deliveries that a more recent one replaces: recorded, never sent.

        In the ledger's thread, as planning finds them: the tally's count and the
        observer's metrics are the only state it touches, and nothing else writes them.
        """
        self.ledger.supersede(superseded, self.now)
        self.tally.superseded += len(superseded)
        for key, _ in superseded:
            self.observer.settled(key, "superseded")

    # -- compose: each claimed mail, as the transport asks for the next ----------------

    async def envelopes(self) -> AsyncIterator[Envelope]:
        # Notices first: a cancellation must not wait behind a large reminder batch.
        composer = self.snapshot.composer
        for notice in self.notices:
            if not self.may_send():
                return
            claim = self.claims[notice.key]
            try:
                data = composer.compose_notice(notice, self.clock(), claim.message_id).data
            except ReminderError as exc:
                await self._fail(PlannedMail.of(notice), f"cannot compose: {exc}")
                continue
            yield self._envelope(PlannedMail.of(notice), claim, data)
        wire = self.dispatcher.transport.capabilities.wired  # composed as it goes after DATA
        async for delivery, composed in compose_all(
            self.snapshot,
            self.claimed_reminders(),
            self.clock,
            helpers=self.dispatcher.helpers,
            size=self.reminders.size_hint,
            message_ids=_MessageIds(self.claims),
            wire=wire,
        ):
            if not self.may_send():
                return
            if isinstance(composed, NotComposed):
                await self._fail(PlannedMail.of(delivery), composed.reason)
                continue
            claim = self.claims[delivery.key]
            yield self._envelope(PlannedMail.of(delivery), claim, composed, wire)

    def _envelope(
        self, mail: PlannedMail, claim: Claim, data: bytes, wired: bool = False
    ) -> Envelope:
        self.observer.in_flight(1)
        return Envelope(
            (mail, claim),
            self.sender,
            mail.email,
            claim.message_id,
            data,
            claim.not_after,
            wired,
            self.may_send,
        )

    # -- send ------------------------------------------------------------------------

    async def send(self, stopping: asyncio.Event | None) -> None:
        try:
            await self.dispatcher.transport.deliver(self.envelopes(), self.settle, stopping)
        except BaseException as exc:
            await self._claimed_ahead(wait=isinstance(exc, TransportConfigError))
            raise
        await self._claimed_ahead(wait=True)

    # -- settle: each result made durable before its connection's next transaction ------

    async def settle(self, result: Result) -> None:
        """The one place an attempt's outcome is decided and made durable.

        The transport awaits it before it starts the connection's next transaction, so a
        crash resends at most what was in flight (invariant 9).
        """
        mail, claim = result.envelope.token
        self.observer.in_flight(-1)
        now = self.clock()
        attempts = result.attempts
        if result.verdict is Verdict.ABANDONED:
            # Unsent, and perhaps another worker's claim by now: `_finish` hands it back
            # if it is still this worker's.
            return
        if result.verdict is Verdict.SENT:
            self.dispatcher.retries.cleared("accepts messages again")
            await self._record(
                Outcome(mail.key, DeliveryState.SENT, result.reply, now, None, attempts)
            )
            tally = self.tally
            tally.sent += 1
            tally.late += mail.late
            tally.notices += mail.notice
            line = (mail.session, mail.label, mail.late)
            tally.lines[line] = tally.lines.get(line, 0) + 1
            self.observer.settled(mail.key, "late" if mail.late else "sent", claim.due_at)
            return
        if result.verdict is Verdict.RETRY:
            retry_at = _retry_at(now, claim.not_after, claim.tries)
            if retry_at is not None:
                self.tally.retrying += 1
                self.dispatcher.retries.seen(
                    redacted(result.reply),
                    f"will retry {mail.what} for {masked(mail.email)} at "
                    f"{log_time(retry_at)}: {redacted(result.reply)}",
                )
                await self._record(
                    Outcome(mail.key, DeliveryState.CLAIMED, result.reply, now, retry_at, attempts)
                )
                return
            reply = f"not delivered before the session started: {result.reply}"
        else:
            reply = result.reply
            await self._refused(mail, reply, now)
        await self._fail(mail, reply, attempts)

    async def _record(self, outcome: Outcome) -> None:
        # Committed with the outcomes other connections queued meanwhile (group commit),
        # and awaited: this connection's next transaction starts after its own is durable.
        await self.thread.record(outcome)
        self.unsettled.discard(outcome.key)

    async def _fail(self, mail: PlannedMail, reply: str, attempts: int = 1) -> None:
        now = self.clock()
        await self._record(Outcome(mail.key, DeliveryState.FAILED, reply, now, None, attempts))
        self.tally.failed += 1
        log.warning(
            "failed: %s of %s for %s: %s",
            mail.what,
            mail.session,
            masked(mail.email),
            redacted(reply),
        )
        self.observer.settled(mail.key, "failed")

    async def _refused(self, mail: PlannedMail, reply: str, now: datetime) -> None:
        """A mailbox that does not exist is never mailed again in the cycle; a policy
        refusal (5.7.x) says nothing about the address, so it is only reported."""
        refusal = classify(reply)
        if refusal is Refusal.NO_MAILBOX:
            await self.thread.call(self._suppress, mail.email, reply, now)
            log.warning(
                "suppressed %s: the server says the mailbox does not exist: %s",
                masked(mail.email),
                redacted(reply),
            )
        elif refusal is Refusal.POLICY:
            log.warning(
                "refused by the receiving server's policy, not suppressed (check the "
                "sender's SPF/DKIM/DMARC and the content): %s for %s",
                redacted(reply),
                masked(mail.email),
            )

    def _suppress(self, address: str, reply: str, now: datetime) -> None:
        self.ledger.suppress(
            address,
            reason="the mailbox does not exist (refused at sending)",
            source="bounce",
            at=now,
            reply=reply,
        )

    # -- what is left when the transport is done ----------------------------------------

    def _finish(self, fault: str = "") -> None:
        """Claims never attempted are handed back: held by a configuration fault (shown
        as waiting on it, and due again when a fixed configuration is loaded), or after
        a stop or a lapsed lease, due again at once for whichever worker holds a lease
        (an adopter's claims are left alone)."""
        left = len(self.unsettled) + self.reminders.left()
        if fault:
            self.ledger.hold(sorted(self.unsettled), f"configuration fault: {fault}", self.clock())
        elif self.unsettled:
            self.ledger.release(sorted(self.unsettled), self.clock())
        if left and self.ledger.shared:
            # What this pass planned is stale by now (a frozen worker's batch, sent by
            # others meanwhile): the line tells what the ledger says is owed now.
            left = still_owed(self.ledger, self.snapshot, self.clock())
        self.tally.left = left


def claim_step(shared: bool, lease: timedelta) -> ClaimStep:
    """How many reminders the next claim takes: CLAIM_CHUNK on a ledger of its own; on a
    shared one, steps of about CLAIM_SECONDS of sending, and no longer than the lease."""
    if not shared:
        return ClaimStep(CLAIM_CHUNK, CLAIM_CHUNK, CLAIM_SECONDS)
    seconds = min(CLAIM_SECONDS, lease.total_seconds())
    return ClaimStep(SHARED_CLAIM_STEP, SHARED_CLAIM_MOST, seconds)


def _retry_at(now: datetime, not_after: datetime, tries: int = 0) -> datetime | None:
    """When a transient failure is tried again: RETRY_FIRST doubled for each of the
    `tries` recorded before this pass, at most RETRY_AFTER (jittered), or half the time
    left before the deadline when that comes sooner; None when no time is left.

    A back-off's instant is taken down to a step of RETRY_STEPS per back-off (at least
    RETRY_AT_LEAST), the same steps for every worker: a relay that refused a whole batch
    for a moment has it tried again in a few passes, not in a pass per message."""
    jitter = random.uniform(0.8, 1.2)  # noqa: S311 - spreading retries, not a secret
    backoff = min(RETRY_AFTER, RETRY_FIRST * 2 ** min(tries, 16))
    left = (not_after - now) / 2
    if backoff * jitter >= left:
        return now + left if left >= RETRY_AT_LEAST else None
    at = now + backoff * jitter
    step = max(RETRY_AT_LEAST, backoff / RETRY_STEPS).total_seconds()
    stepped = datetime.fromtimestamp(math.floor(at.timestamp() / step) * step, now.tzinfo)
    return stepped if stepped - now >= RETRY_AT_LEAST else at


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
