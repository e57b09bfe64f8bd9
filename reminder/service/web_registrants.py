"""The registrants' side of the HTTP face, behind their signed token: the one-click
unsubscribe (`/u/`), the page of their sessions and the decline of one (`/m/`).

GET never changes anything: mail scanners follow links. Every change is a POST from a
button, and acts only for a token only the service can make (core.unsubscribe); any
other token is answered 404 with no detail.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from ..core.unsubscribe import TOKEN_PATTERN, TokenIndex
from ..inputs.registrants import masked
from .registrant_choices import Choice, Outcome, choose, find_session, sessions_page
from .snapshot import Snapshot
from .web_app import PAGES, SERVICE, Service, in_ledger, page

log = logging.getLogger("reminder")

INDEX = web.AppKey("index", dict)
_SESSION = r"\d{4}-\d{2}-\d{2}"  # a session's id: the date it was planned on


def add_routes(app: web.Application) -> None:
    app[INDEX] = {}
    token = f"{{token:{TOKEN_PATTERN}}}"
    app.router.add_get(f"/u/{token}", unsubscribe_page)
    app.router.add_post(f"/u/{token}", unsubscribe)
    app.router.add_get(f"/m/{token}", sessions)
    app.router.add_post(f"/m/{token}", sessions_choice)
    app.router.add_get(f"/m/{token}/{{session:{_SESSION}}}", session_page)
    app.router.add_post(f"/m/{token}/{{session:{_SESSION}}}", session_choice)
    # The public prefixes serve the public pages' look, relative to the pages.
    app.router.add_get("/u/style.css", style)
    app.router.add_get("/m/style.css", style)


async def style(request: web.Request) -> web.Response:
    css = PAGES.get_template("style.css").render()
    return web.Response(text=css, content_type="text/css", charset="utf-8")


async def _address(request: web.Request) -> str:
    """The address behind the URL's token; 404 with no detail for any other token."""
    service = request.app[SERVICE]
    snapshot = service.snapshot
    secret = snapshot.config.http.secret
    if secret is None:
        raise web.HTTPNotFound()
    cache = request.app[INDEX]
    if cache.get("snapshot") is not snapshot:
        # One index per reading of the export, built once however many requests ask for
        # it meanwhile, and away from the loop: a million signatures take seconds.
        cache["snapshot"] = snapshot
        cache["index"] = asyncio.ensure_future(_index(request, snapshot, secret.get_secret_value()))
    built: asyncio.Future[TokenIndex] = cache["index"]
    try:
        index = await asyncio.shield(built)
    except Exception:
        if cache.get("index") is built:
            cache.pop("snapshot", None)  # the ledger did not answer: the next request retries
        raise
    address = index.address(request.match_info["token"])
    if address is None:
        raise web.HTTPNotFound()
    return address


async def _index(request: web.Request, snapshot: Snapshot, secret: str) -> TokenIndex:
    roster = snapshot.roster
    # Links in mails already sent stay valid for people no longer in the export.
    recipients = await in_ledger(request, request.app[SERVICE].ledger.recipients)

    def build() -> TokenIndex:
        known = {r.key for r in roster.registrants}
        known |= {*roster.suppressed, *recipients}
        return TokenIndex(secret, snapshot.config.cycle.id, known)

    return await asyncio.to_thread(build)


