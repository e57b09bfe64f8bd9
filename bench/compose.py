"""Composing complete reminders: subject, text, HTML with inlined CSS, ICS, headers, bytes.

Target: under 2 ms a message on average over 10,000.

    .venv/bin/python bench/compose.py [--messages N] [--runs R]
"""

from __future__ import annotations

import argparse
import time

from common import registrant, sample_project, summary

from reminder.service.snapshot import load_snapshot


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    snapshot = load_snapshot(sample_project())
    slots = snapshot.slots[:3]
    people = [registrant(n) for n in range(args.messages)]
    means = []
    for _ in range(args.runs):
        # A fresh composer each run: its per-session caches (calendar, dates) start cold.
        composer = type(snapshot.composer)(snapshot.config, snapshot.sessions, snapshot.templates)
        started = time.perf_counter()
        size = 0
        for n, person in enumerate(people):
            slot = slots[n % 3]
            size += len(composer.compose(slot, person, slot.due_at).data)
        means.append((time.perf_counter() - started) / args.messages * 1000)
    print(
        summary(
            f"compose {args.messages:,} messages (mean size {size / args.messages / 1024:.1f} KiB)",
            means,
            "ms/message",
        )
    )


if __name__ == "__main__":
    main()
