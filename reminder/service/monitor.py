"""What the worker tells the outside: readiness, Prometheus metrics, systemd's status line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.declines import Declines, declined
from ..core.errors import LedgerError
from ..core.mailing import DeliveryKey, MailKind
from ..core.model import Roster
from ..storage.ledger import Ledger
from ..storage.thread import LedgerThread
from .metrics import Metrics
from .sdnotify import Notifier
from .snapshot import Snapshot

if TYPE_CHECKING:
    from prometheus_client import Counter

T = TypeVar("T")

DEFAULT_SWEEP = timedelta(minutes=5)  # readiness' grace when the sweep is switched off
STARTING_PING = 10.0  # seconds between start-timeout extensions when there is no watchdog
PROBE_EVERY = 1.0  # seconds between two probes of the ledger, whatever /readyz is asked
# A ledger call that has not returned after this long hangs (a frozen database server,
# a hung disk): readiness says so, and the watchdog is no longer fed.
STUCK_AFTER = 30.0
LAG_EVERY = 0.25  # seconds between two ticks that time the event loop


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]

    def body(self) -> dict[str, object]:
        return {"status": "ready" if self.ready else "not ready", "reasons": list(self.reasons)}


class Monitor:
    """Observes passes and outcomes; answers readiness; feeds metrics and systemd.

    The worker calls pass_started / pass_ended / scheduled / reloaded; the dispatcher
    calls in_flight / settled for each message. Nothing here sends mail or writes the
    ledger.
    """

    def __init__(self, clock: Callable[[], datetime], notifier: Notifier | None = None) -> None:
        self.clock = clock
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.thread: LedgerThread[Ledger] | None = None
        self.snapshot: Snapshot | None = None
        self.first_pass_done = False
        self.running_since: datetime | None = None  # the pass in progress began then
        self.covered: datetime | None = None  # everything due by then was served
        self.progress: datetime | None = None  # the last outcome (or pass start)
        self.failure: str | None = None  # why the last pass ended early
        self.paused: str | None = None
        self.wakeups: tuple[datetime, ...] = ()
        self._probe: str | None = "the ledger is not open yet"
        self.stuck_after = STUCK_AFTER
        self._announced = False  # READY=1 sent
        self._counters: dict[tuple[str, str, str], Counter] = {}  # deliveries, by labels
        # The registrants behind the addresses the ledger stops or that declined, found
        # in one pass over the roster (a million at most) only when either changed: the
        # worker counts them after every pass, and they seldom change.
        self._found: dict[str, tuple[Roster, frozenset[str], Any]] = {}

    # -- hooks the worker calls -----------------------------------------------------------

    def serving(self, snapshot: Snapshot) -> None:
        """A snapshot is in service (at start and after each good reload)."""
        self.snapshot = snapshot
        self.metrics.declare_leads(MailKind.REMINDER, map(str, snapshot.config.reminders.leads))

    def reloaded(self, snapshot: Snapshot | None) -> None:
        self.metrics.reloads.labels("ok" if snapshot else "refused").inc()
        if snapshot is not None:
            self.serving(snapshot)

    def pass_started(self) -> None:
        self.running_since = self.progress = self.clock()

    def pass_ended(self, *, failure: str | None = None, paused: str | None = None) -> None:
        """A pass is over: normally, failed (`failure`), or refused by the transport (`paused`)."""
        if failure is None and paused is None and self.running_since is not None:
            self.covered = self.running_since
        self.running_since = None
        self.failure = failure
        self.set_paused(paused)
        self.metrics.in_flight.set(0)  # anything not reported was abandoned with the pass
        self.first_pass_done = True

    def set_paused(self, reason: str | None) -> None:
        self.paused = reason
        self.metrics.paused.set(1 if reason else 0)

    def scheduled(self, wakeups: Sequence[datetime]) -> None:
        self.wakeups = tuple(wakeups)
        self.metrics.next_wakeup.set(wakeups[0].timestamp() if wakeups else float("nan"))
        if self.first_pass_done and not self._announced:
            # After the first pass, whatever it came to: a paused transport says so in
            # STATUS rather than leaving systemd to time the start out and restart.
            self._announced = True
            self.notifier.notify(READY="1", STATUS=self.status_line())
        elif self.first_pass_done:
            self.notifier.notify(STATUS=self.status_line())

    def stopping(self) -> None:
        self.notifier.notify(STOPPING="1", STATUS="stopping: finishing the messages in flight")

    def making_progress(self) -> bool:
        """The loop runs (this is asked on it) and no ledger call hangs: a database away
        answers at once with an error, and the worker waits for it without a restart."""
        return self.thread is None or self.thread.stuck_for() < self.stuck_after

    async def keep_alive(self, stopping: asyncio.Event) -> None:
        """WATCHDOG=1 from the loop itself, while the worker makes progress: a loop that
        stops answering, or a ledger call that hangs, stops the pings and systemd restarts
        the service; a database that refuses (an outage) does not.

        Until READY, each ping also extends systemd's start timeout: a first pass may be
        a batch of thousands, and must not be killed for it while the loop answers.
        """
        if not self.notifier.enabled:
            return
        interval = self.notifier.ping_interval or STARTING_PING
        while not stopping.is_set():
            alive = self.making_progress()
            fields = {"WATCHDOG": "1"} if self.notifier.ping_interval and alive else {}
            if not self._announced:
                fields["EXTEND_TIMEOUT_USEC"] = str(int(3 * interval * 1_000_000))
            if fields:
                self.notifier.notify(**fields)
            elif self._announced and not self.notifier.ping_interval:
                return  # ready, and no watchdog: nothing more to say
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)

    # -- the dispatcher's observer --------------------------------------------------------

    def in_flight(self, change: int) -> None:
        self.metrics.in_flight.inc(change)

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None:
        now = self.clock()
        self.progress = now
        # A notice has no lead, only a version, which as a label would grow without bound:
        # notices are told apart by their kind alone.
        counter = self._counters.get((key.kind, key.lead, outcome))
        if counter is None:  # labels() costs more than the increment: once per kind of outcome
            counter = self._counters[key.kind, key.lead, outcome] = self.metrics.deliveries.labels(
                key.kind, key.lead, outcome
            )
        counter.inc()
        if outcome in ("sent", "late"):
            self.metrics.last_delivery.set(now.timestamp())
            if due_at is not None:
                self.metrics.due_to_accept.observe(max(0.0, (now - due_at).total_seconds()))

    # -- what the outside reads -----------------------------------------------------------

    async def measure_lag(self, stopping: asyncio.Event) -> None:
        """Time the loop: a tick asked for every LAG_EVERY seconds, and how late it came.

        Anything that blocks the loop (a database, a file, a long computation) shows here
        before it shows anywhere else.
        """
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            asked = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=LAG_EVERY)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - asked - LAG_EVERY))

    async def watch_ledger(self, thread: LedgerThread[Ledger], stopping: asyncio.Event) -> None:
        """Probe the ledger every PROBE_EVERY seconds, in its thread: readiness reads the
        last answer, so /readyz never waits on the database."""
        self.thread = thread
        while not stopping.is_set():
            try:
                self._probe = await thread.call(
                    thread.ledger.write_problem, patient=False, probe=True
                )
            except LedgerError as exc:  # unreachable: the thread's outage says why
                self._probe = getattr(exc, "cause", "") or str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=PROBE_EVERY)

    def count_registrants(self, stopped: frozenset[str]) -> None:
        """Registrants served and suppressed, given the ledger's suppressed addresses."""
        if self.snapshot is None:
            return
        roster = self.snapshot.roster
        served, suppressed = self._once("served", roster, stopped, roster.served_and_suppressed)
        gauge = self.metrics.registrants
        gauge.labels("served").set(served)
        gauge.labels("suppressed").set(suppressed)
        gauge.labels("problems").set(len(roster.problems))

    def count_declines(self, declines: Declines) -> None:
        """Per session still to come, how many registrants' declines stand (no address:
        one series a session, which the cycle has a dozen of), given the ledger's."""
        if self.snapshot is None:
            return
        roster = self.snapshot.roster
        people = (
            self._once("declined", roster, frozenset(declines.recipients()), roster.having)
            if declines
            else {}
        )
        gauge = self.metrics.declines
        gauge.clear()  # a session gone from the config leaves no series behind
        now = self.clock()
        for session in self.snapshot.sessions:
            if now < session.end and not session.cancelled:
                gauge.labels(session.id).set(len(declined(session, people, declines)))

    def _once(
        self, what: str, roster: Roster, keys: frozenset[str], find: Callable[[frozenset[str]], T]
    ) -> T:
        """`find(keys)`, or its answer of the last call, when the roster and keys are those."""
        found = self._found.get(what)
        if found is None or found[0] is not roster or found[1] != keys:
            found = self._found[what] = (roster, keys, find(keys))
        answer: T = found[2]
        return answer

    def sweep(self) -> timedelta:
        if self.snapshot is None:
            return DEFAULT_SWEEP
        return self.snapshot.config.reminders.sweep_interval or DEFAULT_SWEEP

    def status_line(self) -> str:
        """systemd's STATUS=: what `systemctl status reminder` shows under the unit."""
        if self.paused:
            return f"deliveries paused, fix the configuration and reload: {self.paused}"[:200]
        zone = self.snapshot.config.zone if self.snapshot else None
        if not self.wakeups:
            return "ready; no reminder left to send"
        return f"ready; next wake-up {self.wakeups[0].astimezone(zone):%Y-%m-%d %H:%M %Z}"

    def ledger_problem(self) -> str | None:
        """Why the ledger cannot be written now, from what its thread last said."""
        thread = self.thread
        if thread is not None:
            if (stuck := thread.stuck_for()) >= self.stuck_after:
                return (
                    f"the ledger has not answered for {stuck:.0f} s (a call hangs: a frozen "
                    "database server, or a hung disk)"
                )
            if thread.outage is not None:
                since = datetime.fromtimestamp(thread.outage.since, UTC)
                return f"ledger unreachable since {since:%Y-%m-%dT%H:%M:%SZ}: {thread.outage.cause}"
        return None if self._probe is None else f"the ledger is not writable: {self._probe}"

    def readiness(self) -> Readiness:
        """Ready: first pass done, ledger writable, not paused, last pass finished, and no
        due instant left unserved for longer than one sweep interval."""
        now = self.clock()
        reasons: list[str] = []
        if not self.first_pass_done:
            reasons.append("starting: the first pass has not finished")
        if (problem := self.ledger_problem()) is not None:
            reasons.append(problem)
        if self.paused:
            reasons.append(f"deliveries paused: {self.paused}"[:300])
        if self.failure:
            reasons.append(f"the last pass failed: {self.failure}"[:300])
        sweep = self.sweep()
        if self.running_since is not None and self.progress and now - self.progress > sweep:
            reasons.append(
                f"a pass started at {self.running_since:%Y-%m-%dT%H:%M:%SZ} has settled "
                f"nothing for more than {sweep}"
            )
        covered = self.running_since or self.covered
        unserved = [w for w in self.wakeups if covered is None or w > covered]
        if self.first_pass_done and unserved and unserved[0] <= now - sweep:
            reasons.append(
                f"a due instant ({unserved[0]:%Y-%m-%dT%H:%M:%SZ}) is unserved for more "
                f"than the sweep interval ({sweep})"
            )
        return Readiness(not reasons, tuple(reasons))
