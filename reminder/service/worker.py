"""The service: wakes at the plan's instants, reloads on change, stops cleanly.

Three mechanisms time it, and they stay three because each answers a different clock:
- APScheduler one-shot jobs wake the worker at the plan's instants, which are dates on
  the (injected) wall clock; rebuilt after every pass, never persisted.
- The watch loop polls the input files and runs the sweep on the event loop's monotonic
  clock: intervals of elapsed time, which a jumping wall clock (a suspended VM, NTP) must
  not multiply. As scheduler interval jobs they would follow the wall clock instead.
- The busy lock times nothing: it makes passes and reloads take turns and folds a wake-up
  that comes during a pass into one more pass, so no timer needs to know about another.
The heartbeat (`heartbeat.py`) renews the lease on the same monotonic clock. Nothing
polls faster than the watch interval: waits are on events (stopping, started, a retry
coming due in the transport).

Nothing on the loop waits on a database or a file (invariant 13): the ledger lives in its
own thread (`LedgerThread`), and files are read in `files.py`'s threads, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from ..core.answer import INTERRUPTED, OK, Answer
from ..core.clock import Clock, utc_now
from ..core.errors import (
    InputError,
    LedgerUnreachable,
    ReminderError,
    StateError,
    TransportConfigError,
)
from ..inputs.config import Config
from ..mail.ratelimit import Budget, BudgetMaker, own_budget
from ..mail.transport import Transport
from ..mail.transports import make_transport, transport_settings
from ..storage.backend import ledger_patience, open_ledger
from ..storage.cluster import Presence, SharedRateLimit
from ..storage.ledger import Ledger
from ..storage.lock import StateLock
from ..storage.thread import LedgerThread, Outage
from .bounces import BounceRun, collect
from .composing import helper_count
from .dispatcher import Dispatcher
from .faults import Fault
from .files import off_loop
from .heartbeat import Heartbeat
from .logs import use_zone
from .lookahead import owed_count, still_owed
from .monitor import Monitor
from .snapshot import Snapshot, fingerprint, load_snapshot, watched_paths
from .web import make_app, start_server

log = logging.getLogger("reminder")

POLL_SECONDS = 2.0  # config, export, suppression list and templates: seen within 5 s
DRAIN_SECONDS = 30.0
WAKEUP_PREFIX = "due:"
# Reading every input file again: seconds at 1,000,000 registrants; past this, the
# files hang (a network mount), and the last good state keeps serving.
RELOAD_DEADLINE = 120.0
STAT_DEADLINE = 10.0  # the few `stat` calls of a poll


# Above this many registrants a reload no longer collects the previous snapshot's cycles:
# the full collection it takes walks every object the worker holds, on the event loop
# (about 0.5 s a million registrants), and the cycles are a few hundred objects (its
# templates), the registrants themselves none.
COLLECT_AT_RELOAD_UP_TO = 100_000


def _out_of_collections(snapshot: Snapshot, *, reload: bool = False) -> None:
    """Keep the snapshot just loaded out of the cyclic collector's passes.

    It lives until the next reload, yet at 1,000,000 registrants each full collection
    walked its millions of objects again: seconds lost during the first pass of a
    batch, and a third of the sending rate. At start, and at a reload of a small roster,
    the previous objects are unfrozen and collected once first.
    """
    if not reload or len(snapshot.roster.registrants) <= COLLECT_AT_RELOAD_UP_TO:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def serve(config_path: Path, *, utc: bool = False) -> Answer:
    """`reminder run`: serve until SIGTERM (exit 0) or SIGINT (exit 130)."""
    worker = Worker(config_path, utc_logs=utc)
    asyncio.run(worker.run())
    return Answer(status=INTERRUPTED if worker.signal == signal.SIGINT else OK)


class Worker:
    """`reminder run`: one process, one state folder, restart-safe."""

    def __init__(
        self,
        config_path: Path,
        *,
        clock: Clock = utc_now,
        transport_factory: Callable[[Config, Clock, BudgetMaker], Transport] = make_transport,
        helpers: int | None = None,
        poll_seconds: float = POLL_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
        utc_logs: bool = False,
    ) -> None:
        self.config_path = config_path
        self.clock = clock
        self.transport_factory = transport_factory
        # Processes that help compose large batches (None: one per spare core). They date
        # messages by the real clock, so a caller that injects another clock gives 0.
        self.helpers = helper_count() if helpers is None else helpers
        self.poll_seconds = poll_seconds
        self.drain_seconds = drain_seconds
        self.utc_logs = utc_logs
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{clock():%Y%m%dT%H%M%S}"
        self.stopping = asyncio.Event()
        self._busy = asyncio.Lock()
        self._paused: str | None = None  # why deliveries wait for a reload
        self._again = False  # a wake-up came while another ran
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused_roster: tuple[str, int, int] | None = None  # an export held back
        # Faults that last, each told once, then once a minute, then when it ends.
        self.pass_fault = Fault("wake-ups")
        self.ledger_fault = Fault("the ledger")
        self.bounce_fault = Fault("reading bounce reports")
        self.watch_fault = Fault("watching the input files fails; still serving the last good")
        self.failure: ReminderError | None = None  # why the worker stopped on its own
        self.signal: int | None = None  # the signal that stopped it
        self.sent = 0  # since start, for the stop line
        self.monitor = Monitor(clock)  # readiness, metrics and systemd's status line
        self.http: web.AppRunner | None = None
        self.started = asyncio.Event()  # set once the first pass has run and jobs are planned
        self.snapshot = load_snapshot(config_path, served=True)  # replaced by each reload
        self._seen = self.snapshot.fingerprint  # the watched files as last read
        self.lock = StateLock(self.snapshot.state_dir)
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                # Never drop a late run: the ledger, not the timer, decides what is owed.
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": 1,
            },
        )
        self._open: _Open | None = None  # what run() opens once it holds the lock

    @property
    def ledger(self) -> Ledger:
        """The ledger object: its methods are called through `self.thread`, in its thread."""
        return self._opened().thread.ledger

    @property
    def thread(self) -> LedgerThread[Ledger]:
        return self._opened().thread

    @property
    def presence(self) -> Presence:
        return self._opened().presence

    @property
    def heartbeat(self) -> Heartbeat:
        return self._opened().heartbeat

    @property
    def transport(self) -> Transport:
        return self._opened().transport

    @property
    def dispatcher(self) -> Dispatcher:
        return self._opened().dispatcher

    def _opened(self) -> _Open:
        if self._open is None:
            raise RuntimeError("the worker is not running: run() opens the ledger and transport")
        return self._open

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT (or stop()); raise if the start itself is impossible."""
        _out_of_collections(self.snapshot)  # before the HTTP face is up: nobody waits
        use_zone(UTC if self.utc_logs else self.snapshot.config.zone)
        self.lock.acquire()
        try:
            config = self.snapshot.config
            thread: LedgerThread[Ledger] = LedgerThread(
                patience=ledger_patience(config), on_outage=self._ledger_outage
            )
            ledger = await thread.open(
                lambda: open_ledger(config, worker=self.identity, patience=0)
            )
            try:
                presence = Presence(ledger, self.clock, config.ledger.lease)
                await thread.call(presence.join)
                # Alone on a SQLite file (the state lock says so), every other claim is a
                # dead worker's; on a shared ledger, only those whose lease expired.
                adopted = await thread.call(self._adopt_at_start, ledger)
                opened = _Open(thread, presence, await off_loop(_ledger_file, ledger))
                self._open = opened
                opened.transport = self._transport(config)
                opened.dispatcher = self._dispatcher()
                opened.heartbeat = Heartbeat(thread, presence, self._trigger)
                presence.in_flight = lambda: self.dispatcher.in_flight
                self.monitor.serving(self.snapshot)
                try:
                    await self._serve(adopted)
                finally:
                    await opened.transport.close()
                    with contextlib.suppress(ReminderError):
                        await thread.call(presence.leave, patient=False, deadline=10)
            finally:
                await thread.close(Ledger.close)
        finally:
            self.lock.release()
        if self.failure is not None:
            raise self.failure

    def _adopt_at_start(self, ledger: Ledger) -> int:
        return ledger.adopt_claims(self.clock(), only_expired=ledger.shared)

    def _ledger_outage(self, outage: Outage | None) -> None:
        """Told by the ledger's thread when the database stops answering, and when it
        answers again: logged once each way; the loop goes on answering throughout."""
        if outage is not None:
            self.ledger_fault.seen(
                outage.cause, f"the database does not answer ({outage.cause}); waiting for it"
            )
            return
        self.ledger_fault.cleared("answers again; resuming")
        if self._open is not None and not self.stopping.is_set():
            # Sending resumes now, not at the next heartbeat or sweep.
            self._spawn(self.heartbeat.now())

    def _transport(self, config: Config) -> Transport:
        return self.transport_factory(config, self.clock, self._budget)

    def _budget(self, limits: Sequence[tuple[int, float]], hold: float) -> Budget:
        """A transport's sending budget: the server counts messages per account, whichever
        machine sends them, so workers sharing a ledger share one."""
        if self.ledger.shared:
            return SharedRateLimit(self.thread, limits, hold=hold)
        return own_budget(limits, hold)

    def _state_lost(self) -> str | None:
        """Why the state folder no longer is the one this worker locked, if it is not."""
        if reason := self.lock.lost():
            return reason
        if _ledger_file(self.ledger) != self._opened().ledger_identity:
            return f"{self.ledger.path} was removed or replaced"
        return None

    async def _guard_state(self) -> bool:
        """Stop, with a clear error, when the ledger or the lock file is gone or replaced:
        serving on would send without the lock, beside a worker that took a new one.

        The folder is looked at off the loop; one that does not answer in time is not
        taken for lost (the pass that follows says what fails).
        """
        try:
            reason = await off_loop(self._state_lost, deadline=STAT_DEADLINE)
        except ReminderError:
            return True
        if reason is None:
            return True
        if self.failure is None:
            self.failure = StateError(
                f"the state folder changed under the running worker: {reason}; stopped so "
                "that no second worker sends beside this one. Restore the folder (or move "
                "paths.state) and start the service again"
            )
            log.error("%s", self.failure)
        self.stop()
        return False

    async def _serve(self, adopted: int) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
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
            await self._banner(adopted)
            background = [
                asyncio.create_task(self._watch()),
                asyncio.create_task(self._read_bounces()),
                asyncio.create_task(self.heartbeat.run(self.stopping)),
                asyncio.create_task(self.monitor.keep_alive(self.stopping)),
                asyncio.create_task(self.monitor.measure_lag(self.stopping)),
                asyncio.create_task(self.monitor.watch_ledger(self.thread, self.stopping)),
            ]
            await self.wake("start")
            self.started.set()
            await self.stopping.wait()
            for task in background:
                await task
            # Transactions in flight finish; nothing new starts (stopping is set).
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
        await self._stop_line()

    async def _stop_line(self) -> None:
        """Counts that add up: what went out, and what the next start owes."""
        left = "unknown (the ledger cannot be read)"
        with contextlib.suppress(ReminderError, sqlite3.Error):
            owed = await self.thread.call(
                still_owed, self.ledger, self.snapshot, self.clock(), patient=False, deadline=30
            )
            left = str(owed)
        log.info("stopped: sent %d since start; left for the next start: %s", self.sent, left)

    def _dispatcher(self) -> Dispatcher:
        # Helper processes compose large batches when sending is fast enough to wait on
        # composing: not under a rate limit (they would compose minutes ahead of the
        # Date they stamp).
        throttled = bool(self.transport.capabilities.rate_limits)
        helpers = 0 if throttled else self.helpers
        return Dispatcher(
            self.thread,
            self.transport,
            self.clock,
            helpers=helpers,
            lease=self.presence.current_term,
            observer=self.monitor,
        )

    def _on_signal(self, signum: int) -> None:
        self.signal = signum
        self.stop()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the messages in flight")
            self.monitor.stopping()
            self.stopping.set()

    async def _banner(self, adopted: int) -> None:
        snapshot = self.snapshot
        now = self.clock()
        upcoming = await self.dispatcher.wakeups(snapshot, now)
        due = await self.thread.call(owed_count, self.ledger, snapshot, now)
        stopped = await self._count_registrants()
        log.info("reminder worker %s started", self.identity)
        log.info(
            "config %s: cycle %r, %d sessions, %d leads (%s)",
            self.config_path,
            snapshot.config.cycle.id,
            len(snapshot.sessions),
            len(snapshot.config.reminders.leads),
            ", ".join(map(str, snapshot.config.reminders.leads)),
        )
        # Served means mailed: the ledger's suppressions (unsubscribes, bounces) count too.
        served, suppressed = snapshot.roster.served_and_suppressed(stopped)
        log.info(
            "registrants %s: %d served, %d suppressed, %d problems",
            snapshot.roster.source,
            served,
            suppressed,
            len(snapshot.roster.problems),
        )
        log.info("transport: %s", self.transport.description)
        log.info(
            "ledger %s%s",
            self.ledger.path,
            f"; {adopted} claimed by a previous run and not confirmed: at most "
            f"{self.transport.capabilities.in_flight} of them (those in flight) can have "
            "reached the server; all are sent now with their recorded Message-ID"
            if adopted
            else "",
        )
        if due:
            log.info("owed now: %d, sent at once", due)
        log.info(
            "next wake-up: %s",
            "now"
            if due
            else upcoming[0].astimezone(snapshot.config.zone).isoformat()
            if upcoming
            else "none (no reminder left to send)",
        )
        for problem in snapshot.problems:
            log.warning("%s", problem)

    async def _count_registrants(self) -> frozenset[str]:
        """Registrants served, suppressed and declining, as the ledger says now (metrics);
        returns the suppressed addresses."""
        ledger = self.ledger
        stopped, declines = await self.thread.call(
            lambda: (ledger.suppressed_addresses(), ledger.declines()), patient=False
        )
        self.monitor.count_registrants(stopped)
        self.monitor.count_declines(declines)
        return stopped

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
            if not await self._guard_state():
                return
            try:
                await self.poll()
            except ReminderError as exc:
                self.watch_fault.seen(str(exc))
            except Exception:  # a watcher that dies would silently stop reloads
                log.exception("watching the input files failed; trying again")
            else:
                self.watch_fault.cleared()
            sweep = self.snapshot.config.reminders.sweep_interval
            if sweep and loop.time() >= next_sweep + sweep.total_seconds():
                next_sweep = loop.time()
                await self._trigger("sweep")

    async def _read_bounces(self) -> None:
        """Read the bounce mailbox every bounces.interval, when one is configured.

        In a thread with its own ledger connection: IMAP is blocking, and a slow server
        must not hold up deliveries. The next pass honours what it suppressed.
        """
        while not self.stopping.is_set():
            settings = self.snapshot.config.bounces
            wait = settings.interval.total_seconds()
            if settings.configured:
                try:
                    run = await asyncio.to_thread(self._collect_bounces, self.snapshot.config)
                    for line in run.lines() if run.reports else ():
                        log.info("bounces: %s", line)
                    if run.suspicious:
                        log.warning(
                            "bounces: %d report(s) quote a Message-ID of ours without proving "
                            "they answer our mail (listed above); nobody was suppressed for them",
                            len(run.suspicious),
                        )
                except ReminderError as exc:
                    self.bounce_fault.seen(str(exc))
                except Exception:  # a reader that dies would silently stop reading bounces
                    log.exception("reading bounce reports failed; trying again")
                else:
                    self.bounce_fault.cleared("works again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)

    def _collect_bounces(self, config: Config) -> BounceRun:
        with open_ledger(config, worker=self.identity, migrate=False) as ledger:
            return collect(config, ledger, self.clock())

    async def _schedule_wakeups(self, since: datetime) -> bool:
        """One in-memory job per future instant of the plan; rebuilt, never persisted.

        Read from `since`, the start of the pass that just ended: an instant that passed
        during that pass is not left to the sweep; True says one did, and another pass
        is due at once.
        """
        instants = await self.dispatcher.wakeups(self.snapshot, since)
        now = self.clock()
        wanted = {
            f"{WAKEUP_PREFIX}{instant.isoformat()}": instant
            for instant in instants
            if instant > now
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
        return any(instant <= now for instant in instants)

    async def _trigger(self, reason: str) -> None:
        """What the scheduler runs: start a wake-up and return, so a long batch never
        counts as a job still running (APScheduler would skip the next run, noisily)."""
        self._spawn(self.wake(reason))

    def poke(self, reason: str) -> None:
        """A pass as soon as the worker is free: something owed changed outside the plan's
        instants (a registrant declined a session, or came back on it)."""
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
                began = self.clock()
                await self._deliver(reason)
                if self.stopping.is_set():
                    break
                try:
                    passed = await self._schedule_wakeups(began)
                except (ReminderError, sqlite3.Error) as exc:
                    self.pass_fault.seen(
                        f"the next wake-ups cannot be read; the sweep stands in: {exc}"
                    )
                    break
                if passed and not self._paused:
                    self._again, reason = True, "due during the last pass"

    async def _deliver(self, reason: str) -> None:
        """One pass: the place where a pass starts and ends."""
        if self._paused:
            log.debug("deliveries paused: %s", self._paused)
            return
        if not await self._guard_state():
            return
        self.monitor.pass_started()
        try:
            tally = await self.dispatcher.run(self.snapshot, self.stopping)
        except TransportConfigError as exc:
            self._paused = str(exc)
            self.monitor.pass_ended(paused=self._paused)
            log.error(
                "deliveries paused until the configuration is fixed and reloaded "
                "(save config.toml or send SIGHUP); what is owed waits and is sent at "
                "once after the reload: %s",
                exc,
            )
            return
        except (ReminderError, OSError) as exc:
            # Once when it starts, then once a minute with a count: a full disk stays full.
            # A database away is the ledger's own line already.
            if not (isinstance(exc, LedgerUnreachable) and self.thread.outage is not None):
                self.pass_fault.seen(
                    str(exc), f"the wake-up ({reason}) failed, will try again: {exc}"
                )
            self.monitor.pass_ended(failure=str(exc))
            return
        self.monitor.pass_ended()
        self.pass_fault.cleared("succeed again")
        with contextlib.suppress(ReminderError):
            await self._count_registrants()
        self.sent += tally.sent
        if tally:
            log.info("wake-up (%s): %s", reason, tally)
        else:
            log.debug("wake-up (%s): nothing due", reason)

    async def poll(self) -> None:
        """Reload when a watched file changed since the last attempt, good or bad."""
        current = await self._fingerprint()
        if current != self._seen:
            await self.reload("a file changed")

    async def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        config = self.snapshot.config
        return await off_loop(lambda: fingerprint(watched_paths(config)), deadline=STAT_DEADLINE)

    async def reload(self, reason: str) -> None:
        try:
            self._seen = await self._fingerprint()
            fresh = await off_loop(
                load_snapshot, self.config_path, served=True, deadline=RELOAD_DEADLINE
            )
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
            self.monitor.reloaded(None)
            return
        self._seen = fresh.fingerprint
        fresh = self._guard_roster(fresh, reason)
        async with self._busy:
            if transport_settings(fresh.config) != transport_settings(self.snapshot.config) or (
                self._paused
            ):
                await self.transport.close()
                self._opened().transport = self._transport(fresh.config)
                self._opened().dispatcher = self._dispatcher()
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
        del old
        _out_of_collections(fresh, reload=True)
        await self.wake("reload")

    def _guard_roster(self, fresh: Snapshot, reason: str) -> Snapshot:
        """Keep the last good registrants when an export drops too many of them at once.

        Sending SIGHUP with the same file accepts it: the staff have seen the error.
        """
        before = len(self.snapshot.roster.registrants)
        after = len(fresh.roster.registrants)
        limit = fresh.config.registrants.max_drop
        if not before or (after and before - after <= before * limit):
            self._refused_roster = None
            return fresh
        mark = _roster_mark(fresh)
        if reason == "SIGHUP" and mark == self._refused_roster:
            log.warning("registrants: %d of %d removed, accepted by SIGHUP", before - after, before)
            self._refused_roster = None
            return fresh
        self._refused_roster = mark
        log.error(
            "registrants %s: %d of %d registrants would be removed (more than "
            "registrants.max_drop = %g%%); still serving the last good list. If the export "
            "is right, accept it with SIGHUP (systemctl reload) without changing the file, "
            "or raise registrants.max_drop",
            fresh.roster.source,
            before - after,
            before,
            limit * 100,
        )
        return replace(fresh, roster=self.snapshot.roster)


@dataclass
class _Open:
    """What the worker opens once it holds the state lock, and closes when it stops; the
    transport and dispatcher are replaced when a reload changes the transport's settings."""

    thread: LedgerThread[Ledger]
    presence: Presence
    ledger_identity: tuple[int, int] | None  # the SQLite file locked at start
    transport: Transport = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    heartbeat: Heartbeat = field(init=False)


def _ledger_file(ledger: Ledger) -> tuple[int, int] | None:
    """The SQLite file's identity (a shared database has none to watch)."""
    return None if ledger.shared else _identity(Path(ledger.path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _roster_mark(snapshot: Snapshot) -> tuple[str, int, int] | None:
    path = str(snapshot.config.paths.registrants)
    return next((mark for mark in snapshot.fingerprint if mark[0] == path), None)
