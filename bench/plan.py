"""Recomputing the plan for 100,000 registrants x 10 sessions x 3 leads. Target: under 2 s.

What a reload or a sweep does, minus reading the files: the sessions and their
reminders, who attends what, what the ledger already holds (a real SQLite file with
the 7-day and 1-day reminders of one session recorded for everybody), what is owed
now (the 1-hour reminder for all 100,000), and the next wake-ups.

Then the 100,000 due reminders are claimed in one call, then again (under another lead)
in chunks of 256, as a worker on SQLite claims them, and on PostgreSQL once more in the
steps of 32 of a worker on a shared ledger.

With --ledger URL the same runs on a fresh schema of that PostgreSQL database too, after
the SQLite file, and the two are printed side by side.

    .venv/bin/python bench/plan.py [--registrants N] [--runs R] [--ledger URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from common import postgres_schema, registrant, sample_project, summary

from reminder.core.mailing import DeliveryState
from reminder.core.model import Roster
from reminder.core.plan import due_batch, next_wakeups, reminder_slots
from reminder.inputs.config import load_config
from reminder.inputs.schedule import load_sessions
from reminder.service.delivery import CLAIM_CHUNK, SHARED_CLAIM_STEP
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
    sizes = [len(batch.sends), CLAIM_CHUNK] + ([SHARED_CLAIM_STEP] if ledger.shared else [])
    for size in sizes:
        # Each time under a lead of its own, so that every claim is new again.
        claims = [
            Claim(
                d.key._replace(lead=f"1h.{size}"), f"<{n}@x>", d.slot.due_at, d.slot.session.start
            )
            for n, d in enumerate(batch.sends)
        ]
        started = time.perf_counter()
        won = sum(len(ledger.claim(claims[i : i + size], now)) for i in range(0, len(claims), size))
        took = time.perf_counter() - started
        assert won == len(claims)
        how = "in one call" if size == len(claims) else f"{size:,} per call"
        figures[f"claim {how}"] = took
        if size == SHARED_CLAIM_STEP:
            how += ", as a worker on a shared ledger"
            figures["claim as a worker"] = took
        elif size == CLAIM_CHUNK and not ledger.shared:
            how += ", as a worker on SQLite"
            figures["claim as a worker"] = took
        print(
            f"  claim the {len(claims):,} due reminders ({how}): {took:.2f} s, "
            f"{len(claims) / took:,.0f} claims/s"
        )
    ledger.close()
    return figures


if __name__ == "__main__":
    main()
