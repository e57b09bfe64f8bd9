"""One pass of delivery: plan at `now`, claim, compose, send, record. Used by run and simulate."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .composing import compose_all
from .ledger import Claim, Outcome, Status
from .messages import message_id
from .plan import Batch, Delivery, DeliveryKey, deadline, due_batch, next_wakeups
from .registrants import masked
from .snapshot import Snapshot
from .store import DeliveryLedger
from .transport import Envelope, Result, Transport, Verdict

log = logging.getLogger("reminder")

# Between passes a transient failure waits this long (jittered) before the next try.
RETRY_AFTER = timedelta(minutes=5)
# On a shared ledger, deliveries claimed per transaction: a few seconds of sending.
SHARED_CLAIM_STEP = 32
Clock = Callable[[], datetime]


@dataclass
class Tally:
    """What one pass did, for the one log line it earns."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    superseded: int = 0
    late: int = 0
    expired: int = 0
    lines: list[tuple[str, str, int, bool]] = field(default_factory=list)  # session, lead, n, late

    def __bool__(self) -> bool:
        return bool(self.sent or self.failed or self.retrying or self.superseded or self.expired)

    def __str__(self) -> str:
        text = (
            f"sent {self.sent}, failed {self.failed}, retrying {self.retrying}, "
            f"superseded {self.superseded}"
        )
        if self.late:
            text += f" ({self.late} late)"
        if self.expired:
            text += f", expired {self.expired}"
        return text


