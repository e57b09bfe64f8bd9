"""Scale: 10,000 / 100,000 / 1,000,000 registrants, a ledger already holding 2x rows.

For each size, as whole processes: `reminder plan`, `check` and `status` (wall time and
peak RSS), then a real `reminder run` against Postfix's smtp-sink (4 connections), a
1-hour reminder falling due for everybody at once:

- idle RSS of the worker just before the due instant, and its peak during the batch,
  alone and with its helper processes;
- how long after the due instant the first message was accepted (the ledger's first
  `sent_at`, written after the server's 250);
- the batch's rate, from the first message to the last (or to the end of the
  observation window, `--window` seconds after the due instant, for large sizes).

The ledger's 2x rows are two reminders (7d, 1d) of an earlier session, settled, for
every registrant: rows the ledger's readers must step over, not notices owed.

After each batch, the transport alone (`bench/transport.py`'s (c): 4 connections, a
SQLite ledger, a commit per result) sends `--transport-messages` composed messages to
the same kind of sink: the rate the batch is compared with, measured under the same
load. `--no-commands` leaves out `check`, `plan` and `status`; `--no-batch` leaves out
the batch and the transport alone: the commands, then the idle RSS of a worker whose
next reminder is a day away, read once it has logged its next wake-up.

    .venv/bin/python bench/scale.py [--sizes 10000 100000 1000000] [--rounds 3]
                                    [--window 60] [--transport-messages 10000]
                                    [--no-commands | --no-batch]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import compose_many, postfix_sink, sample_project
from transport import ours
from worker import write_project

from reminder.storage.ledger import Ledger, stamp

PARIS = ZoneInfo("Europe/Paris")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}


def fill_ledger(config: Path, registrants: int) -> None:
    """2 x registrants settled reminders of a session held a month ago."""
    path = config.parent / "state" / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    Ledger(path, worker="bench").close()  # the schema, as the worker makes it
    earlier = datetime.now(PARIS).replace(microsecond=0) - timedelta(days=30)
    at = stamp(earlier)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO deliveries (session, kind, lead, recipient, status, message_id, "
            "due_at, not_after, attempts, sent_at, updated_at, session_id) "
            "VALUES (?, 'reminder', ?, ?, 'sent', ?, ?, ?, 1, ?, ?, ?)",
            (
                (
                    earlier.isoformat(timespec="minutes"),
                    lead,
                    f"elu{n}@example.org",
                    f"<{lead}.{n}@bench>",
                    at,
                    at,
                    at,
                    at,
                    earlier.date().isoformat(),
                )
                for lead in ("7d", "1d")
                for n in range(registrants)
            ),
        )


def timed(*command: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit status of one whole process.

    The peak is the process's own high-water mark (VmHWM), read while it runs: the
    rusage of a child counts the parent's size at fork, this script's included.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "reminder", *command],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, rss_mb(process.pid, "VmHWM:"))
        time.sleep(0.01)
    return time.perf_counter() - started, peak, process.returncode


def rss_mb(pid: int, field: str = "VmRSS:") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def sent_so_far(path: Path, session: str) -> tuple[int, str | None, str | None]:
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(
                "SELECT count(*), min(sent_at), max(sent_at) FROM deliveries "
                "WHERE status = 'sent' AND session = ?",
                (session,),
            ).fetchone()  # type: ignore[no-any-return]
    except sqlite3.OperationalError:
        return 0, None, None


def transport_alone(messages: int) -> float:
    """Messages per second of the transport alone, ledger included, on smtp-sink."""
    _, composed = compose_many(messages)
    with postfix_sink() as port:
        started = time.perf_counter()
        ours(4)(port, composed)
        return messages / (time.perf_counter() - started)


def idle_only(config: Path, port: int, registrants: int) -> float:
    """RSS in MB of a worker at rest: started, everything loaded, nothing due for a day."""
    write_project(config, port, datetime.now(PARIS) + timedelta(days=1), registrants)
    log_path = config.parent / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "reminder", "run", "--config", str(config)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 120 + 120 * registrants / 1_000_000
            while b"next wake-up" not in log_path.read_bytes():
                if worker.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the worker did not come to rest; see {log_path}")
                time.sleep(0.25)
            time.sleep(2)  # the rest of the start (HTTP server, first heartbeat) settles
            samples = []
            for _ in range(8):
                samples.append(rss_mb(worker.pid))
                time.sleep(0.25)
            return max(samples)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)


def one_round(
    registrants: int,
    window: float,
    commands: bool = True,
    transport: int = 10_000,
    batch: bool = True,
) -> dict[str, float]:
    config = sample_project()
    result: dict[str, float] = {}
    with postfix_sink() as port:
        # The commands first, against a session a day away; then the worker, given room
        # to start and load everything before the due instant.
        later = (datetime.now(PARIS) + timedelta(days=1)).replace(microsecond=0)
        write_project(config, port, later, registrants)
        fill_ledger(config, registrants)
        now = (later - timedelta(hours=1, seconds=1)).isoformat()
        for name, command in (
            (
                ("check", ("check", "--now", now)),
                ("plan", ("plan", "--now", now)),
                ("status", ("status", "--now", now)),
            )
            if commands
            else ()
        ):
            seconds, peak, _ = timed("--config", str(config), *command)
            result[f"{name} s"], result[f"{name} MB"] = seconds, peak
        if not batch:
            result["idle MB"] = idle_only(config, port, registrants)
            return result
        margin = 12 + 45 * registrants / 1_000_000
        start = (datetime.now(PARIS) + timedelta(hours=1, seconds=margin)).replace(microsecond=0)
        due = start - timedelta(hours=1)
        write_project(config, port, start, registrants)
        log = (config.parent / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "reminder", "run", "--config", str(config)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        ledger = config.parent / "state" / "ledger.sqlite"
        session = start.isoformat(timespec="minutes")
        idle = peak_worker = peak_total = 0.0
        helpers = 0
        try:
            while datetime.now(PARIS) < due - timedelta(seconds=0.5):
                if worker.poll() is not None:
                    sys.exit("the worker stopped before the due instant")
                idle = rss_mb(worker.pid)
                time.sleep(0.25)
            end = due + timedelta(seconds=window)
            count, first, last = 0, None, None
            next_look = 0.0
            while datetime.now(PARIS) < end and count < registrants:
                own = rss_mb(worker.pid)
                others = descendants(worker.pid)
                helpers = max(helpers, len(others))
                peak_worker = max(peak_worker, own)
                peak_total = max(peak_total, own + sum(rss_mb(p) for p in others))
                if time.monotonic() >= next_look:
                    count, first, last = sent_so_far(ledger, session)
                    next_look = time.monotonic() + 1.0
                time.sleep(0.1)
            count, first, last = sent_so_far(ledger, session)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            log.close()
    print(f"worker log: {log.name}", file=sys.stderr)
    if not (count and first and last):
        sys.exit("nothing was sent")
    first_at, last_at = datetime.fromisoformat(first), datetime.fromisoformat(last)
    result["first s"] = (first_at - due.astimezone(UTC)).total_seconds()
    result["sent"] = count
    result["rate"] = (count - 1) / max((last_at - first_at).total_seconds(), 1e-3)
    result["idle MB"], result["peak MB"], result["peak+helpers MB"] = (
        idle,
        peak_worker,
        peak_total,
    )
    result["helpers"] = helpers
    result["transport"] = transport_alone(transport) if transport else 0.0
    result["share"] = result["rate"] / result["transport"] * 100 if transport else 0.0
    return result


def median_range(values: list[float], digits: int) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=60, help="seconds of batch observed")
    parser.add_argument("--transport-messages", type=int, default=10_000, help="0: not measured")
    parser.add_argument("--no-commands", action="store_true", help="only the worker's batch")
    parser.add_argument(
        "--no-batch", action="store_true", help="only the commands and the idle worker's RSS"
    )
    args = parser.parse_args()
    if args.no_batch and args.no_commands:
        parser.error("--no-batch and --no-commands leave nothing to measure")
    results: dict[int, list[dict[str, float]]] = {size: [] for size in args.sizes}
    for number in range(args.rounds):  # interleaved: a busy moment touches every size
        for size in args.sizes:
            found = one_round(
                size,
                args.window,
                not args.no_commands,
                args.transport_messages,
                batch=not args.no_batch,
            )
            print(f"round {number + 1}, {size:,}: {found}", flush=True)
            results[size].append(found)
    if args.no_batch:
        print("\n| registrants (ledger 2×) | worker idle RSS | `check` | `plan` | `status` |")
        print("| --- | --- | --- | --- | --- |")
        for size, rounds in results.items():
            column = {key: [r[key] for r in rounds] for key in rounds[0]}
            print(
                f"| {size:,} | {median_range(column['idle MB'], 0)} MB "
                + "".join(
                    f"| {median_range(column[f'{name} s'], 2)} s, "
                    f"{median_range(column[f'{name} MB'], 0)} MB "
                    for name in ("check", "plan", "status")
                )
                + "|"
            )
        return
    print(
        "\n| registrants (ledger 2×) | first message after due | batch rate (messages/s) "
        "| transport alone | batch / transport | worker idle RSS | worker peak in the batch "
        "| with helpers | `check` | `plan` | `status` |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, rounds in results.items():
        column = {key: [r[key] for r in rounds] for key in rounds[0]}
        observed = min(column["sent"])
        note = "" if observed >= size else f", first {int(observed):,} sent"
        print(
            f"| {size:,} | {median_range(column['first s'], 2)} s "
            f"| {median_range(column['rate'], 0)}{note} "
            f"| {median_range(column['transport'], 0)} "
            f"| {median_range(column['share'], 0)}% "
            f"| {median_range(column['idle MB'], 0)} MB "
            f"| {median_range(column['peak MB'], 0)} MB "
            f"| {median_range(column['peak+helpers MB'], 0)} MB "
            f"({int(max(column['helpers']))} helpers) "
            + "".join(
                f"| {median_range(column[f'{name} s'], 2)} s, "
                f"{median_range(column[f'{name} MB'], 0)} MB "
                if f"{name} s" in column
                else "| — "
                for name in ("check", "plan", "status")
            )
            + "|"
        )


if __name__ == "__main__":
    main()
