"""The local outbox: each message a file in a Maildir-style folder, nobody mailed."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from .transport import Capabilities, Envelope, OnResult, Result, Verdict

log = logging.getLogger("reminder")


class Outbox:
    """Writes to tmp/ then renames into new/, so a reader never sees half a message.

    A file is named after its Message-ID: a resend replaces it, like a receiver
    dropping the duplicate would.
    """

    # Files hold the message itself, one at a time, as fast as the disk takes them.
    capabilities = Capabilities()

    def __init__(self, folder: Path, *, durable: bool = True) -> None:
        self.folder = folder
        self.durable = durable
        self.description = f"outbox {folder} (nothing is mailed)"
        self._fault = ""  # the last write failure logged, so a full disk is logged once
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def path_for(self, message_id: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", message_id.strip("<>"))
        return self.folder / "new" / f"{name}.eml"

    def write(self, envelope: Envelope) -> Path:
        final = self.path_for(envelope.message_id)
        temporary = self.folder / "tmp" / final.name
        with temporary.open("wb") as file:
            file.write(envelope.data)
            if self.durable:
                file.flush()
                os.fsync(file.fileno())
        temporary.replace(final)
        return final

    async def deliver(
        self,
        envelopes: AsyncIterator[Envelope],
        on_result: OnResult,
        stopping: asyncio.Event | None = None,
    ) -> None:
        count = 0
        async for envelope in envelopes:
            if stopping is not None and stopping.is_set():
                return
            count += 1
            if envelope.may_send is not None and not envelope.may_send():
                result = Result(envelope, Verdict.ABANDONED, "abandoned: the lease lapsed")
            else:
                result = await self._written(envelope)
            recorded = on_result(result)
            if recorded is not None:
                await recorded

    async def _written(self, envelope: Envelope) -> Result:
        """Write off the event loop: a full or hung disk must not stop it answering."""
        try:
            path = await asyncio.to_thread(self.write, envelope)
        except OSError as exc:
            reason = f"{exc.filename or self.folder}: {exc.strerror}"
            if reason != self._fault:
                self._fault = reason
                log.error("the outbox cannot be written: %s", reason)
            return Result(envelope, Verdict.RETRY, f"outbox write failed: {reason}")
        self._fault = ""
        return Result(envelope, Verdict.SENT, f"written to {path.name}")

    async def close(self) -> None:
        return None
