"""A fault that lasts (a full disk, a read-only folder, a database away): told once when
it starts, at most once a minute while it lasts, with a count, and once when it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("reminder")

REPEAT_EVERY = 60.0  # seconds between two reminders that a fault still lasts


class Fault:
    """One kind of fault (`what`: "the ledger", "wake-ups"), whatever its cause of the moment.

    `seen(cause)` each time it happens: the first time it is logged at once; after that
    at most once per REPEAT_EVERY, with how many times it happened since and its cause of
    the moment. `cleared()` when the thing works again: one line, if it had failed.
    """

    def __init__(
        self,
        what: str,
        *,
        level: int = logging.ERROR,
        every: float = REPEAT_EVERY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.level, self.every, self.monotonic = what, level, every, monotonic
        self.cause: str | None = None
        self.started = 0.0
        self._told_at = 0.0
        self._since_told = 0  # occurrences not yet counted in a line

    @property
    def active(self) -> bool:
        return self.cause is not None

    def seen(self, cause: str, first: str | None = None) -> None:
        """It happened (again); `first`, when given, is the line that tells its start."""
        now = self.monotonic()
        if self.cause is None:
            self.started = self._told_at = now
            self.cause, self._since_told = cause, 0
            log.log(self.level, "%s: %s", self.what, first or cause)
            return
        self.cause = cause
        self._since_told += 1
        if now - self._told_at >= self.every:
            log.log(
                self.level,
                "%s: still failing (%d more time%s in the last %.0f s): %s",
                self.what,
                self._since_told,
                "s" if self._since_told > 1 else "",
                now - self._told_at,
                cause,
            )
            self._told_at, self._since_told = now, 0

    def cleared(self, how: str = "works again") -> None:
        if self.cause is None:
            return
        log.info("%s %s after %.0f s", self.what, how, self.monotonic() - self.started)
        self.cause = None
