"""Faults told once, then once a minute with a count, then once when they end; retries
timed by what is left before the deadline; logs that mask addresses, never paths."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from reminder.inputs.registrants import redacted
from reminder.service.delivery import RETRY_AFTER, RETRY_FIRST, _retry_at
from reminder.service.faults import Fault

SECOND = timedelta(seconds=1)


def test_a_lasting_fault_is_told_once_then_once_a_minute_with_a_count_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    fault = Fault("the ledger", monotonic=lambda: now[0])
    caplog.set_level(logging.INFO, logger="reminder")
    for _ in range(30):  # a full disk, every ten seconds for five minutes
        fault.seen("database or disk is full")
        now[0] += 10
    fault.seen("database or disk is full", "never shown: it started long ago")
    fault.cleared("is writable again")
    fault.cleared("is writable again")  # nothing more: it was not failing
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "the ledger: database or disk is full"
    assert lines[1] == (
        "the ledger: still failing (6 more times in the last 60 s): database or disk is full"
    )
    assert len(lines) == 7  # the start, five minutes' reminders, the end
    assert lines[-1] == "the ledger is writable again after 300 s"


def test_a_transient_failure_is_tried_again_before_the_deadline_while_time_is_left() -> None:
    now = datetime(2023, 3, 1, 16, tzinfo=UTC)
    # A relay that refused for a moment is tried again seconds later; each try recorded
    # doubles the wait, up to five minutes for a relay down for good.
    # (Within the jitter, less the step its instant is taken down to.)
    first = _retry_at(now, now + timedelta(days=1))
    assert first is not None and RETRY_FIRST * 0.8 - SECOND <= first - now <= RETRY_FIRST * 1.2
    fourth = _retry_at(now, now + timedelta(days=1), tries=3)
    wait = RETRY_FIRST * 8
    assert fourth is not None and wait * (0.8 - 1 / 8) <= fourth - now <= wait * 1.2
    far = _retry_at(now, now + timedelta(days=1), tries=12)
    assert far is not None and RETRY_AFTER * (0.8 - 1 / 8) <= far - now <= RETRY_AFTER * 1.2
    assert _retry_at(now, now + timedelta(days=1), tries=10**6) is not None
    # A reminder due 30 s before its deadline: a relay refusing for 10 s must not fail it.
    near = _retry_at(now, now + timedelta(seconds=30), tries=8)
    assert near == now + timedelta(seconds=15)
    assert _retry_at(now, now + timedelta(seconds=1)) is None  # no time left: it fails


def test_a_burst_of_transient_failures_comes_back_in_a_few_passes_not_one_per_message() -> None:
    # A relay answered 451 to a whole batch: 200 results over two seconds. Each retry's
    # instant is a wake-up, and each wake-up a pass and its log line: they must share a
    # few instants (a pass each), not come back one by one over seconds.
    now = datetime(2023, 3, 1, 16, 0, 0, 123_456, tzinfo=UTC)
    deadline = now + timedelta(days=1)
    for tries in (0, 3, 12):
        instants = {
            _retry_at(now + timedelta(milliseconds=10 * n), deadline, tries) for n in range(200)
        }
        assert None not in instants
        assert len(instants) <= 6, (tries, len(instants))


def test_masking_an_address_keeps_the_path_it_sits_in() -> None:
    text = "/srv/reminder/state/outbox/new/4f2a.b9@example.org.eml: Read-only file system"
    assert redacted(text) == (
        "/srv/reminder/state/outbox/new/4***@example.org.eml: Read-only file system"
    )
    assert redacted("550 5.1.1 <sophie.martin@example.fr>: no such user") == (
        "550 5.1.1 <s***@example.fr>: no such user"
    )
