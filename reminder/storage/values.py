"""The ledger's values: claims, outcomes, rows, suppressions; addresses and instants as kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..core.mailing import DeliveryKey, DeliveryState, MailKind
from ..core.notices import Told


@dataclass(frozen=True)
class Claim:
    """A delivery about to be attempted: its Message-ID is fixed at the first claim."""

    key: DeliveryKey
    message_id: str
    due_at: datetime
    not_after: datetime
    session_id: str = ""
    told: Told | None = None  # the facts the mail carries (its `at` is unused here)
    tries: int = 0  # attempts the ledger recorded before this claim (a retry's back-off)

    def fact_values(self) -> tuple[object, ...]:
        if self.told is None:
            return (self.session_id or None, None, None, None, None, None, None)
        facts = self.told.facts
        return (
            self.session_id,
            facts.start.isoformat(),
            facts.end.isoformat(),
            facts.join_url,
            facts.status,
            facts.topic,
            self.told.sequence,
        )


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `retry_at` set means transient: the claim stays open."""

    key: DeliveryKey
    state: DeliveryState
    reply: str = ""
    at: datetime | None = None
    retry_at: datetime | None = None
    attempts: int = 1  # SMTP transactions it took (a transport retries before it settles)


@dataclass(frozen=True)
class Row:
    """One delivery as `history` and the status page show it."""

    appointment: str  # the session's start, as the ledger keys it
    kind: MailKind
    lead: str  # the lead, or a notice's version as "v3"
    recipient: str
    state: DeliveryState  # WAITING for a claim held by a configuration fault
    message_id: str
    due_at: datetime
    attempts: int
    sent_at: datetime | None
    updated_at: datetime
    last_reply: str
    fault: str = ""  # set while the claim waits on a configuration fault


@dataclass(frozen=True)
class Suppression:
    """An address nobody mails any more: who or what stopped it, when, and why."""

    address: str
    reason: str
    source: str  # staff, bounce or unsubscribe
    reply: str
    created_at: datetime


def canonical(address: str) -> str:
    """The form the ledger keys an address by, as Registrant.key does."""
    return address.strip().strip("<>").strip().casefold()


def stamp(moment: datetime) -> str:
    """UTC, to the microsecond, always the same width: text order is time order."""
    # isoformat is several times faster than strftime, and this runs twice a delivery.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def unstamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
