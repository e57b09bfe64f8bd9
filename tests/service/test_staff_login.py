"""The staff login's guard, on an explicit clock: held, refused, forgiven, forgotten."""

from __future__ import annotations

import asyncio
import logging

import pytest

from reminder.service.metrics import Metrics
from reminder.service.staff_login import (
    FAILURES_IN_TOTAL,
    FAILURES_PER_CLIENT,
    MOST,
    STEP,
    WINDOW,
    LoginGuard,
    same_secret,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failed(guard: LoginGuard, client: str) -> float | None:
    hold = guard.admit(client)
    if hold is not None:
        guard.settle(client, ok=False)
    return hold


def test_each_failure_holds_the_next_try_longer_then_the_client_is_refused() -> None:
    clock = Clock()
    guard = LoginGuard(Metrics(), clock)
    holds = [failed(guard, "203.0.113.7") for _ in range(FAILURES_PER_CLIENT)]
    assert holds[0] == 0 and holds == sorted(holds) and max(holds) == MOST
    assert guard.admit("203.0.113.7") is None  # refused, unchecked
    assert guard.retry_after("203.0.113.7") == WINDOW
    assert guard.admit("198.51.100.20") == 0  # another client is not held for it
    guard.settle("198.51.100.20", ok=True)
    clock.now += WINDOW + 1
    assert guard.admit("203.0.113.7") == 0  # the refusal is over: a new burst


def test_a_right_password_forgives_the_client_s_failures() -> None:
    guard = LoginGuard(Metrics(), Clock())
    for _ in range(3):
        failed(guard, "198.51.100.20")
    assert guard.admit("198.51.100.20") == 0.75
    guard.settle("198.51.100.20", ok=True)
    assert guard.admit("198.51.100.20") == 0


def test_a_burst_ends_after_a_quiet_window_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    guard = LoginGuard(Metrics(), clock)
    for _ in range(3):
        failed(guard, "203.0.113.7")
        clock.now += 60
    clock.now += WINDOW
    assert failed(guard, "203.0.113.7") == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2 and all("failed staff login from 203.0.113.7" in x for x in lines)


def test_failures_from_many_addresses_refuse_every_login_for_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    metrics = Metrics()
    guard = LoginGuard(metrics, clock)
    for n in range(FAILURES_IN_TOTAL):
        assert failed(guard, f"10.0.{n // 250}.{n % 250}") == 0
    assert guard.admit("198.51.100.20") is None  # staff too: the guard cannot tell them apart
    assert "every staff login is refused for 15 minutes" in caplog.text
    clock.now += WINDOW + 1
    assert guard.admit("198.51.100.20") == 0
    assert b"reminder_staff_login_failures_total 100.0" in metrics.exposition()


def test_secrets_are_compared_whatever_their_lengths() -> None:
    assert same_secret("mot de passe", "mot de passe")
    assert not same_secret("mot", "mot de passe")
    assert not same_secret("", "mot de passe")


async def test_an_attempt_cancelled_while_held_is_settled_as_failed() -> None:
    """Left admitted, a hundred cancelled attempts (a stop during the hold) refused every
    staff login until a restart."""
    guard = LoginGuard(Metrics(), Clock())
    failed(guard, "203.0.113.7")  # its next attempt is held
    held = asyncio.ensure_future(guard.attempt("203.0.113.7", lambda: True))
    await asyncio.sleep(0)  # now waiting out its hold
    assert guard.held == 1
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert guard.held == 0
    assert guard.admit("203.0.113.7") == 2 * STEP  # the cancelled try counted as a failure
