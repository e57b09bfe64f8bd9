"""A sending rate that is never exceeded as the server counts it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Budget(Protocol):
    """A sending budget: this process's RateLimit, or one all workers share."""

    limits: list[tuple[int, float]]

    async def acquire(self) -> Any: ...

    async def release(self, send: Any) -> None: ...


# A sending budget for these limits ((count, window in seconds), ...), whose sends may
# each take up to `hold` seconds: this process's own, or one several workers share.
BudgetMaker = Callable[[Sequence[tuple[int, float]], float], Budget]


def own_budget(limits: Sequence[tuple[int, float]], hold: float) -> Budget:
    """The budget of a transport alone on its account: this process counts every send."""
    return RateLimit(list(limits))


@dataclass
class _Send:
    started: float
    finished: float | None = None


class RateLimit:
    """At most `count` messages in any `window` seconds, for each (count, window) given.

    The server sees a message somewhere between our start and our end of it, so the
    (i + count)-th send starts only `window` after the i-th one *ended*: then no
    window of the server's clock can hold count + 1 messages, whatever the latency.
    """

    def __init__(
        self, limits: list[tuple[int, float]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = [(count, window) for count, window in limits if count > 0]
        self.clock = clock
        depth = max((count for count, _ in self.limits), default=0)
        self._history: deque[_Send] = deque(maxlen=depth or 1)
        self._turn = asyncio.Lock()  # first come, first served
        self._changed = asyncio.Condition()

    async def acquire(self) -> _Send:
        if not self.limits:
            return _Send(self.clock())
        async with self._turn:
            while True:
                async with self._changed:
                    # Checked under the condition's lock, so no release slips in between.
                    await self._changed.wait_for(lambda: self._wait() != float("inf"))
                    wait = self._wait()
                if wait is None:
                    break
                await asyncio.sleep(wait)
            send = _Send(self.clock())
            if self.limits:
                self._history.append(send)
            return send

    async def release(self, send: _Send) -> None:
        send.finished = self.clock()
        if not self.limits:
            return
        async with self._changed:
            self._changed.notify_all()

    def _wait(self) -> float | None:
        """Seconds to wait before the next send may start (inf: until one ends), or None."""
        longest: float | None = None
        now = self.clock()
        for count, window in self.limits:
            if len(self._history) < count:
                continue
            oldest = self._history[-count]
            if oldest.finished is None:
                return float("inf")
            remaining = oldest.finished + window - now
            if remaining > 0:
                longest = max(longest or 0.0, remaining)
        return longest
