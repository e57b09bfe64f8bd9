"""What the service asks of a way to send mail, and the values that cross it.

A transport (SMTP, the outbox, an HTTP mail API) takes envelopes, hands back one result
each, and says what it can do in its `Capabilities`: the worker plans around those and
never asks which transport it holds. `transports.py` registers them by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Verdict(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # permanent for this recipient: do not try again
    RETRY = "retry"  # transient: try again later, with the same Message-ID
    # Not sent, and not this worker's to settle: its lease lapsed (a freeze, a lost
    # database) before the message went out, and another worker may hold the claim now.
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Envelope:
    """One message for one recipient; `token` is the caller's, handed back in the Result."""

    token: Any
    sender: str
    recipient: str
    message_id: str
    data: bytes
    not_after: datetime | None = None
    # `data` is already as it goes after DATA (`wire.wired`): prepared where it was
    # composed, off the sending process. Only for a transport whose capabilities say
    # `wired`.
    wired: bool = False
    # Asked just before the transaction starts and again just before the message body
    # goes after DATA: False (the sender's lease lapsed) abandons it, unsent.
    may_send: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Result:
    envelope: Envelope
    verdict: Verdict
    reply: str
    attempts: int = 1  # transactions tried for this envelope, this one included


# Called once per envelope with its final result; what it records is durable before
# the transport starts the next transaction on that connection (invariant 9): when it
# returns an awaitable (the worker's ledger is in its own thread), once that is done.
OnResult = Callable[[Result], Awaitable[None] | None]


@dataclass(frozen=True)
class Capabilities:
    """What a transport can do, declared: the worker plans around it, knowing no class."""

    # Messages may come already as they go after SMTP's DATA (`Envelope.wired`), made so
    # where they were composed, off the sending process.
    wired: bool = False
    # The commands of one transaction go in one round trip (RFC 2920) when the server
    # offers it: a slow relay costs one round trip per message, not three.
    pipelining: bool = False
    # At most `count` messages in any `window` seconds, as the server counts them: the
    # pace is the transport's, so composing ahead (helper processes) gains nothing.
    rate_limits: tuple[tuple[int, float], ...] = ()
    # Transactions at once: after a crash at most these were in flight and may be resent.
    in_flight: int = 1


async def each(envelopes: Iterable[Envelope]) -> AsyncIterator[Envelope]:
    """Envelopes already in hand, as the async iterator a transport takes."""
    for envelope in envelopes:
        yield envelope


class Transport(Protocol):
    """What the worker needs of a way to send mail."""

    description: str  # for the start banner: where mail goes, and how
    capabilities: Capabilities

    async def deliver(
        self,
        envelopes: AsyncIterator[Envelope],
        on_result: OnResult,
        stopping: asyncio.Event | None = None,
    ) -> None:
        """Send every envelope, calling `on_result` once per envelope with its final verdict.

        Raises TransportConfigError, leaving the rest without a result, when retrying
        cannot help (bad login, TLS failure, refused sender). When `stopping` is set, no
        new message is started; those already in a transaction finish.
        """

    async def close(self) -> None: ...
