"""How many reminders a worker on a shared ledger claims at once: explicit instants."""

from reminder.core.planned import ClaimStep


def test_the_step_starts_small_and_grows_at_most_twofold_while_sending_keeps_up() -> None:
    step = ClaimStep(32, 1024, 0.5)
    sizes = [step.next(0.0, 0)]
    now = 0.0
    for _ in range(8):
        now += 0.001  # a fast sink: each step's messages taken in a millisecond
        sizes.append(step.next(now, sizes[-1]))
    assert sizes == [32, 64, 128, 256, 512, 1024, 1024, 1024, 1024]


def test_the_step_covers_about_its_seconds_of_sending_at_the_measured_pace() -> None:
    step = ClaimStep(32, 1024, 0.5)
    assert step.next(0.0, 0) == 32
    # A 50 ms relay and 4 connections: 80 messages a second, 32 in 0.4 s.
    assert step.next(0.4, 32) == 40
    assert step.next(0.9, 40) == 40
    # A pace that drops (a rate limit) brings the step back, never below its least.
    assert step.next(10.9, 40) == 32


def test_a_step_never_exceeds_its_bound_whatever_the_pace() -> None:
    step = ClaimStep(32, 300, 0.5)
    now, size = 0.0, step.next(0.0, 0)
    for handed in (32, 10_000, 10**9, 5, 10**9, 10**9, 10**9):
        now += 1e-9
        size = step.next(now, min(handed, size))
        assert 32 <= size <= 300
    assert size == 300
    # A bound under the least: the least it is.
    assert ClaimStep(32, 8, 0.5).next(0.0, 0) == 32


def test_a_step_whose_claims_another_worker_had_won_tells_nothing_of_the_pace() -> None:
    step = ClaimStep(32, 1024, 0.5)
    step.next(0.0, 0)
    step.next(0.001, 32)  # 64 now
    # Nothing of the last step was this worker's: the step stays as it was.
    assert step.next(0.002, 0) == 64
