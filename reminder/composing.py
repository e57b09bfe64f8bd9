"""Composing a batch: in this process, or for a large one also in helper processes.

Composing a reminder costs about as much CPU as sending it, and both hold the GIL:
on a fast relay one process can only go at half the speed of its transport. A large
batch is therefore composed by helper processes too, each reading the same config,
sessions and templates (not the roster: each job carries its registrant), while this
process sends; it composes itself whenever the
helpers fall behind, so the first messages never wait for them to start.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sized
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path

from .config import load_config
from .errors import ReminderError
from .messages import Composer
from .model import DeliveryKey, Registrant
from .plan import Delivery, Slot
from .sessions import build_sessions
from .snapshot import Snapshot, watched_paths
from .snapshot import fingerprint as snapshot_fingerprint
from .templating import Templates

log = logging.getLogger("reminder")

PARALLEL_FROM = 1000  # smaller batches are not worth starting processes for
CHUNK = 64
Job = tuple[Slot, Registrant, DeliveryKey, int, str | None]  # the last: a recorded Message-ID
Composed = bytes | str  # the message, or why it could not be composed


class StaleSnapshotError(ReminderError):
    """A helper read files that changed since the batch was planned."""


def helper_count() -> int:
    """Helpers to start: one core stays with the sending process."""
    return min(4, (os.cpu_count() or 1) - 1)


async def compose_all(
    snapshot: Snapshot,
    deliveries: Iterable[Delivery],
    clock: Callable[[], datetime],
    *,
    helpers: int = 0,
    size: int | None = None,
    counts: dict[str, int] | None = None,
    message_ids: Mapping[DeliveryKey, str] | None = None,
) -> AsyncIterator[tuple[Delivery, Composed]]:
    """Each delivery with its message (or the reason it has none), in no promised order.

    `deliveries` is read lazily, only a window ahead of what is composed: the caller
    may claim them as they are read. With `helpers` > 0 and a batch (`size`, when
    `deliveries` has no length) of PARALLEL_FROM or more, helper processes take chunks
    from the front of the window while this process composes from its back. Helpers
    date their messages by the real clock: the caller asks for them only when `clock`
    is it. `counts`, when given, receives how many were composed "here" and by
    "helpers". `message_ids` are those recorded at the claims, carried unchanged.
    """
    ids = message_ids if message_ids is not None else {}
    counts = counts if counts is not None else {}
    counts.setdefault("here", 0)
    counts.setdefault("helpers", 0)
    if size is None:
        size = len(deliveries) if isinstance(deliveries, Sized) else 0
    if helpers <= 0 or size < PARALLEL_FROM:
        for delivery in deliveries:
            counts["here"] += 1
            yield delivery, _compose_here(snapshot.composer, delivery, clock, ids)
        return
    source = iter(deliveries)
    pending: deque[Delivery] = deque()
    window = (2 * helpers + 2) * CHUNK  # what the helpers may hold, and a chunk to spare

    def refill() -> None:
        pending.extend(itertools.islice(source, max(0, window - len(pending))))

    refill()
    in_flight: deque[tuple[list[Delivery], asyncio.Future[list[Composed]]]] = deque()
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(
        helpers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        initargs=(os.getpid(), str(snapshot.config.origin.file), snapshot.fingerprint),
    )
    usable = True
    try:
        while pending or in_flight:
            refill()
            while usable and len(in_flight) < 2 * helpers and len(pending) > CHUNK:
                chunk = [pending.popleft() for _ in range(CHUNK)]
                jobs = [(d.slot, d.registrant, d.key, d.sequence, ids.get(d.key)) for d in chunk]
                in_flight.append((chunk, loop.run_in_executor(executor, _compose_chunk, jobs)))
            if in_flight and (in_flight[0][1].done() or not pending):
                chunk, future = in_flight.popleft()
                try:
                    results = await future
                    counts["helpers"] += len(results)
                except (StaleSnapshotError, BrokenProcessPool, OSError) as exc:
                    if usable:
                        log.info("composing in this process only (%s)", exc or type(exc).__name__)
                    usable = False
                    results = [_compose_here(snapshot.composer, d, clock, ids) for d in chunk]
                    counts["here"] += len(results)
                for delivery, composed in zip(chunk, results, strict=True):
                    yield delivery, composed
            elif pending:
                delivery = pending.pop()
                counts["here"] += 1
                yield delivery, _compose_here(snapshot.composer, delivery, clock, ids)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _compose_here(
    composer: Composer,
    delivery: Delivery,
    clock: Callable[[], datetime],
    ids: Mapping[DeliveryKey, str],
) -> Composed:
    try:
        return composer.compose(
            delivery.slot,
            delivery.registrant,
            clock(),
            delivery.key,
            delivery.sequence,
            ids.get(delivery.key),
        ).data
    except ReminderError as exc:
        return f"cannot compose: {exc}"


# In a helper process: the snapshot it loaded, or None when its files had changed.
_composer: Composer | None = None


def _start(parent: int, config_path: str, fingerprint: tuple[tuple[str, int, int], ...]) -> None:
    global _composer  # one per helper process, set once at its start
    # Ctrl-C reaches the whole process group: the parent decides when helpers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Only what composing needs: each job carries its registrant, so the roster (the
    # bulk of the parent's memory at 1,000,000 registrants) is not read again.
    config = load_config(Path(config_path))
    if snapshot_fingerprint(watched_paths(config)) != fingerprint:
        _composer = None
        return
    sessions, _ = build_sessions(config)
    templates = Templates(config.paths.templates, config.cycle.language)
    _composer = Composer(config, sessions, templates)


def _exit_with_parent(parent: int) -> None:
    """A helper whose parent was killed (kill -9, OOM) must not linger holding its pipes."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _compose_chunk(jobs: list[Job]) -> list[Composed]:
    if _composer is None:
        raise StaleSnapshotError("the input files changed while the batch was being sent")
    results: list[Composed] = []
    for slot, registrant, key, sequence, recorded_id in jobs:
        try:
            composed = _composer.compose(
                slot, registrant, datetime.now(UTC), key, sequence, recorded_id
            )
            results.append(composed.data)
        except ReminderError as exc:
            results.append(f"cannot compose: {exc}")
    return results
