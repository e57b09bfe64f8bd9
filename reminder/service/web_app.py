"""What every handler of the HTTP face shares: the worker it reads, and the pages it renders."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from aiohttp import web
from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..storage.ledger import Ledger
from .monitor import Monitor
from .snapshot import Snapshot


class Service(Protocol):
    """What the HTTP layer reads from the worker, and the one thing it asks of it."""

    snapshot: Snapshot
    monitor: Monitor
    clock: Callable[[], datetime]

    @property
    def ledger(self) -> Ledger: ...

    def poke(self, reason: str) -> None:
        """A pass soon: a registrant's choice changed what is owed."""
        ...


SERVICE = web.AppKey("service", Service)
PAGES = ImmutableSandboxedEnvironment(
    loader=PackageLoader("reminder", "pages"), autoescape=True, undefined=StrictUndefined
)


def page(name: str, status: int = 200, **context: object) -> web.Response:
    html = PAGES.get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def as_json(body: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
