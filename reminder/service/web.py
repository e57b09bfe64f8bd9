"""The HTTP face, in the worker's own loop: health, metrics, the registrants' pages
(one-click unsubscribe, their sessions, a decline: `web_registrants`), the status page.

Thin by design: each handler reads the worker's state or the ledger, or records one
suppression or one registrant's choice, and formats. Nothing here sends mail.
"""

from __future__ import annotations

import base64
import binascii
import logging

from aiohttp import hdrs, web

from ..inputs.config import Http
from .metrics import CONTENT_TYPE
from .request_log import RequestLog
from .staff_login import LoginGuard, client_address, same_secret
from .status_page import next_mail, status_page
from .web_app import SERVICE, Service, as_json, in_ledger, page
from .web_registrants import add_routes

log = logging.getLogger("reminder")

# A one-click POST carries "List-Unsubscribe=One-Click", a registrant's choice a session
# and a word: little else.
MAX_BODY = 4096
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


GUARD = web.AppKey("guard", LoginGuard)


def make_app(service: Service) -> web.Application:
    """The application, given the worker it shows; tests build it around a real worker."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[GUARD] = LoginGuard(service.monitor.metrics)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_routes(app)  # /u/ and /m/: what the reverse proxy publishes
    app.router.add_get("/", status)
    app.router.add_get("/apercu", preview)
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
    log.info(
        "HTTP on http://%s:%s (health, metrics, unsubscribe, registrants' sessions, status page)",
        host,
        port,
    )
    return runner


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if request.path == "/apercu":
        response.headers["Content-Security-Policy"] = PREVIEW_CSP
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    else:
        response.headers["Content-Security-Policy"] = PAGE_CSP
        response.headers["X-Frame-Options"] = "DENY"


async def healthz(request: web.Request) -> web.Response:
    """The loop answers."""
    return as_json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[SERVICE].monitor.readiness()
    return as_json(readiness.body(), 200 if readiness.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].monitor.metrics.exposition()
    response = web.Response(body=body)
    response.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE
    return response


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
    user, password = _credentials(header)
    secret = http.staff_password

    def right() -> bool:
        # Both compared, whatever the first comparison said.
        user_ok = same_secret(user, http.staff_user or "")
        password_ok = same_secret(password, secret.get_secret_value())
        return user_ok and password_ok

    ok = await guard.attempt(client, right)
    if ok is None:
        raise web.HTTPTooManyRequests(headers={hdrs.RETRY_AFTER: str(guard.retry_after(client))})
    if not ok:
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
    view = await in_ledger(
        request,
        status_page,
        service.snapshot,
        service.ledger,
        service.clock(),
        monitor.wakeups,
        monitor.readiness().reasons,
    )
    return page("status.html", page=view, css="u/style.css")


async def preview(request: web.Request) -> web.Response:
    await _staff(request)
    service = request.app[SERVICE]
    html, _ = next_mail(service.snapshot, service.clock())
    return web.Response(text=html, content_type="text/html", charset="utf-8")
