"""A sample project to edit, registrants to write, and waits on conditions, not clocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reminder.service.snapshot import Snapshot, load_snapshot
from reminder.service.worker import Worker

REPO = Path(__file__).resolve().parents[2]


DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass
class Project:
    """A copy of the sample project (config, templates, export) in a temporary folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, f"{old!r} is not in the sample config"
        self.config.write_text(text.replace(old, new, 1), encoding="utf-8")

    def append(self, text: str) -> None:
        with self.config.open("a", encoding="utf-8") as file:
            file.write("\n" + text + "\n")

    def registrants(self, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
        header = header or ["Nom", "Prénom", "Courriel", "Fonction", "Collectivité", "Séances"]
        lines = [";".join(header)]
        lines += [";".join(row.get(column, "") for column in header) for row in rows]
        (self.root / "registrants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def snapshot(self) -> Snapshot:
        return load_snapshot(self.config)


def person(n: int, sessions: str = "toutes") -> dict[str, str]:
    return {
        "Nom": f"Martin{n}",
        "Prénom": f"Alex{n}",
        "Courriel": f"alex{n}@example.org",
        "Fonction": "Maire",
        "Collectivité": f"Commune {n}",
        "Séances": sessions,
    }


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Wait for a condition (not for a wall-clock instant), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def started(worker: Worker, task: asyncio.Task[None], within: float = 20.0) -> None:
    """Until the worker's first pass has run, or its start failed (raised here)."""
    first_pass = asyncio.ensure_future(worker.started.wait())
    try:
        await asyncio.wait({task, first_pass}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        first_pass.cancel()
    if task.done():
        task.result()
    if not worker.started.is_set():
        raise AssertionError("the worker did not start in time")
