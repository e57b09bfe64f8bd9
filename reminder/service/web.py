"""The HTTP face, in the worker's own loop: health, metrics, one-click unsubscribe, status page.

Thin by design: each handler reads the worker's state or the ledger, or records one
suppression, and formats. Nothing here sends mail.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from .request_log import RequestLog
from .snapshot import Snapshot
from .staff_login import LoginGuard, client_address, same_secret
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
GUARD = web.AppKey("guard", LoginGuard)
PAGES = ImmutableSandboxedEnvironment(
    loader=PackageLoader("reminder", "pages"), autoescape=True, undefined=StrictUndefined
)


def make_app(service: Service) -> web.Application:
    """The application, given the worker it shows; tests build it around a real worker."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[INDEX] = {}
    app[GUARD] = LoginGuard(service.monitor.metrics)
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
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        logger=RequestLog(app[SERVICE].monitor.metrics.bad_requests.inc),
    )
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
    """The one-click POST (from a mail client, or the page's button): suppress at once.

    RFC 8058 section 3.1: the body is `List-Unsubscribe=One-Click`, form-encoded or
    multipart. Anything else is not a one-click unsubscribe: 400, and nobody suppressed.
    """
    address = _address(request)
    if not await _one_click(request):
        raise web.HTTPBadRequest(
            text="A one-click unsubscribe (RFC 8058) posts List-Unsubscribe=One-Click.\n"
        )
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


async def _one_click(request: web.Request) -> bool:
    """Whether the body is RFC 8058's; a body beyond client_max_size is answered 413."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        await request.read()
        return False
    try:
        form = await request.post()  # reads the body, within client_max_size
    except ValueError:  # a malformed multipart body
        return False
    return form.getall("List-Unsubscribe", []) == ["One-Click"]


def _unsubscribe_page(service: Service, address: str, done: bool) -> web.Response:
    """The button (not done yet) or the confirmation; the address masked."""
    title = service.snapshot.config.cycle.title
    return _page("unsubscribe.html", title=title, who=masked(address), done=done, css="style.css")


# -- the staff status page -------------------------------------------------------------------


async def _staff(request: web.Request) -> None:
    """Basic authentication against the staff credentials; the page is off without them.

    A request that brings credentials is held, or refused (429), by the login guard
    before they are compared: the answer never tells a right guess during a refusal.
    """
    http = request.app[SERVICE].snapshot.config.http
    if http.staff_user is None or http.staff_password is None:
        raise web.HTTPNotFound()
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:  # a browser's first request, before it asks for the password
        raise _login_required()
    guard = request.app[GUARD]
    client = client_address(request, http.trusted_proxies)
    hold = guard.admit(client)
    if hold is None:
        raise web.HTTPTooManyRequests(headers={hdrs.RETRY_AFTER: str(guard.retry_after(client))})
    if hold:
        await asyncio.sleep(hold)
    user, password = _credentials(header)
    # Both compared, whatever the first comparison said.
    user_ok = same_secret(user, http.staff_user)
    password_ok = same_secret(password, http.staff_password.get_secret_value())
    guard.settle(client, user_ok and password_ok)
    if not (user_ok and password_ok):
        raise _login_required()


def _login_required() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
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
    await _staff(request)
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
    await _staff(request)
    service = request.app[SERVICE]
    html, _ = next_mail(service.snapshot, service.clock())
    return web.Response(text=html, content_type="text/html", charset="utf-8")
