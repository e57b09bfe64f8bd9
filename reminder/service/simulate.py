"""A whole cycle in seconds: the real plan, messages and ledger under a virtual clock."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

from ..core.model import Roster
from ..inputs.config import Smtp
from ..mail.outbox import Outbox
from ..mail.smtp import SmtpTransport
from ..mail.smtpsink import SmtpSink
from ..mail.transport import Transport
from ..storage.ledger import Ledger
from .dispatcher import Dispatcher
from .lookahead import wakeup_instants
from .snapshot import Snapshot, load_snapshot


@dataclass(frozen=True)
class Step:
    at: datetime
    session: str
    lead: str
    recipients: int
    late: bool


@dataclass
class Simulation:
    folder: Path
    messages: Path
    steps: list[Step] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    superseded: int = 0
    late: int = 0
    notices: int = 0


class _VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def simulate(
    config_path: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    folder: Path | None = None,
    smtp: bool = False,
    edits: Sequence[tuple[datetime, Path]] = (),
) -> Simulation:
    """Run every wake-up between `start` and `end` against a fresh ledger in `folder`.

    Registrants with a registration time join the export at that instant, as they
    would in real life, so late registrants show the late-not-lost rule at work.
    Each of `edits` replaces the config by another file at its instant (naive instants
    are in the cycle's zone), as staff saving config.toml would: the timeline then
    shows the change notices it causes, after the settling delay.
    """
    snapshot = load_snapshot(config_path)
    zone = snapshot.config.zone
    changes = sorted(
        ((at if at.tzinfo else at.replace(tzinfo=zone)), load_snapshot(path), path)
        for at, path in edits
    )
    folder = folder or snapshot.state_dir / "simulation"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    first = datetime.combine(start, time.min, zone) if start else None
    last = datetime.combine(end, time.max, zone) if end else None
    every = [snapshot, *(s for _, s, _ in changes)]
    instants = {slot.due_at for s in every for slot in s.slots}
    instants |= {at for at, _, _ in changes}
    arrivals = {
        r.registered_at for s in every for r in s.roster.registrants if r.registered_at is not None
    }

    def inside(t: datetime) -> bool:
        return (first is None or t >= first) and (last is None or t <= last)

    window = sorted(t for t in instants | arrivals if inside(t))
    clock = _VirtualClock(window[0] if window else datetime.now(UTC))
    result = Simulation(folder, folder / "outbox" / "new")
    pending = list(changes)
    with Ledger(folder / "ledger.sqlite", worker="simulation") as ledger:
        async with _transport(snapshot, folder, smtp, clock) as (transport, messages):
            result.messages = messages
            dispatcher = Dispatcher(ledger, transport, clock)
            queue = set(window)
            while queue:
                instant = min(queue)
                queue.discard(instant)
                clock.now = instant
                local = instant.astimezone(zone)
                while pending and pending[0][0] <= instant:
                    _, snapshot, path = pending.pop(0)
                    result.steps.append(Step(local, "", f"edit: {path.name}", 0, False))
                current = _as_of(snapshot, instant)
                tally = await dispatcher.run(current)
                result.sent += tally.sent
                result.failed += tally.failed
                result.superseded += tally.superseded
                result.late += tally.late
                result.notices += tally.notices
                result.steps += [
                    Step(local, session, lead, count, late)
                    for (session, lead, late), count in tally.lines.items()
                ]
                # Notices fall due at instants no file names: ask the plan, as the worker does.
                queue |= {t for t in wakeup_instants(ledger, current, instant) if inside(t)}
    return result


def _as_of(snapshot: Snapshot, instant: datetime) -> Snapshot:
    """The export as it stood at `instant`: only those who had registered by then."""
    present = tuple(
        r
        for r in snapshot.roster.registrants
        if r.registered_at is None or r.registered_at <= instant
    )
    roster = Roster(
        snapshot.roster.source, present, snapshot.roster.problems, snapshot.roster.suppressed
    )
    return snapshot.with_roster(roster)


@asynccontextmanager
async def _transport(
    snapshot: Snapshot, folder: Path, smtp: bool, clock: _VirtualClock
) -> AsyncIterator[tuple[Transport, Path]]:
    if not smtp:
        outbox = Outbox(folder / "outbox", durable=False)
        yield outbox, folder / "outbox" / "new"
        return
    with SmtpSink(folder / "received") as sink:
        settings = Smtp(
            host="127.0.0.1",
            port=sink.port,
            security="none",
            connections=4,
            timeout=10,
        )
        transport = SmtpTransport(settings, clock=clock)
        try:
            yield transport, folder / "received"
        finally:
            await transport.close()
