"""Soak: real workers serve a cycle in real time while faults are injected at random.

One worker on a SQLite ledger, or three on a private PostgreSQL server, send a reminder
due every `--spacing` seconds (one session with a lead every `--spacing`: a cycle holds
one session a day) to an aiosmtpd relay for `--minutes`. Every 20-50 s one fault
starts, at random: kill -9 of a worker (restarted after a few seconds), SIGSTOP past
the lease then SIGCONT, a database cut (PostgreSQL), the relay answering 421 to DATA,
451 to RCPT, or hanging before its reply to DATA, the export replaced by a FIFO or by a
half-written copy, an edit of the config. A prober asks every worker's /healthz four
times a second (1 s timeout) throughout.

Reported: lost (a reminder neither sent nor superseded by a later one that was, or one
the ledger records as sent that never arrived: must be 0), second copies per fault, the
longest /healthz silence of a worker that was neither stopped nor dead, and the longest
stall in sending: a time when something was overdue and nothing was sent; then the
longest part of a stall that no fault stopping all sending explains (the relay refusing
or hanging, the database cut, the only worker dead or stopped): the workers' own.

    .venv/bin/python bench/soak.py [--workers 1|3] [--minutes 20] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from common import ROOT

from reminder.mail.smtpsink import SmtpSink, free_port
from tests.support.cluster import PrivatePostgres

PARIS = ZoneInfo("Europe/Paris")
LEASE = 15.0  # seconds: adoption of a dead worker's claims within one lease


@dataclass
class Relay:
    """An aiosmtpd handler whose replies the soak turns bad for a while."""

    mode: str = "ok"  # ok | 421 | 451 | hang
    hang_until: float = 0.0  # time.monotonic() at which a hang ends
    arrivals: list[tuple[float, str, str]] = field(default_factory=list)  # at, rcpt, msgid
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          options: list[str]) -> str:  # fmt: skip
        if self.mode == "451":
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.mode == "421":
            return "421 4.3.2 Service shutting down"
        if self.mode == "hang":  # silent until the hang ends, as a stuck relay is
            await asyncio.sleep(max(0.0, self.hang_until - time.monotonic()))
        await asyncio.sleep(0.02)
        data = bytes(envelope.original_content or envelope.content)
        # Unfolded: a long Message-ID starts on the line after its name.
        head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
        message_id = next(
            (line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
             if line.lower().startswith(b"message-id:")), "")  # fmt: skip
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.arrivals.append((time.time(), recipient, message_id))
        return "250 2.0.0 Ok: queued"


@dataclass
class Worker:
    name: str
    config: Path
    url: str | None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    absent_since: float | None = None  # dead or stopped on purpose: its silence is ours

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}
        env["REMINDER_HTTP__LISTEN"] = f"127.0.0.1:{self.port}"
        env["REMINDER_PATHS__STATE"] = str(self.config.parent / f"state-{self.name}")
        if self.url:
            env["REMINDER_LEDGER__URL"] = self.url
        log = (self.config.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reminder", "run", "--config", str(self.config)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Prober:
    """Asks every worker's /healthz four times a second; keeps each one's longest
    silence while it was neither dead nor stopped on purpose."""

    workers: list[Worker]
    silences: dict[str, float] = field(default_factory=dict)
    worst_at: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last_ok = {w.name: time.monotonic() for w in self.workers}
        while not self.stop.wait(0.25):
            for worker in self.workers:
                now = time.monotonic()
                if worker.absent_since is not None:
                    last_ok[worker.name] = now
                    continue
                try:
                    url = f"http://127.0.0.1:{worker.port}/healthz"
                    with urllib.request.urlopen(url, timeout=1) as answer:
                        answer.read()
                    last_ok[worker.name] = time.monotonic()
                except OSError:
                    silence = time.monotonic() - last_ok[worker.name]
                    if silence > self.silences.get(worker.name, 0.0):
                        self.silences[worker.name] = silence
                        self.worst_at[worker.name] = time.time()


def write_cycle(folder: Path, start: datetime, leads: list[int], people: int) -> Path:
    """One session at `start` with a reminder every `spacing` seconds before it: the
    instants of a whole cycle, in real time (a cycle holds one session a day)."""
    config = folder / "config.toml"
    config.write_text(
        f'''
[cycle]
id = "soak"
title = "Cycle d'endurance"
join_url = "https://zoom.us/j/1"
agenda = "Ordre du jour"
[organizer]
name = "IREV"
[contact]
name = "Morgane Petit"
email = "m.petit@irev.fr"
[[semesters]]
name = "Lointain"
start = 2030-01-01
end = 2030-01-31
[[sessions]]
date = {start:%Y-%m-%d}
extra = true
start = "{start:%H:%M:%S}"
end = "{start + timedelta(minutes=1):%H:%M:%S}"
[reminders]
leads = [{", ".join(f'"{lead}s"' for lead in leads)}]
sweep_interval = "30s"
[sender]
address = "contact@irev.fr"
[smtp]
host = "127.0.0.1"
port = {{port}}
security = "none"
connections = 4
timeout = 10
[ledger]
lease = "{LEASE:g}s"
''',
        encoding="utf-8",
    )
    lines = ["Nom;Prénom;Courriel;Séances"]
    lines += [f"Nom{n};Prénom{n};elu{n}@example.org;toutes" for n in range(people)]
    (folder / "registrants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "suppression.txt").write_text("", encoding="utf-8")
    subprocess.run(["cp", "-r", str(ROOT / "templates"), str(folder / "templates")], check=True)
    return config


@dataclass
class Faults:
    """Injects one fault at a time and remembers when each began."""

    workers: list[Worker]
    relay: Relay
    config: Path
    database: PrivatePostgres | None
    rng: random.Random
    log: list[tuple[float, str]] = field(default_factory=list)
    windows: list[tuple[float, float, str]] = field(default_factory=list)  # begun, ended, kind

    def kinds(self) -> list[str]:
        kinds = ["kill9", "sigstop", "smtp421", "smtp451", "smtphang", "fifo", "half", "edit"]
        return kinds + (["dbcut"] if self.database else [])

    def inject(self, kind: str) -> None:
        begun = time.time()
        self.log.append((begun, kind))
        print(f"{datetime.now(PARIS):%H:%M:%S} fault: {kind}", flush=True)
        getattr(self, kind)()  # returns when the fault is over
        self.windows.append((begun, time.time(), kind))

    def stopping(self) -> list[tuple[float, float]]:
        """When nothing could be sent, whatever the workers did: the relay refusing or
        hanging, the database away, and the only worker dead or stopped."""
        kinds = {"smtp421", "smtp451", "smtphang", "dbcut"}
        if len(self.workers) == 1:
            kinds |= {"kill9", "sigstop"}
        return [(begun, ended) for begun, ended, kind in self.windows if kind in kinds]

    def kill9(self) -> None:
        worker = self.rng.choice(self.workers)
        worker.absent_since = time.monotonic()
        worker.signal(signal.SIGKILL)
        assert worker.process is not None
        worker.process.wait()
        time.sleep(self.rng.uniform(2, 5))
        worker.start()
        self._until_healthy(worker)

    def sigstop(self) -> None:
        worker = self.rng.choice(self.workers)
        worker.absent_since = time.monotonic()
        worker.signal(signal.SIGSTOP)
        time.sleep(LEASE + 5)
        worker.signal(signal.SIGCONT)
        worker.absent_since = None

    def dbcut(self) -> None:
        assert self.database is not None
        self.database.stop()
        time.sleep(self.rng.uniform(10, 30))
        self.database.start()

    def _relay(self, mode: str, seconds: float) -> None:
        self.relay.hang_until = time.monotonic() + seconds
        self.relay.mode = mode
        time.sleep(seconds)
        self.relay.mode = "ok"

    def smtp421(self) -> None:
        self._relay("421", 10)

    def smtp451(self) -> None:
        self._relay("451", 10)

    def smtphang(self) -> None:
        self._relay("hang", 20)

    def fifo(self) -> None:
        export = self.config.parent / "registrants.csv"
        aside = export.with_suffix(".aside")
        export.rename(aside)
        os.mkfifo(export)
        time.sleep(15)
        # A reader blocked on the pipe (as a worker that opens it would be) gets EOF.
        with contextlib.suppress(OSError):
            os.close(os.open(export, os.O_WRONLY | os.O_NONBLOCK))
        export.unlink()
        aside.rename(export)

    def half(self) -> None:
        export = self.config.parent / "registrants.csv"
        whole = export.read_bytes()
        export.write_bytes(whole[: len(whole) // 2])
        time.sleep(5)
        export.write_bytes(whole)

    def edit(self) -> None:
        text = self.config.read_text(encoding="utf-8")
        n = self.rng.randrange(1000)
        self.config.write_text(
            text.replace('agenda = "Ordre du jour', f'agenda = "Ordre du jour {n}', 1),
            encoding="utf-8",
        )

    def _until_healthy(self, worker: Worker, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{worker.port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    answer.read()
                break
            except OSError:
                time.sleep(0.2)
        worker.absent_since = None

    def during(self, instant: float) -> str:
        """The fault under way (or last begun) at `instant`."""
        begun = [kind for at, kind in self.log if at <= instant]
        return begun[-1] if begun else "none"


def ledger_rows(config: Path, url: str | None, workers: list[Worker]) -> list[tuple[Any, ...]]:
    query = (
        "SELECT session, lead, recipient, status, due_at, sent_at, message_id, last_reply "
        "FROM deliveries WHERE kind = 'reminder'"
    )
    if url:
        with psycopg.connect(url) as db:
            return list(db.execute(query))
    path = config.parent / f"state-{workers[0].name}" / "ledger.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.execute(query))


def stalls(rows: list[tuple[Any, ...]]) -> list[tuple[float, float]]:
    """The times during which something was overdue and nothing was sent."""
    events = []
    for _, _, _, status, due_at, sent_at, *_ in rows:
        if status == "sent":
            events.append((datetime.fromisoformat(due_at).timestamp(), 1))
            events.append((datetime.fromisoformat(sent_at).timestamp(), -1))
    events.sort()
    found, overdue, last = [], 0, 0.0
    for at, change in events:
        if overdue > 0 and at > last:
            found.append((last, at))
        if change < 0 or overdue == 0:
            last = at
        overdue += change
    return found


def outside(stall: tuple[float, float], windows: list[tuple[float, float]]) -> float:
    """The longest part of `stall` outside every window: the workers' own share of it."""
    begun, ended = stall
    for start, end in sorted(windows):
        if end <= begun or start >= ended:
            continue
        if start > begun:
            # The part before this window is the workers' own; so may be what follows.
            return max(start - begun, outside((end, ended), windows))
        begun = max(begun, end)
    return max(0.0, ended - begun)