# -- one-click unsubscribe (RFC 8058) --------------------------------------------------------


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET only shows a button: mail scanners follow links, and must not unsubscribe anyone."""
    address = await _address(request)
    service = request.app[SERVICE]
    stopped = await in_ledger(request, service.ledger.suppressed_addresses)
    return _unsubscribe_page(service, address, address in stopped)


async def unsubscribe(request: web.Request) -> web.Response:
    """The one-click POST (from a mail client, or the page's button): suppress at once.

    RFC 8058 section 3.1: the body is `List-Unsubscribe=One-Click`, form-encoded or
    multipart. Anything else is not a one-click unsubscribe: 400, and nobody suppressed.
    """
    address = await _address(request)
    form = await _form(request)
    if form is None or form.getall("List-Unsubscribe", []) != ["One-Click"]:
        raise web.HTTPBadRequest(
            text="A one-click unsubscribe (RFC 8058) posts List-Unsubscribe=One-Click.\n"
        )
    service = request.app[SERVICE]
    suppress = partial(
        service.ledger.suppress,
        address,
        reason="one-click unsubscribe link",
        source="unsubscribe",
        at=service.clock(),
    )
    if await in_ledger(request, suppress):
        service.monitor.metrics.unsubscribes.inc()
        stopped = await in_ledger(request, service.ledger.suppressed_addresses)
        service.monitor.count_registrants(stopped)
        log.info("unsubscribed %s through the one-click link", masked(address))
    return _unsubscribe_page(service, address, True)


async def _form(request: web.Request) -> MultiDictProxy[Any] | None:
    """The posted form, or None when the body is not one; a body beyond client_max_size
    is answered 413."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        await request.read()
        return None
    try:
        return await request.post()  # reads the body, within client_max_size
    except ValueError:  # a malformed multipart body
        return None


def _field(form: MultiDictProxy[Any] | None, name: str) -> str:
    """A text field of the form, or "" (absent, a file, or no form at all)."""
    value = form.get(name, "") if form is not None else ""
    return value if isinstance(value, str) else ""


def _unsubscribe_page(service: Service, address: str, done: bool) -> web.Response:
    """The button (not done yet) or the confirmation; the address masked."""
    title = service.snapshot.config.cycle.title
    return page("unsubscribe.html", title=title, who=masked(address), done=done, css="style.css")


# -- the page of their sessions, and the decline of one ------------------------------------


async def sessions(request: web.Request) -> web.Response:
    """Their sessions to come, each with its button: decline, or come after all."""
    return await _sessions_page(request, await _address(request))


async def sessions_choice(request: web.Request) -> web.Response:
    """A button of the sessions' page: which session is in the form."""
    address = await _address(request)
    form = await _form(request)
    done = await _choose(request, address, _field(form, "session"), form)
    return await _sessions_page(request, address, done)


async def session_page(request: web.Request) -> web.Response:
    """The link of a reminder: one session, and one button."""
    return await _session_page(request, await _address(request))


async def session_choice(request: web.Request) -> web.Response:
    address = await _address(request)
    form = await _form(request)
    done = await _choose(request, address, request.match_info["session"], form)
    return await _session_page(request, address, done)


async def _choose(
    request: web.Request, address: str, session_id: str, form: MultiDictProxy[Any] | None
) -> tuple[str, Outcome]:
    """Record the form's choice; (session id, what came of it). 400 for a form that asks
    nothing we know, 404 for a session the cycle does not hold."""
    try:
        choice = Choice(_field(form, "choice"))
    except ValueError:
        raise web.HTTPBadRequest(text="Choose decline or attend.\n") from None
    service = request.app[SERVICE]
    session = find_session(service.snapshot, session_id)
    if session is None:
        raise web.HTTPNotFound()
    outcome, changed = await in_ledger(
        request, choose, service.ledger, service.snapshot, address, session, choice, service.clock()
    )
    if changed:
        service.monitor.metrics.choices.labels(choice.value).inc()
        service.monitor.count_declines(await in_ledger(request, service.ledger.declines))
        service.poke("a registrant's choice")
    return session.id, outcome


async def _sessions_page(
    request: web.Request, address: str, done: tuple[str, Outcome] | None = None
) -> web.Response:
    service = request.app[SERVICE]
    declines = await in_ledger(request, service.ledger.declines)
    stopped = await in_ledger(request, service.ledger.suppressed_addresses)
    view = sessions_page(
        service.snapshot,
        declines,
        address in stopped,
        address,
        service.clock(),
    )
    answered = None
    if done is not None:
        line = next((s for s in view.sessions if s.id == done[0]), None)
        answered = {"session": line, "outcome": done[1].name.lower()}
    return page(
        "sessions.html",
        page=view,
        answered=answered,
        unsubscribe=f"../u/{request.match_info['token']}",
        css="style.css",
    )


async def _session_page(
    request: web.Request, address: str, done: tuple[str, Outcome] | None = None
) -> web.Response:
    service = request.app[SERVICE]
    session = find_session(service.snapshot, request.match_info["session"])
    if session is None:
        raise web.HTTPNotFound()
    declines = await in_ledger(request, service.ledger.declines)
    view = sessions_page(service.snapshot, declines, False, address, service.clock(), session)
    return page(
        "decline.html",
        page=view,
        session=view.sessions[0],
        outcome=done[1].name.lower() if done else "",
        sessions=f"../{request.match_info['token']}",
        css="../style.css",
    )
