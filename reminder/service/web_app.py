"""What every handler of the HTTP face shares: the worker it reads, and the pages it renders."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from aiohttp import hdrs, web
from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..core.errors import LedgerError
from ..storage.ledger import Ledger
from ..storage.thread import LedgerThread
from .monitor import Monitor
from .snapshot import Snapshot


class Service(Protocol):
    """What the HTTP layer reads from the worker, and the one thing it asks of it."""

    snapshot: Snapshot
    monitor: Monitor
    clock: Callable[[], datetime]

    @property
    def ledger(self) -> Ledger: ...

    @property
    def thread(self) -> LedgerThread[Ledger]: ...

    def poke(self, reason: str) -> None:
        """A pass soon: a registrant's choice changed what is owed."""
        ...


SERVICE = web.AppKey("service", Service)
LEDGER_DEADLINE = 5.0  # seconds a page waits for the ledger before answering 503
T = TypeVar("T")
log = logging.getLogger("reminder")


async def in_ledger(request: web.Request, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in the ledger's thread, never on the loop (invariant 13); 503 (try
    again later) when the ledger does not answer within LEDGER_DEADLINE."""
    try:
        return await request.app[SERVICE].thread.call(
            work, *args, patient=False, deadline=LEDGER_DEADLINE
        )
    except LedgerError as exc:
        log.warning("a page could not read the ledger: %s", exc)
        raise web.HTTPServiceUnavailable(
            text="The service cannot reach its records right now; please try again in a minute.\n",
            headers={hdrs.RETRY_AFTER: "60"},
        ) from None


PAGES = ImmutableSandboxedEnvironment(
    loader=PackageLoader("reminder", "pages"), autoescape=True, undefined=StrictUndefined
)


def page(name: str, status: int = 200, **context: object) -> web.Response:
    html = PAGES.get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def as_json(body: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