def soak(workers_count: int, minutes: float, seed: int, people: int, spacing: int) -> None:
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="reminder-soak-"))
    relay = Relay()
    count = max(1, int(minutes * 60 // spacing))
    # The first reminder falls due a minute after the start, the last `spacing` before
    # the session.
    start = (datetime.now(PARIS) + timedelta(seconds=60 + count * spacing)).replace(microsecond=0)
    leads = [spacing * (count - k) for k in range(count)]
    config = write_cycle(folder, start, leads, people)
    database = PrivatePostgres() if workers_count > 1 else None
    with SmtpSink(handler=relay) as sink:
        config.write_text(config.read_text().replace("{port}", str(sink.port)))
        if database:
            database.start()
        url = database.url if database else None
        workers = [Worker(f"w{n}", config, url) for n in range(workers_count)]
        for worker in workers:
            worker.start()
        prober = Prober(workers)
        probing = threading.Thread(target=prober.run, daemon=True)
        faults = Faults(workers, relay, config, database, rng)
        end = start
        try:
            time.sleep(10)  # every worker up before the prober counts silences
            probing.start()
            while datetime.now(PARIS) < end - timedelta(seconds=60):
                time.sleep(rng.uniform(20, 50))
                faults.inject(rng.choice(faults.kinds()))
            while datetime.now(PARIS) < end:
                time.sleep(1)
            time.sleep(5)
            rows = ledger_rows(config, url, workers)
        finally:
            prober.stop.set()
            for worker in workers:
                worker.stop()
            if database:
                database.remove()
    report(rows, relay, faults, prober, len(leads), people, workers_count, minutes)


def report(rows: list[tuple[Any, ...]], relay: Relay, faults: Faults, prober: Prober,
           leads: int, people: int, workers: int, minutes: float) -> None:  # fmt: skip
    received: Counter[str] = Counter(message_id for _, _, message_id in relay.arrivals)
    # Lost: a reminder neither sent nor superseded by a later one that was, or one the
    # ledger records as sent that never arrived.
    sent_due: dict[str, list[str]] = {}
    for _, _, recipient, status, due_at, *_ in rows:
        if status == "sent":
            sent_due.setdefault(recipient, []).append(due_at)
    unsent = [
        (status, reply.split(":")[0])
        for _, _, recipient, status, due_at, _, _, reply in rows
        if status != "sent"
        and not (status == "superseded" and any(d > due_at for d in sent_due.get(recipient, [])))
    ]
    missing = leads * people - len(rows)
    never_arrived = sum(1 for row in rows if row[3] == "sent" and row[6] not in received)
    duplicates: Counter[str] = Counter()
    seen: set[str] = set()
    for at, _, message_id in sorted(relay.arrivals):
        if message_id in seen:
            duplicates[faults.during(at)] += 1
        seen.add(message_id)
    found = stalls(rows)
    stall, stall_end = max(((b - a, b) for a, b in found), default=(0.0, 0.0))
    stopping = faults.stopping()
    own, own_end = max(((outside(s, stopping), s[1]) for s in found), default=(0.0, 0.0))
    kinds = Counter(kind for _, kind in faults.log)
    print(f"\nsoak: {workers} worker(s), {minutes:g} min, {leads} reminders x {people} "
          f"registrants; faults: {dict(kinds)}")  # fmt: skip
    print(f"messages received {len(relay.arrivals)} ({len(received)} distinct), "
          f"reminders in the ledger {len(rows)}")  # fmt: skip
    print(f"lost: {len(unsent) + missing + never_arrived} ({missing} never claimed, "
          f"{len(unsent)} neither sent nor superseded, {never_arrived} recorded sent but never "
          f"received); not sent, by status and reason: {dict(Counter(unsent))}")  # fmt: skip
    print(f"second copies: {sum(duplicates.values())}, by the fault under way: {dict(duplicates)}")
    for worker in prober.workers:
        silence = prober.silences.get(worker.name, 0.0)
        during = faults.during(prober.worst_at[worker.name]) if silence else "-"
        print(f"longest /healthz silence of {worker.name}: {silence:.1f} s (during {during})")
    print(f"longest stall in sending: {stall:.1f} s (during {faults.during(stall_end)}); "
          f"lease {LEASE:g} s")  # fmt: skip
    print(f"longest stall outside a fault that stops all sending (the relay refusing or "
          f"hanging, the database cut, the only worker dead or stopped): {own:.1f} s "
          f"(ending during {faults.during(own_end)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, choices=[1, 3], default=1)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--registrants", type=int, default=200)
    parser.add_argument("--spacing", type=int, default=60, help="seconds between reminders")
    args = parser.parse_args()
    soak(args.workers, args.minutes, args.seed, args.registrants, args.spacing)


if __name__ == "__main__":
    main()
