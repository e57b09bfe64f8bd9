"""Recomputing the plan for 100,000 registrants x 10 sessions x 3 leads. Target: under 2 s.

What a reload or a sweep does, minus reading the files: the sessions and their
reminders, who attends what, what the ledger already holds (a real SQLite file with
the 7-day and 1-day reminders of one session recorded for everybody), what is owed
now (the 1-hour reminder for all 100,000), and the next wake-ups.

    .venv/bin/python bench/plan.py [--registrants N] [--runs R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import registrant, sample_project, summary

from reminder.config import load_config
from reminder.ledger import Claim, Ledger, Outcome, Status
from reminder.plan import due_batch, next_wakeups, reminder_slots
from reminder.registrants import Roster
from reminder.sessions import build_sessions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config_path = sample_project()
    # Ten sessions: the nine of 2023 and an extra one.
    config_path.write_text(
        config_path.read_text(encoding="utf-8")
        + ("\n[[sessions]]\ndate = 2023-12-20\nextra = true\n"),
        encoding="utf-8",
    )
    config = load_config(config_path)
    people = tuple(registrant(n) for n in range(args.registrants))
    sessions, _ = build_sessions(config)
    leads = config.reminders.lead_list
    assert (len(sessions), len(leads)) == (10, 3)
    march = reminder_slots(sessions, leads)[:3]
    now = march[2].due_at + timedelta(seconds=5)  # the 1h reminder of 1 March is due

    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite", worker="bench")
    for slot in march[:2]:
        claims = [
            Claim(slot.key(p.key), f"<{n}@x>", slot.due_at, slot.session.start)
            for n, p in enumerate(people)
        ]
        ledger.claim(claims, now)
        ledger.record([Outcome(c.key, Status.SENT, "250", now) for c in claims], now)

    pure, total = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        sessions, _ = build_sessions(config)
        slots = reminder_slots(sessions, leads)
        fresh = Roster("bench", people)  # attendance is recomputed, not cached
        computed = time.perf_counter()
        view = ledger.view({s.session.key for s in slots if s.due_at <= now < s.session.start})
        viewed = time.perf_counter()
        batch = due_batch(now, slots, fresh, view)
        upcoming = next_wakeups(now, slots, view)
        finished = time.perf_counter()
        assert len(batch.sends) == args.registrants and len(upcoming) == 27
        pure.append((computed - started) + (finished - viewed))
        total.append(finished - started)
    print(
        summary(
            f"plan, {args.registrants:,} registrants x 10 sessions x 3 leads, ledger view "
            f"of {2 * args.registrants:,} rows included",
            total,
            "s",
        )
    )
    print(summary("  of which pure planning (without the ledger read)", pure, "s"))
    ledger.close()


if __name__ == "__main__":
    main()
