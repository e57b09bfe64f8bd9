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

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from .composing import helper_count
from .config import Config
from .delivery import Clock, Dispatcher
from .errors import InputError, ReminderError, TransportConfigError
from .leads import Lead
from .ledger import Ledger
from .lock import StateLock
from .monitor import Monitor
from .outbox import Outbox
from .snapshot import fingerprint, load_snapshot, watched_paths
from .transport import SmtpTransport, Transport
from .web import make_app, start_server

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
        self.monitor = Monitor(clock)  # readiness, metrics and systemd's status line
        self.http: web.AppRunner | None = None

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT (or stop()); raise if the start itself is impossible."""
        self.snapshot = load_snapshot(self.config_path)
        self._seen = self.snapshot.fingerprint
        state = self.snapshot.state_dir
        self.lock = StateLock(state)
        self.lock.acquire()
        try:
            self.ledger = Ledger(ledger_path(self.snapshot.config), worker=self.identity)
            adopted = self.ledger.adopt_claims(self.clock())
            self.transport = self.transport_factory(self.snapshot.config)
            self.dispatcher = self._dispatcher(self.snapshot.config)
            self.monitor.serving(self.snapshot, self.ledger)
            try:
                await self._serve(adopted)
            finally:
                await self.transport.close()
                self.ledger.close()
        finally:
            self.lock.release()

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
        http = self.snapshot.config.http
        try:
            if http.enabled:
                try:
                    self.http = await start_server(make_app(self), http)
                except OSError as exc:
                    raise ReminderError(
                        f"cannot listen on {http.listen} ({exc.strerror}): set http.listen "
                        "to a free address, or http.enabled = false"
                    ) from None
            self._banner(adopted)
            watcher = asyncio.create_task(self._watch())
            alive = asyncio.create_task(self.monitor.keep_alive(self.stopping))
            await self.wake("start")
            await self.stopping.wait()
            await watcher
            await alive
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
            if self.http is not None:
                await self.http.cleanup()
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
            self.ledger, self.transport, self.clock, helpers=helpers, observer=self.monitor
        )

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the messages in flight")
            self.monitor.stopping()
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
        self.monitor.scheduled(list(wanted.values()))
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
        self.monitor.pass_started()
        try:
            tally = await self.dispatcher.run(self.snapshot, self.stopping)
        except TransportConfigError as exc:
            self._paused = str(exc)
            self.monitor.pass_ended(paused=self._paused)
            log.error(
                "deliveries paused until the configuration is fixed and reloaded "
                "(save config.toml or send SIGHUP): %s",
                exc,
            )
            return
        except (ReminderError, OSError) as exc:
            log.error("wake-up (%s) failed, will try again at the next one: %s", reason, exc)
            self.monitor.pass_ended(failure=str(exc))
            return
        self.monitor.pass_ended()
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
            self.monitor.reloaded(None)
            return
        except ReminderError as exc:
            log.error("reload (%s) refused; still serving the previous version: %s", reason, exc)
            self.monitor.reloaded(None)
            return
        if fresh.state_dir != self.snapshot.state_dir:
            log.error(
                "reload (%s) refused: paths.state cannot change while running; restart "
                "the service to move the ledger",
                reason,
            )
            self.monitor.reloaded(None)
            return
        self._seen = fresh.fingerprint
        async with self._busy:
            if fresh.config.smtp != self.snapshot.config.smtp or self._paused:
                await self.transport.close()
                self.transport = self.transport_factory(fresh.config)
                self.dispatcher = self._dispatcher(fresh.config)
                self._paused = None
            old = self.snapshot
            self.snapshot = fresh
            self.monitor.reloaded(fresh)
            self.monitor.set_paused(self._paused)
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
