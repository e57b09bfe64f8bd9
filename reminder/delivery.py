"""One pass of delivery: plan at `now`, claim, compose, send, record. Used by run and simulate."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from .composing import compose_all
from .errors import TransportConfigError
from .ledger import Claim, Outcome, Status
from .messages import message_id
from .plan import Batch, Delivery, DeliveryKey, deadline, due_batch, next_wakeups
from .registrants import masked
from .replies import Refusal, classify
from .snapshot import Snapshot
from .store import DeliveryLedger
from .transport import Envelope, Result, Transport, Verdict

log = logging.getLogger("reminder")

# Between passes a transient failure waits this long (jittered) before the next try.
RETRY_AFTER = timedelta(minutes=5)
# On a shared ledger, deliveries claimed per transaction: a few seconds of sending.
SHARED_CLAIM_STEP = 32
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
        return text + "".join(
            f"; {session} {lead}: {count} sent{' late' if late else ''}"
            for (session, lead, late), count in self.lines.items()
        )


def owed(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> Batch:
    """What the plan and the ledger say is owed at `now`."""
    active = {
        slot.session.key
        for slot in snapshot.slots
        if slot.due_at <= now < deadline(slot.session, snapshot.cutoff)
    }
    # Read at every pass: another command (or the HTTP endpoint) may have suppressed someone.
    return due_batch(
        now,
        snapshot.slots,
        snapshot.roster,
        ledger.view(active),
        snapshot.cutoff,
        ledger.suppressed_addresses(),
    )


def still_owed(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> int:
    """Deliveries a next start would owe: open claims, and what is due but not claimed."""
    fresh = sum(not delivery.retry for delivery in owed(ledger, snapshot, now).sends)
    return ledger.open_claims(now) + fresh


def wakeups(ledger: DeliveryLedger, snapshot: Snapshot, now: datetime) -> list[datetime]:
    """The future instants when something may be owed: reminders, and retries of claims."""
    # Only open claims matter here; reading every settled row of every future session
    # after each wake-up would cost seconds at 100,000 registrants.
    active = {slot.session.key for slot in snapshot.slots if now < slot.session.start}
    return next_wakeups(now, snapshot.slots, ledger.view(active, claims_only=True), snapshot.cutoff)


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
        observer: Observer | None = None,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.clock = clock
        self.helpers = helpers  # processes that help compose a large batch
        self.may_send = may_send  # False while this worker does not hold its lease
        self.unsettled: set[DeliveryKey] = set()  # claimed by this pass, not yet settled
        self.observer = observer or NoObserver()

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
            for key, _ in batch.superseded:
                self.observer.settled(key, "superseded")
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
        unsettled: set[DeliveryKey] = set()
        self.unsettled = unsettled
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
                # The ledger hands back the Message-ID recorded at the first claim: a
                # resend carries it whatever changed in the config since.
                won = {
                    c.key: c for c in self.ledger.claim([claims[d.key] for d in part], self.clock())
                }
                claims.update(won)
                deliveries = [d for d in part if d.key in won]
                unsettled.update(won)
                async for delivery, composed in compose_all(
                    snapshot,
                    deliveries,
                    self.clock,
                    helpers=self.helpers,
                    message_ids={key: claim.message_id for key, claim in won.items()},
                ):
                    if not self.may_send():
                        return
                    if isinstance(composed, str):
                        self._report_failure(unsettled, tally, delivery, composed)
                        continue
                    claim = claims[delivery.key]
                    self.observer.in_flight(1)
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
            self.observer.in_flight(-1)
            self._settle(unsettled, tally, delivery, claim, result)

        try:
            await self.transport.deliver(envelopes(), report, stopping)
        except TransportConfigError as exc:
            # Nothing is stranded: what the fault stopped waits on it, visibly, and is
            # due again as soon as a fixed configuration is loaded.
            tally.fault = exc.reply or str(exc)
            self.ledger.hold(sorted(unsettled), f"configuration fault: {tally.fault}", self.clock())
            tally.left = len(unsettled)
            raise
        tally.left = len(unsettled)
        if unsettled:
            # Claimed, never attempted (a stop, or the lease lapsed): due again at once for
            # whichever worker holds a lease; an adopter's claims are left alone.
            self.ledger.release(sorted(unsettled), self.clock())
        return tally

    def _settle(
        self,
        unsettled: set[DeliveryKey],
        tally: Tally,
        delivery: Delivery,
        claim: Claim,
        result: Result,
    ) -> None:
        """The one place an attempt's outcome is decided and made durable.

        It is written before the transport starts its connection's next transaction
        (report() is called in between), so a crash resends at most what was in flight.
        """
        now = self.clock()
        if result.verdict is Verdict.SENT:
            self.ledger.record([Outcome(delivery.key, Status.SENT, result.reply, now)], now)
            unsettled.discard(delivery.key)
            tally.sent += 1
            tally.late += delivery.late
            line = (delivery.slot.session.id, str(delivery.slot.lead), delivery.late)
            tally.lines[line] = tally.lines.get(line, 0) + 1
            self.observer.settled(delivery.key, "late" if delivery.late else "sent", claim.due_at)
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
                outcome = Outcome(delivery.key, Status.CLAIMED, result.reply, now, retry_at)
                self.ledger.record([outcome], now)
                unsettled.discard(delivery.key)
                return
            reply = f"not delivered before the session started: {result.reply}"
        else:
            reply = result.reply
            self._refused(delivery, reply, now)
        self._report_failure(unsettled, tally, delivery, reply)

    def _refused(self, delivery: Delivery, reply: str, now: datetime) -> None:
        """A mailbox that does not exist is never mailed again in the cycle; a policy
        refusal (5.7.x) says nothing about the address, so it is only reported."""
        refusal = classify(reply)
        if refusal is Refusal.NO_MAILBOX:
            self.ledger.suppress(
                delivery.registrant.email,
                reason="the mailbox does not exist (refused at sending)",
                source="bounce",
                at=now,
                reply=reply,
            )
            log.warning(
                "suppressed %s: the server says the mailbox does not exist: %s",
                masked(delivery.registrant.email),
                reply,
            )
        elif refusal is Refusal.POLICY:
            log.warning(
                "refused by the receiving server's policy, not suppressed (check the "
                "sender's SPF/DKIM/DMARC and the content): %s for %s",
                reply,
                masked(delivery.registrant.email),
            )

    def _report_failure(
        self, unsettled: set[DeliveryKey], tally: Tally, delivery: Delivery, reply: str
    ) -> None:
        now = self.clock()
        self.ledger.record([Outcome(delivery.key, Status.FAILED, reply, now)], now)
        unsettled.discard(delivery.key)
        tally.failed += 1
        log.warning(
            "failed: %s reminder of %s for %s: %s",
            delivery.slot.lead,
            delivery.slot.session.id,
            masked(delivery.registrant.email),
            reply,
        )
        self.observer.settled(delivery.key, "failed")
