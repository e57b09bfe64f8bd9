"""What one pass of delivery sends and what it did: each mail as its outcome is counted
and logged, the reminders owed, taken a chunk at a time as sending reaches them, and the
pass's tally."""

from __future__ import annotations

import random
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
        self.total: int | None = None  # how many, when planned in full beforehand

    def spread(self, step: int) -> ReminderChunks:
        """On a shared ledger: the whole batch, in small steps from a random place, so
        that workers sharing it send a large batch together instead of racing."""
        superseded: list[tuple[DeliveryKey, datetime]] = []
        sends: list[Delivery] = []
        for batch in self._batches:
            sends += batch.sends
            superseded += batch.superseded
        if sends:
            turn = random.randrange(len(sends))  # noqa: S311 - spreading load, not a secret
            sends = sends[turn:] + sends[:turn]
        parts = [tuple(sends[at : at + step]) for at in range(0, len(sends), step)]
        batches = [Batch((), tuple(superseded))] + [Batch(part) for part in parts]
        spread = ReminderChunks(iter(batches), self._chunk)
        spread.total = len(sends)
        return spread

    def start(self, supersede: Supersede) -> bool:
        """Plan up to the first chunk with something to send; False when there is none."""
        for batch in self._batches:
            if batch.superseded:
                supersede(batch.superseded)
            if batch.sends:
                self._ahead.append(batch.sends)
                if self.total is not None:
                    self.size_hint = self.total
                elif len(batch.sends) >= self._chunk:
                    self.size_hint = None
                else:
                    self.size_hint = len(batch.sends)
                return True
        return False

    def chunks(self, supersede: Supersede) -> Iterator[tuple[Delivery, ...]]:
        while self._ahead:
            yield self._ahead.pop()
        for batch in self._batches:
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
        return count + sum(len(batch.sends) for batch in self._batches)


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
