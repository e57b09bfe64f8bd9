"""Composing a batch: in this process, or for a large one also in helper processes.

Composing a reminder costs about as much CPU as sending it, and both hold the GIL:
on a fast relay one process can only go at half the speed of its transport. A large
batch is therefore composed by helper processes too, each reading the same config,
sessions and templates (not the roster: each job carries its registrant), while this
process sends; it composes itself whenever the
helpers fall behind, so the first messages never wait for them to start.

Helpers are started only when they can add speed, as measured: this process composes
the first PROBE messages itself, timing its composing against the time the transport
takes between two requests for a message. On a slow relay, or under a rate limit,
the transport sets the pace and no helper starts (it would only double the memory).
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..core.errors import ReminderError
from ..core.mailing import DeliveryKey
from ..core.model import Registrant
from ..core.plan import Delivery, Slot
from ..inputs.config import load_config
from ..inputs.schedule import load_sessions
from ..inputs.templating import Templates
from ..mail.messages import Composer
from ..mail.wire import wired
from .snapshot import Snapshot, watched_paths
from .snapshot import fingerprint as snapshot_fingerprint

log = logging.getLogger("reminder")

PARALLEL_FROM = 1000  # smaller batches are not worth starting processes for
PROBE = 256  # messages composed here, timed, before helpers are considered
# Helpers start when composing takes more than this share of the time between messages:
# taking it out of this process could then make the batch up to 1 / (1 - 0.15) = 1.18
# times as fast. Measured on Postfix's smtp-sink, where composing (with preparing the
# message for the wire) shows as 25-30%: 70% of the transport alone's rate without a
# helper, 85-90% with one. On a 50 ms relay composing shows as about 1%.
COMPOSING_BOUND = 0.15
CHUNK = 64
# A delivery as a helper receives it: its slot (pickled once per chunk), its registrant's
# fields, its SEQUENCE and the Message-ID recorded at its claim. Plain tuples pickle in a
# seventh of the time the dataclasses take, on the sending process.
Job = tuple[Slot, tuple[Any, ...], int, str | None]
_fields_of = attrgetter(*(f.name for f in fields(Registrant) if f.init))


@dataclass(frozen=True, slots=True)
class NotComposed:
    """Why one message could not be composed (its template failed for that registrant)."""

    reason: str


Composition = bytes | NotComposed  # the message's bytes, or why there are none


class StaleSnapshotError(ReminderError):
    """A helper read files that changed since the batch was planned."""


def helper_count() -> int:
    """Helpers to start: one core stays with the sending process."""
    return min(4, (os.cpu_count() or 1) - 1)


async def _each(deliveries: Iterable[Delivery]) -> AsyncIterator[Delivery]:
    for delivery in deliveries:
        yield delivery


async def compose_all(
    snapshot: Snapshot,
    deliveries: Iterable[Delivery] | AsyncIterator[Delivery],
    clock: Callable[[], datetime],
    *,
    helpers: int = 0,
    size: int | None = None,
    counts: dict[str, int] | None = None,
    message_ids: Mapping[DeliveryKey, str] | None = None,
    wire: bool = False,
) -> AsyncIterator[tuple[Delivery, Composition]]:
    """Each delivery with its message (or the reason it has none), in no promised order.

    `deliveries` is read lazily, only a window ahead of what is composed: the caller
    may claim them as they are read (an async iterator: in the ledger's thread). With
    `helpers` > 0 and a batch that is not known to be small (`size`, when given or when
    `deliveries` has a length, under PARALLEL_FROM), the first PROBE messages are
    composed here and timed; when
    composing was the bottleneck, helper processes then take chunks from the front of
    the window while this process composes from its back. Helpers date their messages
    by the real clock: the caller asks for them only when `clock` is it. `counts`, when
    given, receives how many were composed "here" and by "helpers". `message_ids` are
    those recorded at the claims, carried unchanged. With `wire`, each message comes as
    it goes after SMTP's DATA (`wire.wired`), made so by whichever process composed it.
    """
    ids = message_ids if message_ids is not None else {}
    counts = counts if counts is not None else {}
    counts.setdefault("here", 0)
    counts.setdefault("helpers", 0)
    if size is None and isinstance(deliveries, Sized):
        size = len(deliveries)
    source = deliveries if isinstance(deliveries, AsyncIterator) else _each(deliveries)
    composing = waiting = 0.0
    probe = PROBE if helpers > 0 and (size is None or size >= PARALLEL_FROM) else None
    probed = 0
    async for delivery in source:
        probed += 1
        began = time.perf_counter()
        counts["here"] += 1
        composed = _compose_here(snapshot.composer, delivery, clock, ids, wire)
        done = time.perf_counter()
        composing += done - began
        yield delivery, composed
        waiting += time.perf_counter() - done  # the transport's turn, until it asks again
        if probed == probe:
            break
    if probe is None:
        return
    share = composing / max(composing + waiting, 1e-9)
    if share <= COMPOSING_BOUND:
        # The transport sets the pace: helpers would add memory, not speed.
        log.info("composing takes %.0f%% of the batch's time: no helper started", share * 100)
        async for delivery in source:
            counts["here"] += 1
            yield delivery, _compose_here(snapshot.composer, delivery, clock, ids, wire)
        return
    pending: deque[Delivery] = deque()
    window = (2 * helpers + 2) * CHUNK  # what the helpers may hold, and a chunk to spare

    async def refill() -> None:
        while len(pending) < window and (delivery := await anext(source, None)) is not None:
            pending.append(delivery)

    await refill()
    if not pending:
        return  # the probe composed the whole batch
    log.info("composing takes %.0f%% of the batch's time: %d helpers started", share * 100, helpers)
    in_flight: deque[tuple[list[Delivery], asyncio.Future[list[Composition]]]] = deque()
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(
        helpers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        # The parent's Message-ID key: the helpers' mails must carry the same marks.
        initargs=(
            os.getpid(),
            str(snapshot.config.origin.file),
            snapshot.fingerprint,
            snapshot.composer.message_key,
        ),
    )
    usable = True
    try:
        while pending or in_flight:
            await refill()
            while usable and len(in_flight) < 2 * helpers and len(pending) > CHUNK:
                chunk = [pending.popleft() for _ in range(CHUNK)]
                jobs = [_job(d, ids.get(d.key)) for d in chunk]
                in_flight.append(
                    (chunk, loop.run_in_executor(executor, _compose_chunk, jobs, wire))
                )
            if in_flight and (in_flight[0][1].done() or not pending):
                chunk, future = in_flight.popleft()
                try:
                    results = await future
                    counts["helpers"] += len(results)
                except (StaleSnapshotError, BrokenProcessPool, OSError) as exc:
                    if usable:
                        log.info("composing in this process only (%s)", exc or type(exc).__name__)
                    usable = False
                    results = [_compose_here(snapshot.composer, d, clock, ids, wire) for d in chunk]
                    counts["here"] += len(results)
                for delivery, composed in zip(chunk, results, strict=True):
                    yield delivery, composed
            elif pending:
                delivery = pending.pop()
                counts["here"] += 1
                yield delivery, _compose_here(snapshot.composer, delivery, clock, ids, wire)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _job(delivery: Delivery, recorded_id: str | None) -> Job:
    return delivery.slot, _fields_of(delivery.registrant), delivery.sequence, recorded_id


def _compose_here(
    composer: Composer,
    delivery: Delivery,
    clock: Callable[[], datetime],
    ids: Mapping[DeliveryKey, str],
    wire: bool = False,
) -> Composition:
    try:
        data = composer.compose(
            delivery.slot,
            delivery.registrant,
            clock(),
            delivery.key,
            delivery.sequence,
            ids.get(delivery.key),
        ).data
        return wired(data) if wire else data
    except ReminderError as exc:
        return NotComposed(f"cannot compose: {exc}")


# In a helper process: the snapshot it loaded, or None when its files had changed.
_composer: Composer | None = None


def _start(
    parent: int, config_path: str, fingerprint: tuple[tuple[str, int, int], ...], key: bytes
) -> None:
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
    sessions, _ = load_sessions(config)
    templates = Templates(config.paths.templates, config.cycle.language)
    _composer = Composer(config, sessions, templates, key=key)


def _exit_with_parent(parent: int) -> None:
    """A helper whose parent was killed (kill -9, OOM) must not linger holding its pipes."""
    while os.getppid() == parent:
        # A daemon thread of a helper process, which has no event loop (invariant 13).
        time.sleep(0.5)
    os._exit(0)


def _compose_chunk(jobs: list[Job], wire: bool) -> list[Composition]:
    if _composer is None:
        raise StaleSnapshotError("the input files changed while the batch was being sent")
    results: list[Composition] = []
    for slot, values, sequence, recorded_id in jobs:
        registrant = Registrant(*values)
        try:
            composed = _composer.compose(
                slot,
                registrant,
                datetime.now(UTC),
                slot.delivery_key(registrant.key),
                sequence,
                recorded_id,
            )
            results.append(wired(composed.data) if wire else composed.data)
        except ReminderError as exc:
            results.append(NotComposed(f"cannot compose: {exc}"))
    return results
