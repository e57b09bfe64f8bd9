"""Recomputing the plan for 100,000 registrants x 10 sessions x 3 leads. Target: under 2 s.

What a reload or a sweep does, minus reading the files: the sessions and their
reminders, who attends what, what the ledger already holds (a real SQLite file with
the 7-day and 1-day reminders of one session recorded for everybody), what is owed
now (the 1-hour reminder for all 100,000), and the next wake-ups.

Then the 100,000 due reminders are claimed in one call, then again (under another lead)
in chunks of 256, as a worker on SQLite claims them, and on PostgreSQL in steps of 32,
then in the steps a worker on a shared ledger takes (`ClaimStep`): when its connections
keep up (a fast sink: 32 doubling to 1,024) and at the pace of a 50 ms relay.

With --ledger URL the same runs on a fresh schema of that PostgreSQL database too, after
the SQLite file, and the two are printed side by side.

    .venv/bin/python bench/plan.py [--registrants N] [--runs R] [--ledger URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from common import postgres_schema, registrant, sample_project, summary

from reminder.core.mailing import DeliveryState
from reminder.core.model import Roster
from reminder.core.plan import due_batch, next_wakeups, reminder_slots
from reminder.core.planned import ClaimStep
from reminder.inputs.config import load_config
from reminder.inputs.schedule import load_sessions
from reminder.service.delivery import (
    CLAIM_CHUNK,
    CLAIM_SECONDS,
    SHARED_CLAIM_MOST,
    SHARED_CLAIM_STEP,
)
from reminder.storage.ledger import Claim, Ledger, Outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ledger", default="", help="a postgresql:// URL (default: SQLite)")
    args = parser.parse_args()
    figures = []
    for url in ("", args.ledger) if args.ledger else ("",):
        with ledger_target(url) as target:
            figures.append(measure(args, target))
    if len(figures) == 2:
        print("\nside by side (PostgreSQL / SQLite):")
        sqlite, postgres = figures
        for label, seconds in postgres.items():
            against = sqlite.get(label)
            if against is not None:
                print(f"  {label}: {seconds:.2f} s / {against:.2f} s = {seconds / against:.2f}x")


@contextmanager
def ledger_target(url: str) -> Iterator[str | Path]:
    if not url:
        yield Path(tempfile.mkdtemp()) / "ledger.sqlite"
        return
    with postgres_schema(url) as schema:
        yield schema


def measure(args: argparse.Namespace, target: str | Path) -> dict[str, float]:
    """Print the figures of one ledger; return the means by what they measure."""
    config_path = sample_project()
    # Ten sessions: the nine of 2023 and an extra one.
    config_path.write_text(
        config_path.read_text(encoding="utf-8")
        + ("\n[[sessions]]\ndate = 2023-12-20\nextra = true\n"),
        encoding="utf-8",
    )
    config = load_config(config_path)
    people = tuple(registrant(n) for n in range(args.registrants))
    sessions, _ = load_sessions(config)
    leads = config.reminders.leads
    assert (len(sessions), len(leads)) == (10, 3)
    march = reminder_slots(sessions, leads)[:3]
    now = march[2].due_at + timedelta(seconds=5)  # the 1h reminder of 1 March is due

    ledger = Ledger(target, worker="bench")
    for slot in march[:2]:
        claims = [
            Claim(slot.delivery_key(p.key), f"<{n}@x>", slot.due_at, slot.session.start)
            for n, p in enumerate(people)
        ]
        ledger.claim(claims, now)
        ledger.record([Outcome(c.key, DeliveryState.SENT, "250", now) for c in claims], now)

    pure, total = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        sessions, _ = load_sessions(config)
        slots = reminder_slots(sessions, leads)
        fresh = Roster("bench", people)  # attendance is recomputed, not cached
        computed = time.perf_counter()
        view = ledger.view(
            {s.session.appointment for s in slots if s.due_at <= now < s.session.start}
        )
        viewed = time.perf_counter()
        batch = due_batch(now, slots, fresh, view)
        upcoming = next_wakeups(now, slots, view)
        finished = time.perf_counter()
        assert len(batch.sends) == args.registrants and len(upcoming) == 27
        pure.append((computed - started) + (finished - viewed))
        total.append(finished - started)
    backend = "PostgreSQL" if ledger.shared else "SQLite"
    print(f"{backend}:")
    print(
        summary(
            f"  plan, {args.registrants:,} registrants x 10 sessions x 3 leads, ledger view "
            f"of {2 * args.registrants:,} rows included",
            total,
            "s",
        )
    )
    print(summary("    of which pure planning (without the ledger read)", pure, "s"))
    figures = {"plan": sum(total) / len(total)}
    # How a worker claims them: SQLite a chunk at a time; on a shared ledger in the steps
    # ClaimStep gives, when the connections keep up (a fast sink: the steps grow to their
    # bound) and at the pace of 4 connections on a 50 ms relay (80 messages a second).
    ways: list[tuple[str, Steps]] = [
        ("in one call", fixed(len(batch.sends))),
        (f"{CLAIM_CHUNK:,} per call", fixed(CLAIM_CHUNK)),
    ]
    if ledger.shared:
        ways += [(f"{SHARED_CLAIM_STEP} per call", fixed(SHARED_CLAIM_STEP))]
        ways += [("as a worker whose connections keep up", adaptive(None))]
        ways += [("as a worker on a 50 ms relay, 80 messages/s", adaptive(80.0))]
    for number, (how, steps) in enumerate(ways):
        # Each time under a lead of its own, so that every claim is new again.
        claims = [
            Claim(
                d.key._replace(lead=f"1h.{number}"),
                f"<{n}@x>",
                d.slot.due_at,
                d.slot.session.start,
            )
            for n, d in enumerate(batch.sends)
        ]
        sizes: list[int] = []
        started = time.perf_counter()
        at = won = 0
        step = steps.send(None)
        while at < len(claims):
            won += len(ledger.claim(claims[at : at + step], now))
            sizes.append(min(step, len(claims) - at))
            at += step
            step = steps.send(sizes[-1])
        took = time.perf_counter() - started
        assert won == len(claims)
        figures[f"claim {how}"] = took
        if how.startswith("as a worker whose") or (
            how.startswith(f"{CLAIM_CHUNK:,}") and not ledger.shared
        ):
            figures["claim as a worker"] = took
        print(
            f"  claim the {len(claims):,} due reminders ({how}): {took:.2f} s, "
            f"{len(claims) / took:,.0f} claims/s, {len(sizes):,} transactions"
            + (f", steps {described(sizes)}" if len(set(sizes)) > 2 else "")
        )
    ledger.close()
    return figures


# A claim's sizes: sent the size of the step just claimed, yields the next one's.
Steps = Generator[int, int | None, None]


def fixed(size: int) -> Steps:
    while True:
        yield size


def adaptive(pace: float | None) -> Steps:
    """The steps of a worker on a shared ledger (`claim_step`): its connections taking
    each step at `pace` messages a second, or, without one, as fast as they are claimed."""
    step = ClaimStep(SHARED_CLAIM_STEP, SHARED_CLAIM_MOST, CLAIM_SECONDS)
    sending = 0.0  # when the connections would have sent what was claimed so far
    claimed = yield step.next(time.perf_counter() if pace is None else sending, 0)
    while True:
        assert claimed is not None
        if pace is None:
            claimed = yield step.next(time.perf_counter(), claimed)
        else:
            sending += claimed / pace
            claimed = yield step.next(sending, claimed)


def described(sizes: list[int]) -> str:
    """32, 64, ... 1,024 x 95, 512: each size with how many times in a row."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return ", ".join(f"{size:,}" + (f" x {n:,}" if n > 1 else "") for size, n in runs)


if __name__ == "__main__":
    main()
