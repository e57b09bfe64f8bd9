"""aiohttp's server log, with a stranger's malformed request told apart from our own fault.

aiohttp logs a request it cannot parse (a CR or NUL in the path, a bare LF, a header of
100 KB) as `ERROR Error handling request` with a traceback: anyone on the network would
set the rate of the errors ops alert on. Such a request is answered 400 by aiohttp, as
before; here it is counted (reminder_http_bad_requests_total) and logged on one INFO
line, without the request's bytes, which may carry an unsubscribe token. Everything
else, a fault of the service itself included, goes to aiohttp's own logger unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from .logs import printable

log = logging.getLogger("reminder")


class RequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]  # generic in typeshed only
    """What aiohttp's RequestHandler logs through (its `logger` option)."""

    def __init__(self, refused: Callable[[], None]) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.refused = refused

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if not self._malformed(exc_info, args, logging.INFO):
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # aiohttp logs a first request in another protocol (TLS on the HTTP port) at DEBUG.
        if not self._malformed(kwargs.get("exc_info"), args, logging.DEBUG):
            self.logger.debug(msg, *args, **kwargs)

    def _malformed(self, exc_info: Any, args: tuple[object, ...], level: int) -> bool:
        if not isinstance(exc_info, HttpProcessingError):
            return False
        self.refused()
        # The first line of aiohttp's reason, without the bytes it quotes after a colon.
        reason = str(exc_info.message).strip().splitlines()[0] if exc_info.message else ""
        reason = printable(reason.partition(": ")[0].rstrip(":"))[:100]
        client = args[0] if args else "?"
        log.log(
            level,
            "HTTP: refused a malformed request from %s (%s: %s)",
            client,
            exc_info.code,
            reason or type(exc_info).__name__,
        )
        return True
