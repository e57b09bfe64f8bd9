"""Files read off the event loop, with a deadline: a hung network mount (where even a
`stat` blocks) must not freeze the worker, whose last good state keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from ..core.errors import StateError

T = TypeVar("T")

# Reads that did not return: beyond this many, no new one starts (each holds a thread).
MAX_HUNG = 4
_running = 0
_count = threading.Lock()


async def off_loop(work: Callable[..., T], *args: Any, deadline: float = 10.0, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` in a thread of its own, awaited for at most `deadline` s.

    A daemon thread, not an executor's: one that hangs for good must not hold up the
    process's exit. Raises StateError when the deadline passes (the thread is left to
    finish or hang; its result is dropped).
    """
    global _running  # the reads in flight, for the whole process
    with _count:
        if _running >= MAX_HUNG:
            raise StateError(
                f"{_running} reads of the input files have not returned (a hung network "
                "mount?); still serving the last good version"
            )
        _running += 1
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        global _running
        try:
            result = work(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting caller, whatever it is
            deliver = partial(settle, partial(future.set_exception, exc))
        else:
            deliver = partial(settle, partial(future.set_result, result))
        finally:
            with _count:
                _running -= 1
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver)

    threading.Thread(target=run, name="reminder-files", daemon=True).start()
    try:
        return await asyncio.wait_for(future, deadline)
    except TimeoutError:
        raise StateError(
            f"reading the input files took more than {deadline:g} s (a hung network mount?); "
            "still serving the last good version"
        ) from None
