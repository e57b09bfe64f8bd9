"""The change-notice plan for 100,000 registrants told about a session that is then moved.

What every pass and every wake-up computation now adds: record the sessions' versions,
read what each registrant was last told (200,000 rows with facts: the 7-day and 1-day
reminders of 1 March sent to everybody), and derive the 100,000 update notices owed.

    .venv/bin/python bench/notices.py [--registrants N] [--runs R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from common import record_told, registrant, sample_project, summary

from reminder.core.model import Roster
from reminder.core.notices import plan_notices, version
from reminder.core.plan import reminder_slots
from reminder.inputs.config import load_config
from reminder.inputs.schedule import load_sessions
from reminder.storage.ledger import Ledger


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = load_config(sample_project())
    people = tuple(registrant(n) for n in range(args.registrants))
    sessions, _ = load_sessions(config)
    leads = config.reminders.leads
    march = reminder_slots(sessions, leads)[:2]
    told_at = march[1].due_at + timedelta(minutes=1)
    link = config.cycle.join_url or ""
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite", worker="bench")
    for slot in march:
        record_told(ledger, slot, people, link, told_at)
    roster = Roster("bench", people)
    first = {s.id: version(s, roster, link) for s in sessions}
    ledger.observe(first, told_at)
    moved_start = sessions[0].start + timedelta(days=7)
    sessions[0] = replace(
        sessions[0],
        start=moved_start,
        end=moved_start + timedelta(hours=2),
        moved_from=sessions[0].start,
    )
    now = told_at + timedelta(minutes=30)
    delay = timedelta(minutes=10)
    ledger.observe({s.id: version(s, roster, link) for s in sessions}, told_at)

    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        fresh = Roster("bench", people)  # attendance is recomputed, not cached
        versions = {s.id: version(s, fresh, link) for s in sessions}
        since = ledger.observe(versions, now)
        view = ledger.notice_view(versions, since)
        plan = plan_notices(now, sessions, fresh, view, delay, link)
        times.append(time.perf_counter() - started)
        assert len(plan.owed) == args.registrants, len(plan.owed)
    print(
        summary(
            f"notice plan, {args.registrants:,} registrants told about a moved session "
            f"({2 * args.registrants:,} ledger rows with facts)",
            times,
            "s",
        )
    )
    ledger.close()


if __name__ == "__main__":
    main()
