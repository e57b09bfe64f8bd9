"""The worker's HTTP face as tests reach it: a served worker, its secrets, requests."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from reminder.service.worker import Worker
from tests.support.project import Project, started
from tests.support.smtp import Server

PARIS = ZoneInfo("Europe/Paris")
CYCLE = "irev-elus-2023"


SECRET = "0123456789abcdef0123456789abcdef-test"


SEVEN_DAYS_BEFORE = datetime(2023, 2, 22, 17, 0, 5, tzinfo=PARIS)  # March 1's 7d reminder is due


def use_server(project: Project, server: Server) -> None:
    project.edit(
        "connections = 4\nmax_per_minute = 30",
        f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "none"',
    )


def one_click(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.edit("#   public_url = ", "public_url = ")
    monkeypatch.setenv("REMINDER_HTTP__SECRET", SECRET)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def staff(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Staff credentials in the environment; returns the headers that log in with them."""
    monkeypatch.setenv("REMINDER_HTTP__STAFF_USER", "equipe")
    monkeypatch.setenv("REMINDER_HTTP__STAFF_PASSWORD", "mot de passe de l'équipe")
    return basic("equipe", "mot de passe de l'équipe")


@asynccontextmanager
async def serving(project: Project) -> AsyncIterator[tuple[Worker, str]]:
    """A real worker with its HTTP server on a free port, after its first pass."""
    worker = Worker(project.config, poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    await started(worker, task)
    assert worker.http is not None
    host, port = worker.http.addresses[0][:2]
    try:
        yield worker, f"http://{host}:{port}"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def get(url: str, **options: object) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, **options) as response,  # type: ignore[arg-type]
    ):
        return response.status, dict(response.headers), await response.text()


def unsubscribe_link(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    header = str(message["List-Unsubscribe"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    found = re.search(r"<(https://rappels\.irev\.fr/u/[A-Za-z0-9_-]{22})>", header)
    assert found, header
    return found.group(1)
