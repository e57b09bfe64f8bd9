"""The service: wakes at the plan's instants, reloads on change, stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from .cluster import Presence, SharedRateLimit
from .composing import helper_count
from .config import Config
from .delivery import Clock, Dispatcher
from .errors import InputError, ReminderError, TransportConfigError
from .leads import Lead
from .lock import StateLock
from .outbox import Outbox
from .snapshot import fingerprint, load_snapshot, watched_paths
from .store import open_ledger
from .transport import SmtpTransport, Transport

log = logging.getLogger("reminder")

POLL_SECONDS = 2.0  # config, export, suppression list and templates: seen within 5 s
DRAIN_SECONDS = 30.0
WAKEUP_PREFIX = "due:"


def utc_now() -> datetime:
    return datetime.now(UTC)


def ledger_path(config: Config) -> Path:
    return config.path(config.paths.state) / "ledger.sqlite"


def make_transport(config: Config) -> Transport:
    """SMTP when a host is configured; otherwise the outbox, so nobody is mailed by accident."""
    if config.smtp.host:
        return SmtpTransport(config.smtp)
    return Outbox(config.path(config.paths.state) / "outbox")


class Worker:
    """`reminder run`: one process, one state folder, restart-safe."""

    def __init__(
        self,
        config_path: Path,
        *,
        clock: Clock = utc_now,
        transport_factory: Callable[[Config], Transport] = make_transport,
        poll_seconds: float = POLL_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.config_path = config_path
        self.clock = clock
        self.transport_factory = transport_factory
        self.poll_seconds = poll_seconds
        self.drain_seconds = drain_seconds
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{clock():%Y%m%dT%H%M%S}"
        self.stopping = asyncio.Event()
        self._busy = asyncio.Lock()
        self._paused: str | None = None  # why deliveries wait for a reload
        self._again = False  # a wake-up came while another ran
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: tuple[tuple[str, int, int], ...] = ()
        self.wakeups = 0

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT (or stop()); raise if the start itself is impossible."""
        self.snapshot = load_snapshot(self.config_path)
        self._seen = self.snapshot.fingerprint
        state = self.snapshot.state_dir
        self.lock = StateLock(state)
        self.lock.acquire()
        try:
            config = self.snapshot.config
            self.ledger = open_ledger(config, worker=self.identity)
            self.presence = Presence(self.ledger, self.clock, config.ledger.lease_delta)
            try:
                self.presence.join()
                # Alone on a SQLite file (the state lock says so), every other claim is a
                # dead worker's; on a shared ledger, only those whose lease expired.
                adopted = self.ledger.adopt_claims(self.clock(), only_expired=self.ledger.shared)
                self.transport = self._transport(config)
                self.dispatcher = self._dispatcher(config)
                self.presence.in_flight = lambda: len(self.dispatcher.unsettled)
                try:
                    await self._serve(adopted)
                finally:
                    await self.transport.close()
                    with contextlib.suppress(ReminderError):
                        self.presence.leave()
            finally:
                self.ledger.close()
        finally:
            self.lock.release()

    def _transport(self, config: Config) -> Transport:
        transport = self.transport_factory(config)
        if self.ledger.shared and isinstance(transport, SmtpTransport) and transport.rate.limits:
            # The server counts messages per account, whichever machine sends them.
            transport.rate = SharedRateLimit(
                self.ledger, transport.rate.limits, hold=config.smtp.timeout
            )
        return transport

    async def _serve(self, adopted: int) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                # Never drop a late run: the ledger, not the timer, decides what is owed.
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": 1,
            },
        )
        self.scheduler.start()
        try:
            self._banner(adopted)
            watcher = asyncio.create_task(self._watch())
            heart = asyncio.create_task(self._heartbeat())
            await self.wake("start")
            await self.stopping.wait()
            await watcher
            await heart
            # In-flight SMTP transactions finish; nothing new starts (stopping is set).
            try:
                await asyncio.wait_for(self._busy.acquire(), self.drain_seconds)
                self._busy.release()
            except TimeoutError:
                log.warning(
                    "stopping with deliveries still in flight after %ss; they stay "
                    "claimed and are resent with the same Message-ID at the next start",
                    self.drain_seconds,
                )
        finally:
            self.scheduler.shutdown(wait=False)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        log.info("stopped")

    def _dispatcher(self, config: Config) -> Dispatcher:
        # Helper processes compose large batches when sending is fast enough to wait on
        # composing: not under a rate limit (they would compose minutes ahead of the
        # Date they stamp), and only on the real clock, which is all they can read.
        throttled = config.smtp.host and (config.smtp.max_per_minute or config.smtp.max_per_second)
        helpers = helper_count() if self.clock is utc_now and not throttled else 0
        return Dispatcher(
            self.ledger, self.transport, self.clock, helpers=helpers, may_send=self.presence.held
        )

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the messages in flight")
            self.stopping.set()

    def _banner(self, adopted: int) -> None:
        snapshot = self.snapshot
        upcoming = self.dispatcher.wakeups(snapshot, self.clock())
        log.info("reminder worker %s started", self.identity)
        log.info(
            "config %s: cycle %r, %d sessions, %d leads (%s)",
            self.config_path,
            snapshot.config.cycle.id,
            len(snapshot.sessions),
            len(snapshot.config.reminders.leads),
            ", ".join(snapshot.config.reminders.leads),
        )
        log.info(
            "registrants %s: %d served, %d suppressed, %d problems",
            snapshot.roster.source,
            len(snapshot.roster.registrants),
            len(snapshot.roster.suppressed),
            len(snapshot.roster.problems),
        )
        log.info("transport: %s", self.transport.description)
        log.info(
            "ledger %s%s",
            self.ledger.path,
            f"; {adopted} unconfirmed deliveries from a previous run will be resent"
            if adopted
            else "",
        )
        log.info(
            "next wake-up: %s",
            upcoming[0].astimezone(snapshot.config.zone).isoformat()
            if upcoming
            else "none (no reminder left to send)",
        )
        for problem in snapshot.problems:
            log.warning("%s", problem)

    async def _watch(self) -> None:
        """Poll the watched files and sweep at intervals of elapsed time.

        These run on the event loop's monotonic clock, not as scheduler jobs: a clock
        that jumps (a suspended VM, NTP) must not make them run thousands of times.
        """
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.poll_seconds)
            try:
                await self.poll()
            except Exception:  # a watcher that dies would silently stop reloads
                log.exception("watching the input files failed; trying again")
            sweep = Lead.parse(self.snapshot.config.reminders.sweep_interval, allow_zero=True)
            if sweep.delta and loop.time() >= next_sweep + sweep.delta.total_seconds():
                next_sweep = loop.time()
                await self._trigger("sweep")

    async def _heartbeat(self) -> None:
        """Renew the lease every third of it; adopt the claims of workers whose lease ran out."""
        interval = self.presence.lease.total_seconds() / 3
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)
            if self.stopping.is_set():
                return
            try:
                held, kept, adopted = self.presence.beat()
            except ReminderError as exc:
                log.error("heartbeat failed; not sending until it succeeds: %s", exc)
                continue
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
                await self._trigger("adoption" if adopted else "lease renewed")

    def _schedule_wakeups(self) -> None:
        """One in-memory job per future instant of the plan; rebuilt, never persisted."""
        now = self.clock()
        wanted = {
            f"{WAKEUP_PREFIX}{instant.isoformat()}": instant
            for instant in self.dispatcher.wakeups(self.snapshot, now)
        }
        for job in self.scheduler.get_jobs():
            # A job whose instant has come is left to fire: removing it could race the
            # very wake-up it stands for. It finds nothing owed twice.
            stale = job.next_run_time is not None and job.next_run_time > now
            if job.id.startswith(WAKEUP_PREFIX) and job.id not in wanted and stale:
                job.remove()
        for job_id, instant in wanted.items():
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(
                    self._trigger,
                    DateTrigger(run_date=instant),
                    args=["due"],
                    id=job_id,
                    replace_existing=True,
                )

    async def _trigger(self, reason: str) -> None:
        """What the scheduler runs: start a wake-up and return, so a long batch never
        counts as a job still running (APScheduler would skip the next run, noisily)."""
        self._spawn(self.wake(reason))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def wake(self, reason: str) -> None:
        """Deliver whatever is owed now; safe to call at any time, any number of times.

        A wake-up that comes while another runs (a long batch, a reload) is folded into
        one more pass when that one ends, so none is lost and none piles up.
        """
        if self.stopping.is_set():
            return
        if self._busy.locked():
            self._again = True
            return
        async with self._busy:
            self._again = True
            while self._again and not self.stopping.is_set():
                self._again = False
                await self._deliver(reason)
                if not self.stopping.is_set():
                    self._schedule_wakeups()

    async def _deliver(self, reason: str) -> None:
        if self._paused:
            log.debug("deliveries paused: %s", self._paused)
            return
        self.wakeups += 1
        try:
            tally = await self.dispatcher.run(self.snapshot, self.stopping)
        except TransportConfigError as exc:
            self._paused = str(exc)
            log.error(
                "deliveries paused until the configuration is fixed and reloaded "
                "(save config.toml or send SIGHUP): %s",
                exc,
            )
            return
        except (ReminderError, OSError) as exc:
            log.error("wake-up (%s) failed, will try again at the next one: %s", reason, exc)
            return
        if tally:
            log.info(
                "wake-up (%s): %s%s",
                reason,
                tally,
                "".join(
                    f"; {session} {lead}: {count}{' late' if late else ''}"
                    for session, lead, count, late in tally.lines
                ),
            )
        else:
            log.debug("wake-up (%s): nothing due", reason)

    async def poll(self) -> None:
        """Reload when a watched file changed since the last attempt, good or bad."""
        current = fingerprint(watched_paths(self.snapshot.config))
        if current != self._seen:
            await self.reload("a file changed")

    async def reload(self, reason: str) -> None:
        self._seen = fingerprint(watched_paths(self.snapshot.config))
        try:
            fresh = load_snapshot(self.config_path)
        except InputError as exc:
            log.error(
                "reload (%s) refused; still serving the previous version. Fix this:\n%s",
                reason,
                "\n".join(f"  {p}" for p in exc.problems),
            )
            return
        except ReminderError as exc:
            log.error("reload (%s) refused; still serving the previous version: %s", reason, exc)
            return
        if fresh.config.ledger.url != self.snapshot.config.ledger.url:
            log.error(
                "reload (%s) refused: ledger.url cannot change while running; restart "
                "the service to move the ledger",
                reason,
            )
            return
        if fresh.state_dir != self.snapshot.state_dir:
            log.error(
                "reload (%s) refused: paths.state cannot change while running; restart "
                "the service to move the ledger",
                reason,
            )
            return
        self._seen = fresh.fingerprint
        async with self._busy:
            if fresh.config.smtp != self.snapshot.config.smtp or self._paused:
                await self.transport.close()
                self.transport = self._transport(fresh.config)
                self.dispatcher = self._dispatcher(fresh.config)
                self._paused = None
            old = self.snapshot
            self.snapshot = fresh
        log.info(
            "reloaded (%s): %d sessions (%+d), %d registrants (%+d)",
            reason,
            len(fresh.sessions),
            len(fresh.sessions) - len(old.sessions),
            len(fresh.roster.registrants),
            len(fresh.roster.registrants) - len(old.roster.registrants),
        )
        for problem in fresh.problems:
            log.warning("%s", problem)
        await self.wake("reload")