def owed(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> Batch:
    """What the plan and the ledger say is owed at `now`."""
    active = {
        slot.session.key
        for slot in snapshot.slots
        if slot.due_at <= now < deadline(slot.session, snapshot.cutoff)
    }
    return due_batch(now, snapshot.slots, snapshot.roster, ledger.view(active), snapshot.cutoff)


def wakeups(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> list[datetime]:
    """The future instants when something may be owed: reminders, and retries of claims."""
    # Only open claims matter here; reading every settled row of every future session
    # after each wake-up would cost seconds at 100,000 registrants.
    active = {slot.session.key for slot in snapshot.slots if now < slot.session.start}
    return next_wakeups(now, snapshot.slots, ledger.view(active, claims_only=True), snapshot.cutoff)


class ResultWriter:
    """Collects outcomes and writes them to the ledger in small batches."""

    def __init__(
        self, ledger: DeliveryLedger, clock: Clock, every: int = 64, after: float = 0.05
    ) -> None:
        self.ledger, self.clock = ledger, clock
        self.every, self.after = every, after
        self.pending: list[Outcome] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        if len(self.pending) >= self.every:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.after, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pending:
            outcomes, self.pending = self.pending, []
            self.ledger.record(outcomes, self.clock())


class Dispatcher:
    """Turns the plan at an instant into deliveries, each recorded in the ledger once."""

    def __init__(
        self,
        ledger: DeliveryLedger,
        transport: Transport,
        clock: Clock,
        *,
        helpers: int = 0,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.clock = clock
        self.helpers = helpers  # processes that help compose a large batch
        self.may_send = may_send  # False while this worker does not hold its lease
        self.unsettled: set[DeliveryKey] = set()  # claimed by this pass, not yet settled

    def wakeups(self, snapshot: Snapshot, now: datetime) -> list[datetime]:
        return wakeups(self.ledger, snapshot, now)

    async def run(self, snapshot: Snapshot, stopping: asyncio.Event | None = None) -> Tally:
        """Send everything owed at the clock's now; return what happened."""
        now = self.clock()
        tally = Tally(expired=self.ledger.expire(now))
        batch = owed(self.ledger, snapshot, now)
        if batch.superseded:
            self.ledger.supersede(batch.superseded, now)
            tally.superseded = len(batch.superseded)
        if not batch.sends:
            return tally
        config = snapshot.config
        claims = {
            d.key: Claim(
                d.key,
                message_id(config, d.key),
                d.slot.due_at,
                deadline(d.slot.session, snapshot.cutoff),
            )
            for d in batch.sends
        }
        # Shared: each outcome is durable before its connection's next transaction, so a
        # worker killed at any moment leaves only its in-flight messages to be resent.
        recorder = ResultWriter(self.ledger, self.clock, every=1 if self.ledger.shared else 64)
        sends = list(batch.sends)
        step = len(sends)
        if self.ledger.shared:
            # Workers sharing a ledger claim a little at a time, each from its own random
            # place in the batch, so all of them send a large batch together.
            step = SHARED_CLAIM_STEP
            turn = random.randrange(len(sends))  # noqa: S311 - spreading load, not a secret
            sends = sends[turn:] + sends[:turn]

        async def envelopes() -> AsyncIterator[Envelope]:
            for start in range(0, len(sends), step):
                if not self.may_send():
                    return  # the lease lapsed: another worker may hold these claims now
                part = sends[start : start + step]
                won = {
                    c.key for c in self.ledger.claim([claims[d.key] for d in part], self.clock())
                }
                deliveries = [d for d in part if d.key in won]
                self.unsettled |= won
                tally.late += sum(delivery.late for delivery in deliveries)
                _count_lines(tally, deliveries)
                async for delivery, composed in compose_all(
                    snapshot, deliveries, self.clock, helpers=self.helpers
                ):
                    if not self.may_send():
                        return
                    if isinstance(composed, str):
                        self._report_failure(recorder, tally, delivery, composed)
                        continue
                    claim = claims[delivery.key]
                    yield Envelope(
                        (delivery, claim),
                        config.smtp.sender,
                        delivery.registrant.email,
                        claim.message_id,
                        composed,
                        claim.not_after,
                    )

        def report(result: Result) -> None:
            delivery, claim = result.envelope.token
            self._settle(recorder, tally, delivery, claim, result)

        try:
            await self.transport.deliver(envelopes(), report, stopping)
        finally:
            recorder.flush()
        if self.unsettled:
            # Claimed, never attempted (a stop, or the lease lapsed): due again at once for
            # whichever worker holds a lease; an adopter's claims are left alone.
            self.ledger.release(sorted(self.unsettled), self.clock())
        self.unsettled = set()
        return tally

    def _settle(
        self, recorder: ResultWriter, tally: Tally, delivery: Delivery, claim: Claim, result: Result
    ) -> None:
        now = self.clock()
        self.unsettled.discard(delivery.key)
        if result.verdict is Verdict.SENT:
            tally.sent += 1
            recorder.add(Outcome(delivery.key, Status.SENT, result.reply, now))
            return
        if result.verdict is Verdict.RETRY:
            retry_at = now + RETRY_AFTER * random.uniform(0.8, 1.2)  # noqa: S311
            if retry_at < claim.not_after:
                tally.retrying += 1
                log.info(
                    "will retry %s for %s at %s: %s",
                    delivery.slot.lead,
                    masked(delivery.registrant.email),
                    f"{retry_at:%H:%M:%S}",
                    result.reply,
                )
                recorder.add(Outcome(delivery.key, Status.CLAIMED, result.reply, now, retry_at))
                return
            reply = f"not delivered before the session started: {result.reply}"
        else:
            reply = result.reply
        self._report_failure(recorder, tally, delivery, reply)

    def _report_failure(
        self, recorder: ResultWriter, tally: Tally, delivery: Delivery, reply: str
    ) -> None:
        self.unsettled.discard(delivery.key)
        tally.failed += 1
        log.warning(
            "failed: %s reminder of %s for %s: %s",
            delivery.slot.lead,
            delivery.slot.session.id,
            masked(delivery.registrant.email),
            reply,
        )
        recorder.add(Outcome(delivery.key, Status.FAILED, reply, self.clock()))


def _count_lines(tally: Tally, deliveries: list[Delivery]) -> None:
    counts = {(session, lead, late): n for session, lead, n, late in tally.lines}
    for delivery in deliveries:
        key = (delivery.slot.session.id, str(delivery.slot.lead), delivery.late)
        counts[key] = counts.get(key, 0) + 1
    tally.lines[:] = [
        (session, lead, count, late) for (session, lead, late), count in counts.items()
    ]
