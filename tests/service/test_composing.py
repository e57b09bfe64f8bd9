"""Large batches composed with helper processes: same messages, and a safe fallback."""

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest

from reminder.core.model import Registrant
from reminder.core.plan import Delivery
from reminder.mail.wire import wired
from reminder.service import composing
from reminder.service.composing import PARALLEL_FROM, PROBE, compose_all
from reminder.service.snapshot import Snapshot
from tests.support.project import Project


def batch(snapshot: Snapshot, size: int) -> list[Delivery]:
    slot = snapshot.slots[1]
    return [Delivery(slot, Registrant(f"p{n}@example.org", f"P{n}", "X")) for n in range(size)]


async def composed(
    snapshot: Snapshot, deliveries: list[Delivery], counts: dict[str, int]
) -> dict[str, bytes | str]:
    out = {}
    async for delivery, message in compose_all(
        snapshot, deliveries, lambda: datetime.now(UTC), helpers=1, counts=counts
    ):
        out[delivery.registrant.email] = message
    return out


async def test_helpers_compose_the_same_messages(project: Project) -> None:
    snapshot = project.snapshot()
    deliveries = batch(snapshot, PARALLEL_FROM + 200)
    counts: dict[str, int] = {}
    out = await composed(snapshot, deliveries, counts)
    assert len(out) == len(deliveries)
    assert counts["helpers"] > 0 and counts["here"] > 0, counts  # both worked
    for delivery in deliveries[:: len(deliveries) // 10]:
        data = out[delivery.registrant.email]
        assert isinstance(data, bytes)
        parsed = message_from_bytes(data, policy=policy.default)
        assert parsed["Message-ID"].strip() == snapshot.composer.message_id(delivery.key)
        assert f"<{delivery.registrant.email}>".encode() in data


async def test_helpers_that_read_changed_files_are_not_used(project: Project) -> None:
    snapshot = project.snapshot()
    template = project.root / "templates" / "reminder.subject.txt"
    template.write_text("Changé : {{ session.topic }}\n")  # after the batch was planned
    counts: dict[str, int] = {}
    out = await composed(snapshot, batch(snapshot, PARALLEL_FROM), counts)
    assert counts == {"here": PARALLEL_FROM, "helpers": 0}
    subjects = {
        str(message_from_bytes(m, policy=policy.default)["Subject"])
        for m in out.values()
        if isinstance(m, bytes)
    }
    assert len(subjects) == 1 and subjects.pop().startswith("Rappel")  # the validated one


async def test_a_small_batch_is_composed_here(project: Project) -> None:
    snapshot = project.snapshot()
    counts: dict[str, int] = {}
    out = await composed(snapshot, batch(snapshot, 10), counts)
    assert len(out) == 10 and counts == {"here": 10, "helpers": 0}


async def test_no_helper_starts_when_the_transport_sets_the_pace(project: Project) -> None:
    snapshot = project.snapshot()
    counts: dict[str, int] = {}
    deliveries = batch(snapshot, PARALLEL_FROM + 200)
    sent = 0
    async for _, message in compose_all(
        snapshot, deliveries, lambda: datetime.now(UTC), helpers=1, counts=counts
    ):
        assert isinstance(message, bytes)
        sent += 1
        if sent <= PROBE:
            await asyncio.sleep(0.01)  # a slow relay: far longer than composing a message
    assert counts == {"here": len(deliveries), "helpers": 0}


async def test_helpers_start_for_a_batch_of_unknown_size_when_composing_is_slower(
    project: Project,
) -> None:
    snapshot = project.snapshot()
    counts: dict[str, int] = {}
    deliveries = batch(snapshot, PARALLEL_FROM + 200)
    async for _ in compose_all(
        snapshot, iter(deliveries), lambda: datetime.now(UTC), helpers=1, counts=counts
    ):
        pass  # a transport that takes no time: composing is the bottleneck
    assert counts["here"] >= PROBE and counts["helpers"] > 0, counts


async def test_helpers_hand_over_messages_ready_for_the_wire(project: Project) -> None:
    # The sending process then only writes them: dots doubled and the final dot already
    # there, for the messages of the helpers as for its own.
    snapshot = project.snapshot()
    counts: dict[str, int] = {}
    deliveries = batch(snapshot, PARALLEL_FROM + 200)
    out: dict[str, bytes] = {}
    async for delivery, message in compose_all(
        snapshot, iter(deliveries), lambda: datetime.now(UTC), helpers=1, counts=counts, wire=True
    ):
        assert isinstance(message, bytes)
        out[delivery.registrant.email] = message
    assert counts["here"] > 0 and counts["helpers"] > 0, counts
    for delivery in deliveries[::97]:
        data = out[delivery.registrant.email]
        assert data.endswith(b"\r\n.\r\n")
        message = data[:-3].replace(b"\r\n..", b"\r\n.")
        assert wired(message) == data
        parsed = message_from_bytes(message, policy=policy.default)
        assert parsed["Message-ID"].strip() == snapshot.composer.message_id(delivery.key)


async def test_helpers_start_when_composing_takes_a_fifth_of_the_time(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relay on the same machine: composing a message takes 0.5 (of any unit), the
    # transport's turn 2.25, so composing is 18% of the time. Taking it out of the
    # sending process then makes the batch about a fifth faster (measured on
    # smtp-sink): helpers start. The probe's clock is this test's, so load on the
    # machine running the tests cannot move the share.
    ticks = [0.0]

    def perf_counter() -> float:
        ticks[0] += 0.5  # the probe reads it three times a message
        return ticks[0]

    monkeypatch.setattr(composing, "time", SimpleNamespace(perf_counter=perf_counter))
    snapshot = project.snapshot()
    counts: dict[str, int] = {}
    deliveries = batch(snapshot, PARALLEL_FROM + 200)
    async for _ in compose_all(
        snapshot, iter(deliveries), lambda: datetime.now(UTC), helpers=1, counts=counts
    ):
        ticks[0] += 1.75  # the transport's turn (with the probe's own reading: 2.25)
    assert counts["here"] >= PROBE and counts["helpers"] > 0, counts
