"""The worker's lease, kept: a beat every third of it, and what each beat says.

A beat renews this worker's lease and adopts the open claims of workers whose lease ran
out (killed, frozen, cut off). What it finds is told once: a beat that fails (a fault
that lasts, logged once a minute), a lease that had lapsed (other workers may have
taken this one's claims), claims adopted. Whenever a beat leaves something to send, the
worker is asked for a pass at once, not at its next instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..core.errors import LedgerUnreachable, ReminderError
from ..storage.cluster import Presence
from ..storage.ledger import Ledger
from ..storage.thread import LedgerThread
from .faults import Fault

log = logging.getLogger("reminder")


class Heartbeat:
    """Beats for `presence` through the ledger's `thread`; `wake(reason)` asks for a pass."""

    def __init__(
        self,
        thread: LedgerThread[Ledger],
        presence: Presence,
        wake: Callable[[str], Awaitable[None]],
    ) -> None:
        self.thread = thread
        self.presence = presence
        self.wake = wake
        self.fault = Fault("the heartbeat fails; not sending until it succeeds")

    @property
    def interval(self) -> float:
        """Seconds between two beats: a third of the lease."""
        return self.presence.lease.total_seconds() / 3

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat every `interval` until `stopping` is set."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
            if stopping.is_set():
                return
            await self.beat()

    async def beat(self) -> None:
        # A beat slower than the interval (the workers' lock held by a frozen worker's
        # transaction, until the server ends it) is a fault to tell, but it is awaited
        # all the same: once under way, its adoption is made, and must be told and sent.
        deadline = self.interval
        beat = asyncio.ensure_future(self.thread.call(self.presence.beat, patient=False))
        try:
            try:
                held, kept, adopted = await asyncio.wait_for(asyncio.shield(beat), deadline)
            except TimeoutError:
                self.fault.seen(
                    f"the ledger did not answer within {deadline:g} s (busy, or its storage hangs)"
                )
                held, kept, adopted = await beat
        except asyncio.CancelledError:
            beat.cancel()
            raise
        except ReminderError as exc:
            if not isinstance(exc, LedgerUnreachable) and self.thread.outage is None:
                self.fault.seen(str(exc))  # else the ledger's own line tells it, once
            return
        self.fault.cleared("succeeds again")
        if not kept:
            log.warning(
                "this worker's lease had expired and other workers adopted its claims; "
                "it sends again under a new lease, nothing they took"
            )
        elif not held:
            log.warning("this worker's lease was renewed after it lapsed; sending again")
        if adopted:
            log.info(
                "adopted %d deliveries of a worker whose lease expired; sending them "
                "with their recorded Message-ID",
                adopted,
            )
        if adopted or not held:
            await self.wake("adoption" if adopted else "lease renewed")

    async def now(self) -> None:
        """The ledger answers again: renew the lease, and send what waited."""
        await self.beat()
        await self.wake("the ledger answers again")
