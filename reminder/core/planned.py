"""What one pass of delivery sends and what it did: each mail as its outcome is counted
and logged, the reminders owed, taken a chunk at a time as sending reaches them, and the
pass's tally."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .mailing import DeliveryKey
from .notices import Notice
from .plan import Batch, Delivery, Slot

# Told of deliveries recorded as superseded while the plan is read.
Supersede = Callable[[Sequence[tuple[DeliveryKey, datetime]]], None]


@dataclass(slots=True)  # one per mail sent: not frozen, whose fields cost a call each
class PlannedMail:
    """One mail of a pass, reminder or notice: what its outcome is recorded, counted and
    logged under."""

    key: DeliveryKey
    what: str  # as the log names it: "1d reminder", "cancellation"
    session: str  # the session's id
    email: str
    label: str  # the lead, or the notice's kind, as the pass's log line counts it
    late: bool = False
    notice: bool = False

    @classmethod
    def of(cls, item: Delivery | Notice) -> PlannedMail:
        if isinstance(item, Notice):
            kind = item.kind
            return cls(item.key, kind, item.session.id, item.registrant.email, kind, notice=True)
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


class ReminderChunks:
    """The reminders owed by one pass, planned a chunk at a time as sending reaches them.

    `chunk` is the size the planner makes them: a first chunk that full says more may
    follow, so the size of the batch is not known yet.
    """

    def __init__(self, batches: Iterator[Batch], chunk: int) -> None:
        self._batches = batches
        self._chunk = chunk
        self._ahead: list[tuple[Delivery, ...]] = []  # planned, not handed out yet
        self.size_hint: int | None = 0  # how many to send, while it is known

    def start(self, supersede: Supersede) -> bool:
        """Plan up to the first chunk with something to send; False when there is none."""
        if not self._plan_one(supersede):
            return False
        first = len(self._ahead[-1])
        self.size_hint = None if first >= self._chunk else first
        return True

    def take(self, supersede: Supersede, most: int) -> tuple[Delivery, ...]:
        """Up to `most` reminders, planning only as far as they reach (what a planned
        chunk holds beyond them waits for the next call); none when all were taken."""
        taken: list[Delivery] = []
        while len(taken) < most:
            if not self._ahead and not self._plan_one(supersede):
                break
            part = self._ahead.pop()
            room = most - len(taken)
            if len(part) > room:
                self._ahead.append(part[room:])
                part = part[:room]
            taken += part
        return tuple(taken)

    def _plan_one(self, supersede: Supersede) -> bool:
        """Plan up to the next chunk with something to send; False at the end."""
        for batch in self._batches:
            if batch.superseded:
                supersede(batch.superseded)
            if batch.sends:
                self._ahead.append(batch.sends)
                return True
        return False

    def put_back(self, part: tuple[Delivery, ...]) -> None:
        self._ahead.append(part)

    def left(self) -> int:
        """What is still owed and not claimed: planned to the end to count it."""
        count = sum(len(part) for part in self._ahead)
        return count + sum(len(batch.sends) for batch in self._batches)


class ClaimStep:
    """How many reminders a worker on a shared ledger claims in its next transaction.

    Each claim is a durable commit: in small steps, claiming 100,000 costs three times
    what it does in one. But a worker holds what it claimed: a large step would leave
    the other workers idle at the end of a batch, and a killed worker's claims waiting
    for its lease. So the step covers about `seconds` of sending: it starts at `least`,
    and each next one is what the connections took in `seconds` during the last step
    (measured from its claim to the next), at most twice the last and never more than
    `most`. On a 50 ms relay (4 connections: 80 messages a second) it stays near 40;
    on a fast sink it grows to `most` within a few steps.
    """

    def __init__(self, least: int, most: int, seconds: float) -> None:
        self.least = least
        self.most = max(least, most)
        self.seconds = seconds
        self.size = least
        self._since: float | None = None  # when the last step was claimed (monotonic)

    def next(self, now: float, handed: int) -> int:
        """The next step's size, at `now` (monotonic seconds), `handed` of the last step
        having gone to sending since it was claimed (those another worker had claimed
        first are not sent here: they tell nothing of the pace)."""
        if self._since is not None and handed > 0:
            rate = handed / max(now - self._since, 1e-6)
            wanted = round(rate * self.seconds)
            self.size = max(self.least, min(wanted, 2 * self.size, self.most))
        self._since = now
        return self.size


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
