"""The HTTP face, in the worker's own loop: health, metrics, one-click unsubscribe, status page.

Thin by design: each handler reads the worker's state or the ledger, or records one
suppression, and formats. Nothing here sends mail.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from aiohttp import hdrs, web
from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..core.unsubscribe import TOKEN_PATTERN, TokenIndex
from ..inputs.config import Http
from ..inputs.registrants import masked
from ..storage.ledger import Ledger
from .metrics import CONTENT_TYPE
from .monitor import Monitor
from .snapshot import Snapshot
from .status_page import next_mail, status_page

log = logging.getLogger("reminder")

MAX_BODY = 4096  # a one-click POST carries "List-Unsubscribe=One-Click" and little else
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The mail preview keeps the mail's inline styles and remote images, nothing else.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # an unsubscribe token never leaves in a Referer
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Server": "reminder",
}


class Service(Protocol):
    """What the HTTP layer reads from the worker."""

    snapshot: Snapshot
    monitor: Monitor
    clock: Callable[[], datetime]

    @property
    def ledger(self) -> Ledger: ...


SERVICE = web.AppKey("service", Service)
INDEX = web.AppKey("index", dict)
PAGES = ImmutableSandboxedEnvironment(
    loader=PackageLoader("reminder", "pages"), autoescape=True, undefined=StrictUndefined
)


def make_app(service: Service) -> web.Application:
    """The application, given the worker it shows; tests build it around a real worker."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[INDEX] = {}
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(f"/u/{{token:{TOKEN_PATTERN}}}", unsubscribe_page)
    app.router.add_post(f"/u/{{token:{TOKEN_PATTERN}}}", unsubscribe)
    app.router.add_get("/", status)
    app.router.add_get("/apercu", preview)
    # Under /u/, relative to the pages: the one public prefix serves the public page's look.
    app.router.add_get("/u/style.css", style)
    return app


async def start_server(app: web.Application, http: Http) -> web.AppRunner:
    """Listen in the running loop; the caller awaits `runner.cleanup()` at stop."""
    # No access log: a line per scrape is noise, and paths carry unsubscribe tokens.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    log.info("HTTP on http://%s:%s (health, metrics, unsubscribe, status page)", host, port)
    return runner


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if request.path == "/apercu":
        response.headers["Content-Security-Policy"] = PREVIEW_CSP
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    else:
        response.headers["Content-Security-Policy"] = PAGE_CSP
        response.headers["X-Frame-Options"] = "DENY"


def _page(name: str, **context: object) -> web.Response:
    html = PAGES.get_template(name).render(**context)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def _json(body: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """The loop answers."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[SERVICE].monitor.readiness()
    return _json(readiness.body(), 200 if readiness.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].monitor.metrics.exposition()
    response = web.Response(body=body)
    response.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE
    return response


async def style(request: web.Request) -> web.Response:
    css = PAGES.get_template("style.css").render()
    return web.Response(text=css, content_type="text/css", charset="utf-8")


# -- one-click unsubscribe (RFC 8058) --------------------------------------------------------


def _address(request: web.Request) -> str:
    """The address behind the URL's token; 404 with no detail for any other token."""
    service = request.app[SERVICE]
    snapshot = service.snapshot
    http = snapshot.config.http
    if http.secret is None:
        raise web.HTTPNotFound()
    cache = request.app[INDEX]
    if cache.get("snapshot") is not snapshot:
        roster = snapshot.roster
        cache["snapshot"] = snapshot
        # Links in mails already sent stay valid for people no longer in the export.
        known = {r.key for r in roster.registrants}
        known |= {*roster.suppressed, *service.ledger.recipients()}
        cache["index"] = TokenIndex(
            http.secret.get_secret_value(), snapshot.config.cycle.id, sorted(known)
        )
    address: str | None = cache["index"].address(request.match_info["token"])
    if address is None:
        raise web.HTTPNotFound()
    return address


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET only shows a button: mail scanners follow links, and must not unsubscribe anyone."""
    address = _address(request)
    service = request.app[SERVICE]
    return _unsubscribe_page(service, address, address in service.ledger.suppressed_addresses())


async def unsubscribe(request: web.Request) -> web.Response:
    """The one-click POST (from a mail client, or the page's button): suppress at once."""
    address = _address(request)
    await request.read()  # bounded by client_max_size: 413 beyond
    service = request.app[SERVICE]
    if service.ledger.suppress(
        address,
        reason="one-click unsubscribe link",
        source="unsubscribe",
        at=service.clock(),
    ):
        service.monitor.metrics.unsubscribes.inc()
        service.monitor.count_registrants()
        log.info("unsubscribed %s through the one-click link", masked(address))
    return _unsubscribe_page(service, address, True)


def _unsubscribe_page(service: Service, address: str, done: bool) -> web.Response:
    """The button (not done yet) or the confirmation; the address masked."""
    title = service.snapshot.config.cycle.title
    return _page("unsubscribe.html", title=title, who=masked(address), done=done, css="style.css")


# -- the staff status page -------------------------------------------------------------------


def _staff(request: web.Request) -> None:
    """Basic authentication against the staff credentials; the page is off without them."""
    http = request.app[SERVICE].snapshot.config.http
    if http.staff_user is None or http.staff_password is None:
        raise web.HTTPNotFound()
    given = _credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
    expected = (http.staff_user, http.staff_password.get_secret_value())
    # Both compared in constant time, whatever the first comparison said.
    user_ok = hmac.compare_digest(given[0].encode(), expected[0].encode())
    password_ok = hmac.compare_digest(given[1].encode(), expected[1].encode())
    if not (user_ok and password_ok):
        raise web.HTTPUnauthorized(
            headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="reminder", charset="UTF-8"'}
        )


def _credentials(header: str) -> tuple[str, str]:
    """(user, password) of a Basic Authorization header (RFC 7617, UTF-8), or empty ones."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else ("", "")


async def status(request: web.Request) -> web.Response:
    _staff(request)
    service = request.app[SERVICE]
    monitor = service.monitor
    page = status_page(
        service.snapshot,
        service.ledger,
        service.clock(),
        monitor.wakeups,
        monitor.readiness().reasons,
    )
    return _page("status.html", page=page, css="u/style.css")


async def preview(request: web.Request) -> web.Response:
    _staff(request)
    service = request.app[SERVICE]
    html, _ = next_mail(service.snapshot, service.clock())
    return web.Response(text=html, content_type="text/html", charset="utf-8")
