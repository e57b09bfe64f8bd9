"""The words of mailing: the kinds of mail, the key of one delivery, where a delivery stands.

Each is a `StrEnum` or a tuple of plain values whose text is what the ledger stores and
what `history`, `status` and the metrics show: renaming a member in Python changes
nothing that was recorded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class MailKind(StrEnum):
    """What a mail is: a reminder before a session, or a notice of its change."""

    REMINDER = "reminder"
    UPDATE = "update"  # the session moved, or its link or topic changed
    CANCELLATION = "cancellation"  # the session is cancelled, or the registrant left it
    TEST = "test"  # a reminder `send-test` sends: never recorded; its Message-ID says so

    @property
    def is_notice(self) -> bool:
        return self in NOTICE_KINDS


# Each has its templates (update.txt, cancellation.txt, ...) and is planned in core/notices.
NOTICE_KINDS = (MailKind.UPDATE, MailKind.CANCELLATION)
# The kinds the ledger records and staff write templates for.
RECORDED_KINDS = (MailKind.REMINDER, *NOTICE_KINDS)


class DeliveryState(StrEnum):
    """Where one delivery stands, as `status`, `history` and the status page show it.

    The ledger stores every state but WAITING: a claim a configuration fault stopped (a
    refused login, a TLS failure) is stored as CLAIMED with the fault beside it, and is
    shown as WAITING until a fixed configuration sends it.
    """

    CLAIMED = "claimed"  # being sent, or due again after a transient failure
    WAITING = "waiting"  # claimed, held by a configuration fault
    SENT = "sent"  # the server accepted it (250)
    FAILED = "failed"  # refused for good, or not sent before the session's deadline
    SUPERSEDED = "superseded"  # replaced by a more recent reminder or notice; never sent


class DeliveryKey(NamedTuple):
    """What the ledger holds once: one kind of mail, for one appointment, to one person.

    A reminder is told apart by its lead; a change notice by its version (the calendar
    SEQUENCE it brings): a second change after the first notice went out owes another.
    """

    appointment: str  # the session's start, as `Session.appointment` writes it
    kind: MailKind
    lead: str  # a reminder's lead time as staff write it ("1d"); "" for a notice
    recipient: str  # the registrant's key (the folded address)
    version: int = 0  # a notice's version; 0 for a reminder

    @property
    def step(self) -> str:
        """The lead, or the version as "v3": how the ledger's `lead` column and the
        Message-ID write it."""
        return self.lead or f"v{self.version}"

    @property
    def stored(self) -> tuple[str, str, str, str]:
        """The ledger's key columns: session, kind, lead, recipient.

        Read for every claim, result and Message-ID: the kind as a plain str (sqlite3
        binds a str subclass through a slower path), the step written out here.
        """
        return self.appointment, str(self.kind), self.lead or f"v{self.version}", self.recipient

    @classmethod
    def from_stored(cls, appointment: str, kind: str, step: str, recipient: str) -> DeliveryKey:
        """The key of a ledger row, read back from its key columns."""
        mail = MailKind(kind)
        if mail.is_notice:
            return cls(appointment, mail, "", recipient, int(step.removeprefix("v")))
        return cls(appointment, mail, step, recipient)
